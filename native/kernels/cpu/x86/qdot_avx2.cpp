// AVX2 integer-dot matmul (see kernels/qdot.h): vpmaddubsw of unsigned 4-bit codes (or |w| for
// signed 8-bit codes) against broadcast int8 activations; 8 output columns per register (the
// layout's tiles), int16 sums over 32 channels, int32 over the block, one conversion and two FMAs
// per block for all 8 columns. A tile of NT tokens shares every decoded weight vector.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/x86/qdot_x86.h"
#include "kernels/qdot.h"

namespace lowbit {

void quantize_acts_avx2(const float* x, size_t rows, size_t in, int kb, const int32_t* perm, const QActs& a) {
  const size_t B = in / (size_t)kb;
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 lim = _mm256_set1_ps(127.0f), nlim = _mm256_set1_ps(-127.0f);
  alignas(32) float g[256];
  for (size_t t = 0; t < rows; t++) {
    const float* xr = x + t * in;
    for (size_t b = 0; b < B; b++) {
      const float* src = xr + b * kb;
      if (perm) {
        for (int k = 0; k < kb; k++) g[k] = xr[perm[b * kb + k]];
        src = g;
      }
      __m256 mx = _mm256_setzero_ps();
      for (int k = 0; k < kb; k += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(src + k), absmask));
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
      const float amax = _mm_cvtss_f32(m4);
      const float idf = amax > 0.0f ? 127.0f / amax : 0.0f;
      const __m256 id = _mm256_set1_ps(idf);
      __m256i acc = _mm256_setzero_si256();
      int8_t* dst = a.xq + t * in + b * kb;
      if (kb == 16) {  // Q6_K's blocks: 2 × 8 values
        const __m256i q0 = _mm256_cvtps_epi32(_mm256_min_ps(lim, _mm256_max_ps(nlim, _mm256_mul_ps(_mm256_loadu_ps(src), id))));
        const __m256i q1 = _mm256_cvtps_epi32(_mm256_min_ps(lim, _mm256_max_ps(nlim, _mm256_mul_ps(_mm256_loadu_ps(src + 8), id))));
        acc = _mm256_add_epi32(q0, q1);
        // per 128-bit lane: packs give [q0 0-3, q1 0-3 | q0 4-7, q1 4-7]; dwords 0, 4, 1, 5 restore the order
        const __m256i p16 = _mm256_packs_epi32(q0, q1), p8 = _mm256_packs_epi16(p16, p16);
        const __m256i ord = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm256_castsi256_si128(ord));
      }
      for (int k = 0; k + 32 <= kb; k += 32) {
        __m256i q[4];
        for (int j = 0; j < 4; j++) {
          const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(src + k + 8 * j), id);
          q[j] = _mm256_cvtps_epi32(_mm256_min_ps(lim, _mm256_max_ps(nlim, v)));  // round half to even
          acc = _mm256_add_epi32(acc, q[j]);
        }
        // 4 × 8 int32 → 32 int8 in order (packs work per 128-bit lane: fix the order after)
        const __m256i p16a = _mm256_packs_epi32(q[0], q[1]), p16b = _mm256_packs_epi32(q[2], q[3]);
        const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        const __m256i ord = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k), ord);
      }
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
      a.sx[t * B + b] = amax / 127.0f;
      a.sum[t * B + b] = _mm_cvtsi128_si32(s4);
    }
  }
}

namespace {

static inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

static inline __m256 f16x8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
static inline __m256 i8x8(const int8_t* p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))); }

// Block epilogue for 8 columns: acc += cvt(Σ) · d·sx + (m or d) · zs — lanes are columns. Two-level
// scales: d = f32(d[super]) · ds, m = −f32(mh[super]) · ms (the products exact as the reference's).
template <int NT>
static inline void epilogue(const Ctx& c, size_t T, size_t t0, size_t b, const __m256i (&s32)[NT], __m256 (&acc)[NT]) {
  const QBlockMatrix& w = c.w;
  const size_t si = (T * c.B + b) * 8;
  const __m256 dv = w.ds ? _mm256_mul_ps(f16x8(w.d + c.sups.at(T, b)), i8x8(w.ds + si)) : f16x8(w.d + si);
  const __m256 mv = w.ms ? _mm256_xor_ps(_mm256_mul_ps(f16x8(w.mh + c.sups.at(T, b)), i8x8(w.ms + si)), _mm256_set1_ps(-0.0f))
                  : w.m  ? _mm256_loadu_ps(w.m + si)
                         : dv;
  for (int t = 0; t < NT; t++) {
    const size_t ti = (t0 + t) * c.B + b;
    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32[t]), _mm256_mul_ps(dv, _mm256_set1_ps(c.a.sx[ti])), acc[t]);
    acc[t] = _mm256_fmadd_ps(mv, _mm256_set1_ps(c.zs[ti]), acc[t]);
  }
}

