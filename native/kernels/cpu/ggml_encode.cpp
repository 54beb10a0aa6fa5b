// ggml's block encoders on the thread pool (see kernels/ggml_encode.h).
#include "kernels/ggml_encode.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "core/half.h"
#include "core/thread_pool.h"

namespace lowbit {

namespace {

constexpr size_t QK = 32;

inline bool put_f16(uint8_t* o, float v) {
  bool overflow = false;
  const uint16_t h = f32_to_f16(v, false, &overflow);
  std::memcpy(o, &h, 2);
  return !overflow;
}

// d = max|x| / 127, id = 1/d, q = roundf(x·id)
bool block_q8_0(const float* x, uint8_t* o) {
  float amax = 0.0f;
  for (size_t j = 0; j < QK; j++) {
    if (!std::isfinite(x[j])) return false;
    if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]);
  }
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  if (!put_f16(o, d)) return false;
  for (size_t j = 0; j < QK; j++) o[2 + j] = (uint8_t)(int8_t)std::roundf(x[j] * id);
  return true;
}

// the element of largest magnitude m (first on ties), d = m / −8, code = min(15, (int8)(x·id + 8.5))
bool block_q4_0(const float* x, uint8_t* o) {
  float amax = 0.0f, max = 0.0f;
  for (size_t j = 0; j < QK; j++) {
    if (!std::isfinite(x[j])) return false;
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  if (!put_f16(o, d)) return false;
  for (size_t j = 0; j < QK / 2; j++) {
    const float x0 = x[j] * id, x1 = x[QK / 2 + j] * id;
    const int q0 = std::min(15, (int)(int8_t)(x0 + 8.5f)), q1 = std::min(15, (int)(int8_t)(x1 + 8.5f));
    o[2 + j] = (uint8_t)(q0 | q1 << 4);
  }
  return true;
}

// d = (max − min) / 15, m = min, code = min(15, (int8)((x − min)·id + 0.5))
bool block_q4_1(const float* x, uint8_t* o) {
  float min = INFINITY, max = -INFINITY;
  for (size_t j = 0; j < QK; j++) {
    if (!std::isfinite(x[j])) return false;
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  if (!put_f16(o, d) || !put_f16(o + 2, min)) return false;
  for (size_t j = 0; j < QK / 2; j++) {
    const float x0 = (x[j] - min) * id, x1 = (x[QK / 2 + j] - min) * id;
    const int q0 = std::min(15, (int)(int8_t)(x0 + 0.5f)), q1 = std::min(15, (int)(int8_t)(x1 + 0.5f));
    o[4 + j] = (uint8_t)(q0 | q1 << 4);
  }
  return true;
}

}  // namespace

size_t ggml_encode_block_bytes(int type) { return type == GGML_ENCODE_Q8_0 ? 34 : type == GGML_ENCODE_Q4_0 ? 18 : type == GGML_ENCODE_Q4_1 ? 20 : 0; }

bool ggml_encode(int type, const float* x, size_t n, uint8_t* out) {
  const size_t bb = ggml_encode_block_bytes(type);
  if (!bb || n % QK) return false;
  bool (*block)(const float*, uint8_t*) = type == GGML_ENCODE_Q8_0 ? block_q8_0 : type == GGML_ENCODE_Q4_0 ? block_q4_0 : block_q4_1;
  std::atomic<bool> ok{true};
  parallel_for(n / QK, 4096, [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1 && ok.load(std::memory_order_relaxed); b++)
      if (!block(x + b * QK, out + b * bb)) ok.store(false, std::memory_order_relaxed);
  });
  return ok.load();
}

}  // namespace lowbit
