// AVX2 search of ggml's Q4_K encoder (kernels/ggml_encode.h): the eight sub-blocks of a super-block
// run make_qkx2_quants side by side, one per lane. Every lane performs the scalar code's f32
// operations in the scalar code's order (no fused multiply-adds, no reassociation; vdivps and
// vsqrtps round as divss and sqrtss do; `if (a < b)` and `if (mad < best)` become blends), so the
// scales, mins and codes are bit-identical to the scalar search — the native test compares the
// encoded bytes with the TypeScript reference.
#include <immintrin.h>

#include <cstring>

#include "kernels/ggml_encode.h"

namespace lowbit {

namespace {

inline __m256i nearest_int(__m256 v) {  // ggml's nearest_int, per lane
  const __m256 t = _mm256_add_ps(v, _mm256_set1_ps(12582912.0f));
  return _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(t), _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

inline __m256i clamp(__m256i l, int nmax) { return _mm256_max_epi32(_mm256_setzero_si256(), _mm256_min_epi32(_mm256_set1_epi32(nmax), l)); }

}  // namespace

void q4k_search_avx2(const float* x, float* scales, float* neg_mins, uint8_t* L) {
  constexpr int n = 32, nmax = 15, nstep = 20;
  const float rmin = -1.0f, rdelta = 0.1f;
  // lane j = sub-block j: xt[i] holds x[32j + i] of the eight sub-blocks
  __m256 xt[n], w[n];
  alignas(32) float tmp[8];
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < 8; j++) tmp[j] = x[32 * j + i];
    xt[i] = _mm256_load_ps(tmp);
  }
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), zero = _mm256_setzero_ps();
  __m256 s2 = zero;
  for (int i = 0; i < n; i++) s2 = _mm256_add_ps(s2, _mm256_mul_ps(xt[i], xt[i]));
  const __m256 av = _mm256_sqrt_ps(_mm256_div_ps(s2, _mm256_set1_ps(32.0f)));
  for (int i = 0; i < n; i++) w[i] = _mm256_add_ps(av, _mm256_and_ps(xt[i], absmask));

  __m256 mn = xt[0], mx = xt[0], sum_w = w[0], sum_x = _mm256_mul_ps(w[0], xt[0]);
  for (int i = 1; i < n; i++) {
    mn = _mm256_blendv_ps(mn, xt[i], _mm256_cmp_ps(xt[i], mn, _CMP_LT_OQ));
    mx = _mm256_blendv_ps(mx, xt[i], _mm256_cmp_ps(xt[i], mx, _CMP_GT_OQ));
    sum_w = _mm256_add_ps(sum_w, w[i]);
    sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w[i], xt[i]));
  }
  mn = _mm256_blendv_ps(mn, zero, _mm256_cmp_ps(mn, zero, _CMP_GT_OQ));
  const __m256 flat = _mm256_cmp_ps(mx, mn, _CMP_EQ_OQ);
  __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(mx, mn));
  __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale), best = zero;
  __m256i Lv[n], aux[n];
  for (int i = 0; i < n; i++) {
    Lv[i] = clamp(nearest_int(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], mn))), nmax);
    const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(Lv[i])), mn), xt[i]);
    best = _mm256_add_ps(best, _mm256_mul_ps(w[i], _mm256_mul_ps(diff, diff)));
  }
  for (int is = 0; is <= nstep; is++) {
    const float c = rmin + rdelta * (float)is + (float)nmax;  // the scalar code's order: (rmin + rdelta·is) + nmax
    iscale = _mm256_div_ps(_mm256_set1_ps(c), _mm256_sub_ps(mx, mn));
    __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
    for (int i = 0; i < n; i++) {
      aux[i] = clamp(nearest_int(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], mn))), nmax);
      const __m256 wl = _mm256_mul_ps(w[i], _mm256_cvtepi32_ps(aux[i]));
      sum_l = _mm256_add_ps(sum_l, wl);
      sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, _mm256_cvtepi32_ps(aux[i])));
      sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, xt[i]));
    }
    const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
    const __m256 ok = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
    if (_mm256_movemask_ps(ok) == 0) continue;
    __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
    __m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
    const __m256 pos = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
    this_min = _mm256_blendv_ps(this_min, zero, pos);
    this_scale = _mm256_blendv_ps(this_scale, _mm256_div_ps(sum_xl, sum_l2), pos);
    __m256 mad = zero;
    for (int i = 0; i < n; i++) {
      const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, _mm256_cvtepi32_ps(aux[i])), this_min), xt[i]);
      mad = _mm256_add_ps(mad, _mm256_mul_ps(w[i], _mm256_mul_ps(diff, diff)));
    }
    const __m256 take = _mm256_andnot_ps(flat, _mm256_and_ps(ok, _mm256_cmp_ps(mad, best, _CMP_LT_OQ)));
    if (_mm256_movemask_ps(take) == 0) continue;
    const __m256i ti = _mm256_castps_si256(take);
    for (int i = 0; i < n; i++) Lv[i] = _mm256_blendv_epi8(Lv[i], aux[i], ti);
    best = _mm256_blendv_ps(best, mad, take);
    scale = _mm256_blendv_ps(scale, this_scale, take);
    mn = _mm256_blendv_ps(mn, this_min, take);
  }
  // constant sub-blocks: codes 0, scale 0, min as found (the scalar code returns before the search)
  scale = _mm256_blendv_ps(scale, zero, flat);
  const __m256 neg = _mm256_xor_ps(mn, _mm256_set1_ps(-0.0f));  // −min, as the scalar code negates
  _mm256_storeu_ps(scales, scale);
  _mm256_storeu_ps(neg_mins, neg);
  const int flat_bits = _mm256_movemask_ps(flat);
  alignas(32) int32_t li[8];
  for (int i = 0; i < n; i++) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(li), Lv[i]);
    for (int j = 0; j < 8; j++) L[32 * j + i] = (uint8_t)(flat_bits >> j & 1 ? 0 : li[j]);
  }
}

}  // namespace lowbit