template <int NT>
static inline void store(const __m256 (&acc)[NT], size_t T, size_t t0, size_t ncols, float* y, size_t ldy) {
  for (int t = 0; t < NT; t++) {
    float* dst = y + (t0 + t) * ldy + T * 8;
    if (ncols == 8) _mm256_storeu_ps(dst, acc[t]);
    else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, acc[t]);
      for (size_t j = 0; j < ncols; j++) dst[j] = tmp[j];
    }
  }
}

// 4-, 3- and 2-bit codes: 8 columns × NT tokens. A unit of UB bytes holds C channels of the 8
// columns (C = 8 nibbles, or 16 crumbs (+ 16 high bits)); `unit` returns its products for one token
// as int16 lanes. int16 sums over 32 channels (16 products ≤ 15·127 per lane), int32 over the block.
template <int NT, size_t C, size_t UB, class Unit>
static inline void tile_packed(const Ctx& c, size_t T, size_t t0, size_t ncols, float* y, size_t ldy, const Unit& unit) {
  const QBlockMatrix& w = c.w;
  const size_t in = w.in, subs = (size_t)w.kb / 32;
  const uint8_t* wq = w.q + T * (in / C) * UB;
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t* xr[NT];
  __m256 acc[NT];
  for (int t = 0; t < NT; t++) xr[t] = c.a.xq + (t0 + t) * in, acc[t] = _mm256_setzero_ps();
  size_t u = 0;
  for (size_t b = 0; b < c.B; b++) {
    __m256i s32[NT];
    for (int t = 0; t < NT; t++) s32[t] = _mm256_setzero_si256();
    for (size_t sb = 0; sb < subs; sb++) {
      __m256i s16[NT];
      for (int t = 0; t < NT; t++) s16[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (size_t j = 0; j < 32 / C; j++, u++) {
        prefetch_line(wq, u * UB, UB);
        const auto dec = unit.decode(wq + u * UB);
        for (int t = 0; t < NT; t++) s16[t] = _mm256_add_epi16(s16[t], unit.dot(dec, xr[t] + u * C));
      }
      for (int t = 0; t < NT; t++) s32[t] = _mm256_add_epi32(s32[t], _mm256_madd_epi16(s16[t], ones));
    }
    epilogue<NT>(c, T, t0, b, s32, acc);
  }
  store<NT>(acc, T, t0, ncols, y, ldy);
}

// 4-bit: a mask and a shift give channels 8u … 8u+3 and 8u+4 … 8u+7 of all 8 columns.
struct Unit4 {
  __m256i lo4 = _mm256_set1_epi8(0x0F);
  struct D {
    __m256i lo, hi;
  };
  D decode(const uint8_t* p) const {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return {_mm256_and_si256(v, lo4), _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4)};
  }
  __m256i dot(const D& d, const int8_t* x) const {
    return _mm256_add_epi16(_mm256_maddubs_epi16(d.lo, bcast4(x)), _mm256_maddubs_epi16(d.hi, bcast4(x + 4)));
  }
};

