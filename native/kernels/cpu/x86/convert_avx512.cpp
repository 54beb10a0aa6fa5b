// AVX-512 conversions, 16 elements per step, masked tails. Bit-exact with convert_ref:
//  - f16 <-> f32 with vcvtph2ps / vcvtps2ph (IEEE RNE; |x| >= 65520 -> inf is counted as overflow);
//  - bf16 -> f32 is a 16-bit shift; f32 -> bf16 uses integer RNE (u + 0x7fff + lsb) >> 16 rather
//    than vcvtneps2bf16, which flushes denormal inputs to zero and would differ from the reference.
#include <immintrin.h>

#include "kernels/convert.h"

namespace lowbit {

static inline __m512 load16(const uint8_t* s, int sdt, __mmask16 m) {
  if (sdt == DTYPE_F32) return _mm512_maskz_loadu_ps(m, s);
  __m256i h = _mm256_maskz_loadu_epi16(m, s);
  if (sdt == DTYPE_F16) {
    // vcvtph2ps quiets signaling NaNs; the reference keeps every NaN's bits (sign, payload << 13)
    const __m512 x = _mm512_cvtph_ps(h);
    const __m512i hw = _mm512_cvtepu16_epi32(h), mn = _mm512_and_si512(hw, _mm512_set1_epi32(0x03ff));
    const __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(hw, _mm512_set1_epi32(0x7c00)), _mm512_set1_epi32(0x7c00)) &
                          _mm512_test_epi32_mask(mn, mn);
    if (!nan) return x;
    const __m512i bits = _mm512_or_si512(_mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(hw, _mm512_set1_epi32(0x8000)), 16),
                                                         _mm512_set1_epi32(0x7f800000)),
                                         _mm512_slli_epi32(mn, 13));
    return _mm512_mask_mov_ps(x, nan, _mm512_castsi512_ps(bits));
  }
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

void convert_range_avx512(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, size_t base, ConvertResult* r) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  uint8_t* d = static_cast<uint8_t*>(dst);
  const size_t ss = dtype_size(sdt), ds = dtype_size(ddt);
  const __m512 lim = _mm512_set1_ps(65520.0f), sat = _mm512_set1_ps(65504.0f), inf = _mm512_set1_ps(__builtin_inff());
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
  for (size_t i = 0; i < n; i += 16) {
    const size_t k = n - i < 16 ? n - i : 16;
    const __mmask16 m = (__mmask16)(k == 16 ? 0xffff : ((1u << k) - 1));
    __m512 x = load16(s + i * ss, sdt, m);
    if (ddt == DTYPE_F32) {
      _mm512_mask_storeu_ps(d + i * 4, m, x);
    } else if (ddt == DTYPE_F16) {
      __m512 ax = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), absmask));
      // finite and >= 65520 in magnitude: overflows to inf
      __mmask16 big = _mm512_mask_cmp_ps_mask(m, ax, lim, _CMP_GE_OQ) & _mm512_cmp_ps_mask(ax, inf, _CMP_NEQ_OQ);
      if (big) {
        if (saturate) {
          __m512 c = _mm512_min_ps(sat, _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), sat), x));
          x = _mm512_mask_blend_ps(big, x, c);
        } else {
          if (r->overflow == 0) r->first_overflow = base + i + (size_t)__builtin_ctz((unsigned)big);
          r->overflow += (size_t)__builtin_popcount((unsigned)big);
        }
      }
      __m256i h = _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm256_mask_storeu_epi16(d + i * 2, m, h);
    } else {
      __m512i u = _mm512_castps_si512(x);
      __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
      __m512i rnd = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
      __m512i nanv = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
      __mmask16 isnan = _mm512_cmp_epu32_mask(_mm512_and_si512(u, absmask), _mm512_set1_epi32(0x7f800000), _MM_CMPINT_NLE);
      __m512i v = _mm512_mask_blend_epi32(isnan, rnd, nanv);
      _mm256_mask_storeu_epi16(d + i * 2, m, _mm512_cvtepi32_epi16(v));
    }
    (void)ds;
  }
}


// 64 elements per step: four (f32) or two (f16/bf16) 512-bit compares into mask registers; the
// first set bit of the first nonzero mask is the index (no scalar rescan).
size_t first_nonfinite_range_avx512(const void* src, int dt, size_t n) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  size_t i = 0;
  if (dt == DTYPE_F32) {
    const __m512i e = _mm512_set1_epi32(0x7f800000);
    for (; i + 64 <= n; i += 64) {
      const __m512i* p = reinterpret_cast<const __m512i*>(s + i * 4);
      const __mmask16 m0 = _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_loadu_si512(p), e), e);
      const __mmask16 m1 = _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_loadu_si512(p + 1), e), e);
      const __mmask16 m2 = _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_loadu_si512(p + 2), e), e);
      const __mmask16 m3 = _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_loadu_si512(p + 3), e), e);
      const uint64_t m = (uint64_t)m0 | ((uint64_t)m1 << 16) | ((uint64_t)m2 << 32) | ((uint64_t)m3 << 48);
      if (m) return i + (size_t)__builtin_ctzll(m);
    }
  } else {
    const __m512i e = _mm512_set1_epi16(dt == DTYPE_F16 ? 0x7c00 : 0x7f80);
    for (; i + 64 <= n; i += 64) {
      const __m512i* p = reinterpret_cast<const __m512i*>(s + i * 2);
      const __mmask32 m0 = _mm512_cmpeq_epi16_mask(_mm512_and_si512(_mm512_loadu_si512(p), e), e);
      const __mmask32 m1 = _mm512_cmpeq_epi16_mask(_mm512_and_si512(_mm512_loadu_si512(p + 1), e), e);
      const uint64_t m = (uint64_t)m0 | ((uint64_t)m1 << 32);
      if (m) return i + (size_t)__builtin_ctzll(m);
    }
  }
  const size_t r = first_nonfinite_range_generic(s + i * dtype_size(dt), dt, n - i);
  return r == SIZE_MAX ? r : i + r;
}

}  // namespace lowbit
