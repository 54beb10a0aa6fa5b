// Run-time quantizers, the fast paths (kernels/rtquant.h): work on the codes, unpacking a group at a
// time into floats the compiler keeps in vectors; rotations by fast Walsh–Hadamard transforms.
#include <cmath>
#include <cstring>

#include "core/dispatch.h"
#include "core/error.h"
#include "kernels/gemm.h"
#include "kernels/rtquant.h"

namespace lowbit {

namespace {

// Codes [i0, i0 + len) of a row as floats (i0 · bits a multiple of 8; len · bits a multiple of 8).
inline void unpack(const uint8_t* codes, size_t i0, size_t len, int bits, float* out) {
  const uint8_t* c = codes + i0 * (size_t)bits / 8;
  if (bits == 8) {
    for (size_t i = 0; i < len; i++) out[i] = (float)c[i];
  } else if (bits == 4) {
    for (size_t i = 0; i < len / 2; i++) {
      out[2 * i] = (float)(c[i] & 15);
      out[2 * i + 1] = (float)(c[i] >> 4);
    }
  } else {
    for (size_t i = 0; i < len / 4; i++) {
      out[4 * i] = (float)(c[i] & 3);
      out[4 * i + 1] = (float)((c[i] >> 2) & 3);
      out[4 * i + 2] = (float)((c[i] >> 4) & 3);
      out[4 * i + 3] = (float)(c[i] >> 6);
    }
  }
}

constexpr size_t CHUNK = 256;

}  // namespace

void kv_dot_groups(const float* q, const uint8_t* codes, size_t n, int bits, size_t g, float* out, int mode) {
  if (mode == MODE_REF) return kv_dot_groups_ref(q, codes, n, bits, g, out);
  float buf[CHUNK];
  for (size_t j = 0; j < n / g; j++) {
    float s = 0.0f;
    for (size_t i0 = j * g; i0 < (j + 1) * g; i0 += CHUNK) {
      const size_t len = std::min(CHUNK, (j + 1) * g - i0);
      unpack(codes, i0, len, bits, buf);
      s += dot_f32_generic(q + i0, buf, len);
    }
    out[j] = s;
  }
}

void kv_axpy_codes(const float* w, const uint8_t* codes, size_t n, int bits, float* y, int mode) {
  if (mode == MODE_REF) return kv_axpy_codes_ref(w, codes, n, bits, y);
  float buf[CHUNK];
  for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
    const size_t len = std::min(CHUNK, n - i0);
    unpack(codes, i0, len, bits, buf);
    for (size_t i = 0; i < len; i++) y[i0 + i] += w[i0 + i] * buf[i];
  }
}

void kv_axpy_groups(const float* w, const uint8_t* codes, size_t n, int bits, size_t g, float* y, int mode) {
  if (mode == MODE_REF) return kv_axpy_groups_ref(w, codes, n, bits, g, y);
  float buf[CHUNK];
  for (size_t j = 0; j < n / g; j++)
    for (size_t i0 = j * g; i0 < (j + 1) * g; i0 += CHUNK) {
      const size_t len = std::min(CHUNK, (j + 1) * g - i0);
      unpack(codes, i0, len, bits, buf);
      const float a = w[j];
      for (size_t i = 0; i < len; i++) y[i0 + i] += a * buf[i];
    }
}

// One implementation for both modes: quantizing a token's input is O(in), next to the O(in · out) product
// it feeds (a vector variant would need its own rounding-identical division).
void act_fake_quant(float* x, size_t rows, size_t n, int bits, const float* scale, int /*mode*/) {
  LOWBIT_CHECK(bits >= 2 && bits <= 8, "act_fake_quant: bits must be 2…8");
  act_fake_quant_ref(x, rows, n, bits, scale);
}

void rotate_rows(const Rotation& r, float* x, size_t rows, int mode) {
  if (mode == MODE_REF) return rotate_rows_ref(r, x, rows);
  const size_t n = r.n, p = r.p, m = r.m;
  const float ip = 1.0f / std::sqrt((float)p);
  std::vector<float> tmp(m > 1 ? n : 0);
  for (size_t row = 0; row < rows; row++) {
    float* v = x + row * n;
    for (size_t i = 0; i < n; i++) v[i] *= r.signs[i];
    for (size_t b = 0; b < m; b++) {  // H_p on each of the m segments (fast Walsh–Hadamard, unnormalized)
      float* s = v + b * p;
      for (size_t h = 1; h < p; h *= 2)
        for (size_t i = 0; i < p; i += 2 * h)
          for (size_t j = i; j < i + h; j++) {
            const float a = s[j], c = s[j + h];
            s[j] = a + c;
            s[j + h] = a - c;
          }
    }
    if (m > 1) {  // H_m across the segments
      std::fill(tmp.begin(), tmp.end(), 0.0f);
      for (size_t a = 0; a < m; a++)
        for (size_t b = 0; b < m; b++) {
          const float h = r.small[a * m + b] * ip;
          const float* src = v + b * p;
          float* dst = tmp.data() + a * p;
          for (size_t j = 0; j < p; j++) dst[j] += h * src[j];
        }
      std::memcpy(v, tmp.data(), n * 4);
    } else {
      for (size_t i = 0; i < n; i++) v[i] *= ip;
    }
  }
}

}  // namespace lowbit