// 2-bit: shift 2s and mask 3 give channels 16u + 4s … +3 of all 8 columns (16 products ≤ 3·127
// per lane). 3-bit: the same low bits; the 16 high-bit bytes hold a nibble per crumb byte (low
// nibbles: bytes 0–15, high: 16–31), spread to 32 bytes by a mask, a shift and an insert; bit s of
// each nibble is bit 2 of sub s's code (≤ 7·127 per product, 16 per lane: < 2¹⁵).
template <bool HIGH>
struct UnitLow {
  __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
  __m128i m15 = _mm_set1_epi8(15);
  struct D {
    __m256i q[4];
  };
  D decode(const uint8_t* p) const {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    D d{{_mm256_and_si256(v, m3), _mm256_and_si256(_mm256_srli_epi16(v, 2), m3), _mm256_and_si256(_mm256_srli_epi16(v, 4), m3),
         _mm256_and_si256(_mm256_srli_epi16(v, 6), m3)}};
    if (HIGH) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32));
      const __m256i hx = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(h, m15)), _mm_and_si128(_mm_srli_epi16(h, 4), m15), 1);
      d.q[0] = _mm256_or_si256(d.q[0], _mm256_and_si256(_mm256_slli_epi16(hx, 2), four));  // bit 0 → 2
      d.q[1] = _mm256_or_si256(d.q[1], _mm256_and_si256(_mm256_slli_epi16(hx, 1), four));  // bit 1 → 2
      d.q[2] = _mm256_or_si256(d.q[2], _mm256_and_si256(hx, four));
      d.q[3] = _mm256_or_si256(d.q[3], _mm256_and_si256(_mm256_srli_epi16(hx, 1), four));  // bit 3 → 2
    }
    return d;
  }
  __m256i dot(const D& d, const int8_t* x) const {
    const __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(d.q[0], bcast4(x)), _mm256_maddubs_epi16(d.q[1], bcast4(x + 4)));
    const __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(d.q[2], bcast4(x + 8)), _mm256_maddubs_epi16(d.q[3], bcast4(x + 12)));
    return _mm256_add_epi16(p01, p23);
  }
};

// 8-bit: 8 columns × NT tokens; |w| · (x · sign w) keeps the unsigned × signed product exact.
template <int NT>
static void tile8(const Ctx& c, size_t T, size_t t0, size_t ncols, float* y, size_t ldy) {
  const QBlockMatrix& w = c.w;
  const size_t in = w.in, upb = (size_t)w.kb / 4;
  const uint8_t* wq = w.q + T * (in / 4) * 32;
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t* xr[NT];
  __m256 acc[NT];
  for (int t = 0; t < NT; t++) xr[t] = c.a.xq + (t0 + t) * in, acc[t] = _mm256_setzero_ps();
  size_t u = 0;  // unit: 4 channels
  for (size_t b = 0; b < c.B; b++) {
    __m256i s32[NT];
    for (int t = 0; t < NT; t++) s32[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (size_t j = 0; j < upb; j++, u++) {
      prefetch_line(wq, u * 32, 32);
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + u * 32));
      const __m256i av = _mm256_abs_epi8(v);
      for (int t = 0; t < NT; t++)
        s32[t] = _mm256_add_epi32(s32[t], _mm256_madd_epi16(_mm256_maddubs_epi16(av, _mm256_sign_epi8(bcast4(xr[t] + u * 4), v)), ones));
    }
    epilogue<NT>(c, T, t0, b, s32, acc);
  }
  store<NT>(acc, T, t0, ncols, y, ldy);
}

template <int NT>
static inline void tile(const Ctx& c, size_t T, size_t t0, size_t ncols, float* y, size_t ldy) {
  if (c.w.bits == 4) tile_packed<NT, 8, 32>(c, T, t0, ncols, y, ldy, Unit4{});
  else if (c.w.bits == 2) tile_packed<NT, 16, 32>(c, T, t0, ncols, y, ldy, UnitLow<false>{});
  else if (c.w.bits == 3) tile_packed<NT, 16, 48>(c, T, t0, ncols, y, ldy, UnitLow<true>{});
  else tile8<NT>(c, T, t0, ncols, y, ldy);
}

}  // namespace

void qdot_gemm_avx2_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1) {
  const Ctx c{w, a, w.blocks(), a.zs};
  const size_t T0 = n0 / 8, T1 = (n1 + 7) / 8;
  size_t t = 0;
  // token tiles of 4: each decoded weight vector feeds 4 tokens; the range's weights stay in L1/L2
  for (; t + 4 <= rows; t += 4)
    for (size_t T = T0; T < T1; T++) tile<4>(c, T, t, std::min<size_t>(8, n1 - T * 8), y, ldy);
  const size_t rest = rows - t;
  for (size_t T = T0; T < T1; T++) {
    const size_t nc = std::min<size_t>(8, n1 - T * 8);
    if (rest == 3) tile<3>(c, T, t, nc, y, ldy);
    else if (rest == 2) tile<2>(c, T, t, nc, y, ldy);
    else if (rest == 1) tile<1>(c, T, t, nc, y, ldy);
  }
}

}  // namespace lowbit
