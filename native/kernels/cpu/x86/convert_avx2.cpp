// AVX2 + F16C conversions, 8 elements per step; the tail goes through the generic kernel.
// Bit-exact with convert_ref (see convert_avx512.cpp for the bf16 rounding choice).
#include <immintrin.h>

#include "kernels/convert.h"

namespace lowbit {

void convert_range_avx2(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, size_t base, ConvertResult* r) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  uint8_t* d = static_cast<uint8_t*>(dst);
  const size_t ss = dtype_size(sdt);
  const __m256 lim = _mm256_set1_ps(65520.0f), sat = _mm256_set1_ps(65504.0f), nsat = _mm256_set1_ps(-65504.0f);
  const __m256 inf = _mm256_set1_ps(__builtin_inff());
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x;
    if (sdt == DTYPE_F32) x = _mm256_loadu_ps(reinterpret_cast<const float*>(s + i * 4));
    else {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i * 2));
      x = sdt == DTYPE_F16 ? _mm256_cvtph_ps(h) : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
      if (sdt == DTYPE_F16) {
        // vcvtph2ps quiets signaling NaNs; the reference keeps every NaN's bits (sign, payload << 13)
        const __m256i hw = _mm256_cvtepu16_epi32(h), mn = _mm256_and_si256(hw, _mm256_set1_epi32(0x03ff));
        const __m256i nan = _mm256_andnot_si256(_mm256_cmpeq_epi32(mn, _mm256_setzero_si256()),
                                                _mm256_cmpeq_epi32(_mm256_and_si256(hw, _mm256_set1_epi32(0x7c00)), _mm256_set1_epi32(0x7c00)));
        if (!_mm256_testz_si256(nan, nan)) {
          const __m256i bits = _mm256_or_si256(_mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(hw, _mm256_set1_epi32(0x8000)), 16),
                                                               _mm256_set1_epi32(0x7f800000)),
                                               _mm256_slli_epi32(mn, 13));
          x = _mm256_blendv_ps(x, _mm256_castsi256_ps(bits), _mm256_castsi256_ps(nan));
        }
      }
    }
    if (ddt == DTYPE_F32) {
      _mm256_storeu_ps(reinterpret_cast<float*>(d + i * 4), x);
    } else if (ddt == DTYPE_F16) {
      __m256 ax = _mm256_and_ps(x, absmask);
      __m256 bigv = _mm256_and_ps(_mm256_cmp_ps(ax, lim, _CMP_GE_OQ), _mm256_cmp_ps(ax, inf, _CMP_NEQ_OQ));
      unsigned big = (unsigned)_mm256_movemask_ps(bigv);
      if (big) {
        if (saturate) {
          __m256 c = _mm256_min_ps(sat, _mm256_max_ps(nsat, x));
          x = _mm256_blendv_ps(x, c, bigv);
        } else {
          if (r->overflow == 0) r->first_overflow = base + i + (size_t)__builtin_ctz(big);
          r->overflow += (size_t)__builtin_popcount(big);
        }
      }
      __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i * 2), h);
    } else {
      __m256i u = _mm256_castps_si256(x);
      __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
      __m256i rnd = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
      __m256i nanv = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
      __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
      __m256i isnan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000));  // a <= 0x7fffffff: signed compare is safe
      __m256i v = _mm256_blendv_epi8(rnd, nanv, isnan);
      // pack 8 x u32 (each < 65536) into 8 x u16
      __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i * 2), _mm_packus_epi32(lo, hi));
    }
  }
  if (i < n) convert_range_generic(s + i * ss, sdt, d + i * dtype_size(ddt), ddt, n - i, saturate, base + i, r);
}


// 64 elements per step: four (f32) or two (f16/bf16) 256-bit compares OR-ed, one test.
size_t first_nonfinite_range_avx2(const void* src, int dt, size_t n) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  size_t i = 0;
  if (dt == DTYPE_F32) {
    const __m256i e = _mm256_set1_epi32(0x7f800000);
    for (; i + 64 <= n; i += 64) {
      __m256i any = _mm256_setzero_si256();
      for (int k = 0; k < 8; k++) {
        const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + (i + 8 * k) * 4));
        any = _mm256_or_si256(any, _mm256_cmpeq_epi32(_mm256_and_si256(u, e), e));
      }
      if (!_mm256_testz_si256(any, any)) return i + first_nonfinite_ref(s + i * 4, dt, 64);
    }
  } else {
    const __m256i e = _mm256_set1_epi16(dt == DTYPE_F16 ? 0x7c00 : 0x7f80);
    for (; i + 64 <= n; i += 64) {
      __m256i any = _mm256_setzero_si256();
      for (int k = 0; k < 4; k++) {
        const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + (i + 16 * k) * 2));
        any = _mm256_or_si256(any, _mm256_cmpeq_epi16(_mm256_and_si256(u, e), e));
      }
      if (!_mm256_testz_si256(any, any)) return i + first_nonfinite_ref(s + i * 2, dt, 64);
    }
  }
  const size_t r = first_nonfinite_range_generic(s + i * dtype_size(dt), dt, n - i);
  return r == SIZE_MAX ? r : i + r;
}

}  // namespace lowbit
