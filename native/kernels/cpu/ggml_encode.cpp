// ggml's block encoders on the thread pool (see kernels/ggml_encode.h).
#include "kernels/ggml_encode.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "core/dispatch.h"
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

// ggml's nearest_int: round half to even through the 1.5·2²³ addition (|v| ≤ 4194303)
inline int nearest_int(float v) {
  const float t = v + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &t, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// ggml's make_qkx2_quants with use_mad = false: a weighted least-squares scale and min (≤ 0) over a
// grid of nstep + 1 candidate scales; codes 0…nmax into L. Returns the scale; *neg_min = −min.
float make_qkx2_quants(int n, int nmax, const float* x, const float* w, uint8_t* L, float* neg_min, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::memset(L, 0, (size_t)n);
    *neg_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min), scale = 1 / iscale, best = 0;
  for (int i = 0; i < n; i++) {
    const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
    L[i] = (uint8_t)l;
    const float diff = scale * l + min - x[i];
    best += w[i] * (diff * diff);
  }
  uint8_t aux[32];
  for (int is = 0; is <= nstep; is++) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; i++) {
      const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
      aux[i] = (uint8_t)l;
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D, this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float mad = 0;
      for (int i = 0; i < n; i++) {
        const float diff = this_scale * aux[i] + this_min - x[i];
        mad += w[i] * (diff * diff);
      }
      if (mad < best) {
        std::memcpy(L, aux, (size_t)n);
        best = mad;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *neg_min = -min;
  return scale;
}

// Q4_K (ggml's quantize_row_q4_K_ref): per sub-block of 32, weights rms + |x| and make_qkx2_quants
// choose a scale and a min; both are quantized to 6 bits against the super-block's largest, and the
// codes recomputed with the quantized values.
bool block_q4_k(const float* x, uint8_t* o) {
  for (size_t i = 0; i < 256; i++)
    if (!std::isfinite(x[i])) return false;
  uint8_t L[256];
  float w[32], scales[8], mins[8], max_scale = 0, max_min = 0;
  const Isa isa = active_isa();
  if (isa == ISA_AVX2 || isa == ISA_AVX512) {
    q4k_search_avx2(x, scales, mins, L);  // the eight sub-blocks at once, the same results
  } else {
    for (int j = 0; j < 8; j++) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; l++) w[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = make_qkx2_quants(32, 15, x + 32 * j, w, L + 32 * j, &mins[j], -1.0f, 0.1f, 20);
    }
  }
  for (int j = 0; j < 8; j++) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f, inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  uint8_t ls[8], lm[8];
  for (int j = 0; j < 8; j++) {
    ls[j] = (uint8_t)std::min(63, (int)(uint8_t)nearest_int(inv_scale * scales[j]));
    lm[j] = (uint8_t)std::min(63, (int)(uint8_t)nearest_int(inv_min * mins[j]));
  }
  if (!put_f16(o, max_scale / 63.0f) || !put_f16(o + 2, max_min / 63.0f)) return false;
  uint8_t* sc = o + 4;
  for (int j = 0; j < 4; j++) {
    sc[j] = ls[j];
    sc[j + 4] = lm[j];
  }
  for (int j = 4; j < 8; j++) {
    sc[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
    sc[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
    sc[j] |= (uint8_t)((lm[j] >> 4) << 6);
  }
  uint16_t dh, mh;
  std::memcpy(&dh, o, 2);
  std::memcpy(&mh, o + 2, 2);
  const float d = f16_to_f32(dh), dmin = f16_to_f32(mh);
  for (int j = 0; j < 8; j++) {
    const float dj = d * ls[j];
    if (dj == 0.0f) continue;  // the sub-block keeps make_qkx2_quants's codes, as in ggml
    const float mj = dmin * lm[j];
    for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)std::max(0, std::min(15, nearest_int((x[32 * j + l] + mj) / dj)));
  }
  for (int c = 0; c < 4; c++)
    for (int l = 0; l < 32; l++) o[16 + 32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + l + 32] << 4));
  return true;
}

}  // namespace

#if !defined(LOWBIT_HAVE_X86_VARIANTS)
void q4k_search_avx2(const float*, float*, float*, uint8_t*) {}  // never called: the dispatcher picks no x86 variant here
#endif

size_t ggml_encode_block_values(int type) { return type == GGML_ENCODE_Q4_K ? 256 : ggml_encode_block_bytes(type) ? QK : 0; }
size_t ggml_encode_block_bytes(int type) {
  return type == GGML_ENCODE_Q8_0 ? 34 : type == GGML_ENCODE_Q4_0 ? 18 : type == GGML_ENCODE_Q4_1 ? 20 : type == GGML_ENCODE_Q4_K ? 144 : 0;
}

bool ggml_encode(int type, const float* x, size_t n, uint8_t* out) {
  const size_t bb = ggml_encode_block_bytes(type), bv = ggml_encode_block_values(type);
  if (!bb || n % bv) return false;
  bool (*block)(const float*, uint8_t*) = type == GGML_ENCODE_Q8_0 ? block_q8_0
                                        : type == GGML_ENCODE_Q4_0 ? block_q4_0
                                        : type == GGML_ENCODE_Q4_1 ? block_q4_1
                                                                   : block_q4_k;
  std::atomic<bool> ok{true};
  parallel_for(n / bv, bv == QK ? 4096 : 64, [&](size_t b0, size_t b1) {
    for (size_t b = b0; b < b1 && ok.load(std::memory_order_relaxed); b++)
      if (!block(x + b * bv, out + b * bb)) ok.store(false, std::memory_order_relaxed);
  });
  return ok.load();
}

}  // namespace lowbit
