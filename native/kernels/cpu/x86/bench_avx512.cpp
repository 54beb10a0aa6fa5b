// Peak fp32 FMA throughput probe (avx512): 12 independent accumulator chains of vfmadd.
#include <immintrin.h>

#include "kernels/bench.h"

namespace lowbit {

double peak_fma_avx512(uint64_t iters) {
  // Distinct starting values: chains that start equal are provably equal, and GCC merges them into
  // ONE latency-bound chain (it did: the probe then ran 1 FMA per iteration, counted 12, and reported
  // 1.5× this machine's real peak).
  __m512 a0 = _mm512_set1_ps(1.000f), a1 = _mm512_set1_ps(1.001f), a2 = _mm512_set1_ps(1.002f), a3 = _mm512_set1_ps(1.003f);
  __m512 a4 = _mm512_set1_ps(1.004f), a5 = _mm512_set1_ps(1.005f), a6 = _mm512_set1_ps(1.006f), a7 = _mm512_set1_ps(1.007f);
  __m512 a8 = _mm512_set1_ps(1.008f), a9 = _mm512_set1_ps(1.009f), a10 = _mm512_set1_ps(1.010f), a11 = _mm512_set1_ps(1.011f);
  const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
  for (uint64_t t = 0; t < iters; t++) {
    a0 = _mm512_fmadd_ps(a0, m, c);
    a1 = _mm512_fmadd_ps(a1, m, c);
    a2 = _mm512_fmadd_ps(a2, m, c);
    a3 = _mm512_fmadd_ps(a3, m, c);
    a4 = _mm512_fmadd_ps(a4, m, c);
    a5 = _mm512_fmadd_ps(a5, m, c);
    a6 = _mm512_fmadd_ps(a6, m, c);
    a7 = _mm512_fmadd_ps(a7, m, c);
    a8 = _mm512_fmadd_ps(a8, m, c);
    a9 = _mm512_fmadd_ps(a9, m, c);
    a10 = _mm512_fmadd_ps(a10, m, c);
    a11 = _mm512_fmadd_ps(a11, m, c);
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return 2.0 * 12.0 * 16.0 * (double)iters;
}

}  // namespace lowbit
