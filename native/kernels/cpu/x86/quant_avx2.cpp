// AVX2 row quantizer (uniform codebook): 8 columns per step; a group's tail (< 8 columns) uses
// the scalar formula. Bit-identical to quant_row_ref (same division, RNE rounding and clamp).
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/quant.h"

namespace lowbit {

// log2(x) for x > 0 (normal floats): exponent + polynomial of the mantissa in [sqrt(1/2), sqrt(2)).
static inline __m256 log2_ps(__m256 x) {
  __m256i xi = _mm256_castps_si256(x);
  __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(127));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(xi, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f800000)));
  // move m into [sqrt(1/2), sqrt(2)) so the series converges fast
  __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356f), _CMP_GE_OQ);
  m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
  e = _mm256_add_epi32(e, _mm256_and_si256(_mm256_castps_si256(big), _mm256_set1_epi32(1)));
  // log2(m) = 2/ln2 · atanh(t), t = (m − 1)/(m + 1), |t| < 0.1716: odd series to t^9
  __m256 t = _mm256_div_ps(_mm256_sub_ps(m, _mm256_set1_ps(1.0f)), _mm256_add_ps(m, _mm256_set1_ps(1.0f)));
  __m256 t2 = _mm256_mul_ps(t, t);
  __m256 p = _mm256_set1_ps(1.0f / 9.0f);
  p = _mm256_fmadd_ps(p, t2, _mm256_set1_ps(1.0f / 7.0f));
  p = _mm256_fmadd_ps(p, t2, _mm256_set1_ps(1.0f / 5.0f));
  p = _mm256_fmadd_ps(p, t2, _mm256_set1_ps(1.0f / 3.0f));
  p = _mm256_fmadd_ps(p, t2, _mm256_set1_ps(1.0f));
  return _mm256_fmadd_ps(_mm256_mul_ps(p, t), _mm256_set1_ps(2.88539008f), _mm256_cvtepi32_ps(e));
}

// 2^y for y in about [-126, 127]: integer part into the exponent, 2^f by a degree-6 polynomial.
static inline __m256 exp2_ps(__m256 y) {
  y = _mm256_max_ps(y, _mm256_set1_ps(-126.0f));
  __m256 n = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 f = _mm256_sub_ps(y, n);  // [-0.5, 0.5]
  __m256 p = _mm256_set1_ps(1.5403530e-4f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504109e-2f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022651e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  __m256i ni = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(ni));
}

GroupParams uniform_params_mse_avx2(const float* x, size_t n, float xmin, float xmax, const QuantSpec& q) {
  const float maxqf = (float)quant_maxq(q.bits);
  const __m256 vmaxq = _mm256_set1_ps(maxqf), vzero = _mm256_setzero_ps();
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 vnorm = _mm256_set1_ps(q.clip_norm), tiny = _mm256_set1_ps(1e-30f);
  const bool sq = q.clip_norm == 2.0f;
  GroupParams best = uniform_params(xmin, xmax, q);
  double best_err = INFINITY;
  const int steps = (int)(q.clip_max_shrink * (float)q.clip_grid);
  for (int i = 0; i < steps; i++) {
    float p = 1.0f - (float)i / (float)q.clip_grid;
    GroupParams c = uniform_params(p * xmin, p * xmax, q);
    const __m256 vs = _mm256_set1_ps(c.scale), vz = _mm256_set1_ps((float)c.zero);
    __m256 acc = vzero;
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
      __m256 v = _mm256_loadu_ps(x + j);
      __m256 r = _mm256_round_ps(_mm256_div_ps(v, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, vz), vzero), vmaxq);
      __m256 e = _mm256_and_ps(_mm256_sub_ps(_mm256_mul_ps(vs, _mm256_sub_ps(r, vz)), v), absmask);
      __m256 t;
      if (sq) t = _mm256_mul_ps(e, e);
      else {
        __m256 nz = _mm256_cmp_ps(e, tiny, _CMP_GT_OQ);
        t = _mm256_and_ps(exp2_ps(_mm256_mul_ps(vnorm, log2_ps(_mm256_max_ps(e, tiny)))), nz);
      }
      acc = _mm256_add_ps(acc, t);
    }
    alignas(32) float a[8];
    _mm256_store_ps(a, acc);
    double err = (double)a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    for (; j < n; j++) {
      double e = std::fabs((double)uniform_dequant(uniform_code(x[j], c, maxqf), c) - (double)x[j]);
      err += sq ? e * e : std::pow(e, (double)q.clip_norm);
    }
    if (err < best_err) {
      best_err = err;
      best = c;
    }
  }
  return best;
}

void quant_row_avx2(const float* x, size_t cols, const QuantSpec& q, uint8_t* codes, float* scales, uint8_t* zeros, float* deq, QuantStats* st) {
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
    for (int t = 0; t < 8; t++) {
      lo = std::min(lo, tl[t]);
      hi = std::max(hi, th[t]);
    }
    GroupParams p = q.clip == CLIP_MSE ? uniform_params_mse_avx2(xg, n, lo, hi, q) : uniform_params(lo, hi, q);
    scales[gi] = p.scale;
    zeros[gi] = (uint8_t)p.zero;
    const __m256 vs = _mm256_set1_ps(p.scale), vz = _mm256_set1_ps((float)p.zero);
    // Error statistics: float partial sums in 4 independent chains (a single chain of dependent
    // FMAs would cost its 4–5 cycle latency per vector), folded into double once per group.
    __m256 ae0 = vzero, ae1 = vzero, ar0 = vzero, ar1 = vzero;
    double tail_e = 0, tail_r = 0, max_err = 0;
    __m256 vmax_err = vzero;
    auto quant8 = [&](size_t jj, __m256& ae, __m256& ar) {
      __m256 v = _mm256_loadu_ps(xg + jj);
      __m256 r = _mm256_round_ps(_mm256_div_ps(v, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, vz), vzero), vmaxq);
      __m256i c = _mm256_cvttps_epi32(r);
      __m128i c16 = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + g0 + jj), _mm_packus_epi16(c16, c16));
      __m256 d = _mm256_mul_ps(vs, _mm256_sub_ps(r, vz));
      if (deq) _mm256_storeu_ps(deq + g0 + jj, d);
      __m256 e = _mm256_sub_ps(d, v);
      vmax_err = _mm256_max_ps(vmax_err, _mm256_and_ps(e, absmask));
      ae = _mm256_fmadd_ps(e, e, ae);
      ar = _mm256_fmadd_ps(v, v, ar);
    };
    j = 0;
    for (; j + 16 <= n; j += 16) {
      quant8(j, ae0, ar0);
      quant8(j + 8, ae1, ar1);
    }
    for (; j + 8 <= n; j += 8) quant8(j, ae0, ar0);
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
    alignas(32) float a[8], b[8], me[8];
    _mm256_store_ps(a, _mm256_add_ps(ae0, ae1));
    _mm256_store_ps(b, _mm256_add_ps(ar0, ar1));
    _mm256_store_ps(me, vmax_err);
    double se = tail_e, sr = tail_r;
    for (int t = 0; t < 8; t++) {
      se += a[t];
      sr += b[t];
    }
    st->sum_sq_err += se;
    st->sum_sq_ref += sr;
    for (int t = 0; t < 8; t++) max_err = std::max(max_err, (double)me[t]);
    st->max_abs_err = std::max(st->max_abs_err, max_err);
  }
}

}  // namespace lowbit
