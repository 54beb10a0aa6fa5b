// AVX2 row quantizer (uniform codebook): 8 columns per step; a group's tail (< 8 columns) uses
// the scalar formula. Bit-identical to quant_row_ref (same division, RNE rounding and clamp).
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/quant.h"

namespace lowbit {

void quant_row_avx2(const float* x, size_t cols, const QuantSpec& q, uint8_t* codes, float* scales, uint8_t* zeros,
                    float* deq, QuantStats* st) {
  if (q.codebook != CODEBOOK_UNIFORM) {
    quant_row_ref(x, cols, q, codes, scales, zeros, deq, st);
    return;
  }
  const size_t gs = (size_t)q.group_size;
  const float maxqf = (float)quant_maxq(q.bits);
  const __m256 vmaxq = _mm256_set1_ps(maxqf), vzero = _mm256_setzero_ps(), vinf = _mm256_set1_ps(INFINITY);
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (size_t g0 = 0, gi = 0; g0 < cols; g0 += gs, gi++) {
    const size_t n = std::min(gs, cols - g0);
    const float* xg = x + g0;
    __m256 vlo = vzero, vhi = vzero;
    float lo = 0.0f, hi = 0.0f;
    bool bad_any = false;
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
      __m256 v = _mm256_loadu_ps(xg + j);
      __m256 fin = _mm256_cmp_ps(_mm256_and_ps(v, absmask), vinf, _CMP_LT_OQ);
      unsigned badm = (~(unsigned)_mm256_movemask_ps(fin)) & 0xff;
      if (badm) {
        bad_any = true;
        st->non_finite += (size_t)__builtin_popcount(badm);
        st->first_non_finite = std::min(st->first_non_finite, g0 + j + (size_t)__builtin_ctz(badm));
        v = _mm256_and_ps(v, fin);  // non-finite lanes -> 0 (inside the range already)
      }
      vlo = _mm256_min_ps(vlo, v);
      vhi = _mm256_max_ps(vhi, v);
    }
    for (; j < n; j++) {
      if (!std::isfinite(xg[j])) {
        bad_any = true;
        st->non_finite++;
        st->first_non_finite = std::min(st->first_non_finite, g0 + j);
        continue;
      }
      lo = std::min(lo, xg[j]);
      hi = std::max(hi, xg[j]);
    }
    alignas(32) float tl[8], th[8];
    _mm256_store_ps(tl, vlo);
    _mm256_store_ps(th, vhi);
    for (int t = 0; t < 8; t++) { lo = std::min(lo, tl[t]); hi = std::max(hi, th[t]); }
    GroupParams p = q.clip == CLIP_MSE ? uniform_params_mse(xg, n, lo, hi, q) : uniform_params(lo, hi, q);
    scales[gi] = p.scale;
    zeros[gi] = (uint8_t)p.zero;
    const __m256 vs = _mm256_set1_ps(p.scale), vz = _mm256_set1_ps((float)p.zero);
    __m256d acc_e = _mm256_setzero_pd(), acc_r = _mm256_setzero_pd();
    double tail_e = 0, tail_r = 0, max_err = 0;
    __m256 vmax_err = vzero;
    j = 0;
    for (; j + 8 <= n; j += 8) {
      __m256 v = _mm256_loadu_ps(xg + j);
      __m256 r = _mm256_round_ps(_mm256_div_ps(v, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, vz), vzero), vmaxq);
      __m256i c = _mm256_cvttps_epi32(r);
      __m128i c16 = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
      __m128i c8 = _mm_packus_epi16(c16, c16);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + g0 + j), c8);
      __m256 d = _mm256_mul_ps(vs, _mm256_sub_ps(r, vz));
      if (deq) _mm256_storeu_ps(deq + g0 + j, d);
      __m256 e = _mm256_sub_ps(d, v);
      vmax_err = _mm256_max_ps(vmax_err, _mm256_and_ps(e, absmask));
      __m256d e0 = _mm256_cvtps_pd(_mm256_castps256_ps128(e)), e1 = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
      __m256d r0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), r1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
      acc_e = _mm256_fmadd_pd(e0, e0, _mm256_fmadd_pd(e1, e1, acc_e));
      acc_r = _mm256_fmadd_pd(r0, r0, _mm256_fmadd_pd(r1, r1, acc_r));
    }
    for (; j < n; j++) {
      uint8_t c = uniform_code(xg[j], p, maxqf);
      codes[g0 + j] = c;
      float d = uniform_dequant(c, p);
      if (deq) deq[g0 + j] = d;
      double e = (double)d - (double)xg[j];
      tail_e += e * e;
      tail_r += (double)xg[j] * xg[j];
      max_err = std::max(max_err, std::fabs(e));
    }
    if (bad_any) continue;
    alignas(32) double a[4], b[4];
    alignas(32) float me[8];
    _mm256_store_pd(a, acc_e);
    _mm256_store_pd(b, acc_r);
    _mm256_store_ps(me, vmax_err);
    st->sum_sq_err += a[0] + a[1] + a[2] + a[3] + tail_e;
    st->sum_sq_ref += b[0] + b[1] + b[2] + b[3] + tail_r;
    for (int t = 0; t < 8; t++) max_err = std::max(max_err, (double)me[t]);
    st->max_abs_err = std::max(st->max_abs_err, max_err);
  }
}

}  // namespace lowbit
