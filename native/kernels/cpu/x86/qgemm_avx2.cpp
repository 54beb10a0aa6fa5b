// AVX2 int4 GPTQ matmul: see kernels/qgemm.h. Tokens are handled 4 at a time so each decoded
// nibble vector feeds 4 FMAs (decode cost amortised over the batch).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/qgemm.h"

namespace lowbit {

void qgemm_gptq4_avx2_range(const QGemmArgs& a, size_t gs, size_t n0, size_t n1) {
  // Row-streaming order: the packed words of one word row are contiguous along the outputs, so for
  // a sub-range of outputs (NS at a time, its accumulators L1-resident) every group walks its word
  // rows left to right — sequential loads, no page-strided column walks.
  constexpr size_t NS = 512;  // outputs per sub-range: 4 tokens × 512 × 4 B = 8 KiB of accumulators
  const size_t G = a.in / gs, wpg = gs / 8;
  const __m256i mask = _mm256_set1_epi32(15);
  std::vector<float> xsum(a.m * G);
  for (size_t t = 0; t < a.m; t++)
    for (size_t g = 0; g < G; g++) {
      float s = 0;
      for (size_t k = g * gs; k < (g + 1) * gs; k++) s += a.x[t * a.in + k];
      xsum[t * G + g] = s;
    }
  alignas(32) float acc[4][NS];
  alignas(32) float yacc[4][NS];
  alignas(32) int32_t wtmp[8];
  for (size_t s0 = n0; s0 < n1; s0 += NS) {
    const size_t ns = std::min(NS, n1 - s0);
    for (size_t t0 = 0; t0 < a.m; t0 += 4) {
      const size_t tn = std::min<size_t>(4, a.m - t0);
      for (size_t t = 0; t < 4; t++) std::fill(yacc[t], yacc[t] + NS, 0.0f);
      for (size_t g = 0; g < G; g++) {
        for (size_t t = 0; t < 4; t++) std::fill(acc[t], acc[t] + NS, 0.0f);
        for (size_t wr = g * wpg; wr < (g + 1) * wpg; wr++) {
          const float* xk = a.x + t0 * a.in + wr * 8;
          __m256 xb[4][8];
          for (size_t t = 0; t < tn; t++)
            for (int j = 0; j < 8; j++) xb[t][j] = _mm256_broadcast_ss(xk + t * a.in + j);
          const int32_t* row = a.qweight + wr * a.out + s0;
          for (size_t i = 0; i < ns; i += 8) {
            __m256i w;
            if (i + 8 <= ns) w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i));
            else {
              for (size_t u = 0; u < 8; u++) wtmp[u] = i + u < ns ? row[i + u] : 0;
              w = _mm256_load_si256(reinterpret_cast<const __m256i*>(wtmp));
            }
            __m256 c0 = _mm256_load_ps(acc[0] + i), c1 = _mm256_load_ps(acc[1] + i), c2 = _mm256_load_ps(acc[2] + i), c3 = _mm256_load_ps(acc[3] + i);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
              const __m256 q = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(w, 4 * j), mask));
              c0 = _mm256_fmadd_ps(q, xb[0][j], c0);
              if (tn > 1) c1 = _mm256_fmadd_ps(q, xb[1][j], c1);
              if (tn > 2) c2 = _mm256_fmadd_ps(q, xb[2][j], c2);
              if (tn > 3) c3 = _mm256_fmadd_ps(q, xb[3][j], c3);
            }
            _mm256_store_ps(acc[0] + i, c0);
            _mm256_store_ps(acc[1] + i, c1);
            _mm256_store_ps(acc[2] + i, c2);
            _mm256_store_ps(acc[3] + i, c3);
          }
        }
        // y += s · (Σ x·q − z · Σ x) for this group
        const float* sc = a.scales + g * a.out + s0;
        const uint8_t* ze = a.zeros + g * a.out + s0;
        for (size_t t = 0; t < tn; t++) {
          const float xs = xsum[(t0 + t) * G + g];
          for (size_t i = 0; i < ns; i++) yacc[t][i] += sc[i] * (acc[t][i] - (float)ze[i] * xs);
        }
      }
      for (size_t t = 0; t < tn; t++)
        for (size_t i = 0; i < ns; i++) a.y[(t0 + t) * a.out + s0 + i] = yacc[t][i];
    }
  }
}

}  // namespace lowbit
