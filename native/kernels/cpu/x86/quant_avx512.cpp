// AVX-512 row quantizer (uniform codebook): 16 columns per step with masked tails.
// Range: vminps/vmaxps reductions; codes: vdivps + vrndscaleps (RNE) + clamp, exactly the
// scalar formula of kernels/quant.h, so codes, scales, zeros and dequantized values are
// bit-identical to quant_row_ref. Codebooks fall back to the reference row kernel.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/quant.h"

namespace lowbit {

void quant_row_avx512(const float* x, size_t cols, const QuantSpec& q, uint8_t* codes, float* scales, uint8_t* zeros, float* deq, QuantStats* st) {
  if (q.codebook != CODEBOOK_UNIFORM) {
    quant_row_ref(x, cols, q, codes, scales, zeros, deq, st);
    return;
  }
  const size_t gs = (size_t)q.group_size;
  const float maxqf = (float)quant_maxq(q.bits);
  const __m512 vmaxq = _mm512_set1_ps(maxqf), vzero = _mm512_setzero_ps();
  const __m512 vinf = _mm512_set1_ps(INFINITY);
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
  for (size_t g0 = 0, gi = 0; g0 < cols; g0 += gs, gi++) {
    const size_t n = std::min(gs, cols - g0);
    const float* xg = x + g0;
    __m512 vlo = vzero, vhi = vzero;
    __mmask16 bad_any = 0;
    for (size_t j = 0; j < n; j += 16) {
      const size_t k = std::min<size_t>(16, n - j);
      const __mmask16 m = (__mmask16)(k == 16 ? 0xffff : ((1u << k) - 1));
      __m512 v = _mm512_maskz_loadu_ps(m, xg + j);
      __m512 av = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), absmask));
      // non-finite: |v| not < inf (catches inf and NaN)
      __mmask16 bad = m & ~_mm512_cmp_ps_mask(av, vinf, _CMP_LT_OQ);
      if (bad) {
        bad_any |= bad;
        size_t cnt = (size_t)__builtin_popcount((unsigned)bad);
        size_t first = g0 + j + (size_t)__builtin_ctz((unsigned)bad);
        st->non_finite += cnt;
        st->first_non_finite = std::min(st->first_non_finite, first);
      }
      __mmask16 ok = m & ~bad;
      vlo = _mm512_mask_min_ps(vlo, ok, vlo, v);
      vhi = _mm512_mask_max_ps(vhi, ok, vhi, v);
    }
    float lo = _mm512_reduce_min_ps(vlo), hi = _mm512_reduce_max_ps(vhi);
    GroupParams p = q.clip == CLIP_MSE ? uniform_params_mse_avx2(xg, n, lo, hi, q) : uniform_params(lo, hi, q);
    scales[gi] = p.scale;
    zeros[gi] = (uint8_t)p.zero;
    const __m512 vs = _mm512_set1_ps(p.scale), vz = _mm512_set1_ps((float)p.zero);
    // float partial sums in independent chains, folded into double per group (see quant_avx2.cpp)
    __m512 ae0 = vzero, ae1 = vzero, ar0 = vzero, ar1 = vzero;
    __m512 vmax_err = vzero;
    int chain = 0;
    for (size_t j = 0; j < n; j += 16) {
      const size_t k = std::min<size_t>(16, n - j);
      const __mmask16 m = (__mmask16)(k == 16 ? 0xffff : ((1u << k) - 1));
      __m512 v = _mm512_maskz_loadu_ps(m, xg + j);
      __m512 r = _mm512_roundscale_ps(_mm512_div_ps(v, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r = _mm512_add_ps(r, vz);
      r = _mm512_min_ps(_mm512_max_ps(r, vzero), vmaxq);
      __m512i c = _mm512_cvttps_epi32(r);
      _mm512_mask_cvtepi32_storeu_epi8(codes + g0 + j, m, c);
      __m512 d = _mm512_mul_ps(vs, _mm512_sub_ps(r, vz));
      if (deq) _mm512_mask_storeu_ps(deq + g0 + j, m, d);
      __m512 e = _mm512_maskz_sub_ps(m, d, v);
      __m512 ae = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(e), absmask));
      vmax_err = _mm512_max_ps(vmax_err, ae);
      __m512 vm = _mm512_maskz_mov_ps(m, v);
      if (chain ^= 1) {
        ae0 = _mm512_fmadd_ps(e, e, ae0);
        ar0 = _mm512_fmadd_ps(vm, vm, ar0);
      } else {
        ae1 = _mm512_fmadd_ps(e, e, ae1);
        ar1 = _mm512_fmadd_ps(vm, vm, ar1);
      }
    }
    if (bad_any) {
      // keep stats finite for the report; the caller fails the tensor anyway
      continue;
    }
    st->sum_sq_err += (double)_mm512_reduce_add_ps(_mm512_add_ps(ae0, ae1));
    st->sum_sq_ref += (double)_mm512_reduce_add_ps(_mm512_add_ps(ar0, ar1));
    st->max_abs_err = std::max(st->max_abs_err, (double)_mm512_reduce_max_ps(vmax_err));
  }
}

}  // namespace lowbit
