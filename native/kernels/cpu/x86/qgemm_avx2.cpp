// AVX2 int4 GPTQ matmul: see kernels/qgemm.h. Tokens are handled 4 at a time so each decoded
// nibble vector feeds 4 FMAs (decode cost amortised over the batch).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/qgemm.h"

namespace lowbit {

void qgemm_gptq4_avx2_range(const QGemmArgs& a, size_t gs, size_t n0, size_t n1) {
  const size_t G = a.in / gs, wpg = gs / 8;  // words per group
  const __m256i mask = _mm256_set1_epi32(15);
  std::vector<float> xsum(a.m * G);
  for (size_t t = 0; t < a.m; t++)
    for (size_t g = 0; g < G; g++) {
      float s = 0;
      for (size_t k = g * gs; k < (g + 1) * gs; k++) s += a.x[t * a.in + k];
      xsum[t * G + g] = s;
    }
  for (size_t n = n0; n < n1; n += 8) {
    const size_t nv = std::min<size_t>(8, n1 - n);
    alignas(32) float yt[4][8];
    for (size_t t0 = 0; t0 < a.m; t0 += 4) {
      const size_t tn = std::min<size_t>(4, a.m - t0);
      __m256 y0 = _mm256_setzero_ps(), y1 = y0, y2 = y0, y3 = y0;
      for (size_t g = 0; g < G; g++) {
        __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        for (size_t wr = g * wpg; wr < (g + 1) * wpg; wr++) {
          __m256i w;
          if (nv == 8) w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qweight + wr * a.out + n));
          else {
            alignas(32) int32_t tmp[8] = {0};
            for (size_t i = 0; i < nv; i++) tmp[i] = a.qweight[wr * a.out + n + i];
            w = _mm256_load_si256(reinterpret_cast<const __m256i*>(tmp));
          }
          const float* xk = a.x + t0 * a.in + wr * 8;
#pragma GCC unroll 8
          for (int j = 0; j < 8; j++) {
            const __m256 q = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(w, 4 * j), mask));
            c0 = _mm256_fmadd_ps(q, _mm256_broadcast_ss(xk + j), c0);
            if (tn > 1) c1 = _mm256_fmadd_ps(q, _mm256_broadcast_ss(xk + a.in + j), c1);
            if (tn > 2) c2 = _mm256_fmadd_ps(q, _mm256_broadcast_ss(xk + 2 * a.in + j), c2);
            if (tn > 3) c3 = _mm256_fmadd_ps(q, _mm256_broadcast_ss(xk + 3 * a.in + j), c3);
          }
        }
        // y += s · (Σ x·q − z · Σ x)
        __m256 s, z;
        if (nv == 8) {
          s = _mm256_loadu_ps(a.scales + g * a.out + n);
          z = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a.zeros + g * a.out + n))));
        } else {
          alignas(32) float st[8] = {0}, zt[8] = {0};
          for (size_t i = 0; i < nv; i++) { st[i] = a.scales[g * a.out + n + i]; zt[i] = (float)a.zeros[g * a.out + n + i]; }
          s = _mm256_load_ps(st);
          z = _mm256_load_ps(zt);
        }
        y0 = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, _mm256_set1_ps(xsum[(t0 + 0) * G + g]), c0), y0);
        if (tn > 1) y1 = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, _mm256_set1_ps(xsum[(t0 + 1) * G + g]), c1), y1);
        if (tn > 2) y2 = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, _mm256_set1_ps(xsum[(t0 + 2) * G + g]), c2), y2);
        if (tn > 3) y3 = _mm256_fmadd_ps(s, _mm256_fnmadd_ps(z, _mm256_set1_ps(xsum[(t0 + 3) * G + g]), c3), y3);
      }
      _mm256_store_ps(yt[0], y0);
      _mm256_store_ps(yt[1], y1);
      _mm256_store_ps(yt[2], y2);
      _mm256_store_ps(yt[3], y3);
      for (size_t t = 0; t < tn; t++)
        for (size_t i = 0; i < nv; i++) a.y[(t0 + t) * a.out + n + i] = yt[t][i];
    }
  }
}

}  // namespace lowbit
