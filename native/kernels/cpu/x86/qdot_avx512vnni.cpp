// AVX-512 VNNI integer-dot matmul (see kernels/qdot.h for the layout and the sums). The layout's
// 32-byte units hold 4 consecutive codes of each of 8 columns, which is exactly what vpdpbusd
// multiplies: per 32-bit lane, 4 unsigned bytes × 4 signed bytes summed into an int32 accumulator.
// One zmm carries the same unit of two neighbouring tiles (16 output columns: tile T in lanes 0–7,
// T+1 in lanes 8–15), so each broadcast of 4 activation bytes feeds 16 columns and each decoded
// weight vector feeds NT tokens, with one instruction per product instead of AVX2's
// vpmaddubsw + vpmaddwd + vpaddd (and no int16 stage to keep below 2¹⁵).
//   4-bit: mask / shift+mask → codes 0…15 (unsigned), two vpdpbusd per unit and token.
//   2/3-bit: four crumb planes (plus the high-bit plane for 3-bit), four vpdpbusd per unit and token.
//   8-bit: signed codes; w ⊕ 0x80 = w + 128 is unsigned, and Σ (w + 128)·x = Σ w·x + 128·Σx, whose
//          correction 128·Σx the activation quantizer already computed (a.sum): one vpdpbusd per
//          unit and token instead of AVX2's abs/sign pair.
// A range's odd last tile goes to the AVX2 kernel. Not yet measured on AVX-512 hardware (the
// project's machine has none); checked on any AVX2 CPU by scripts/check-avx512.sh (intrinsics
// emulated) and natively by the test suite where the CPU has AVX512_VNNI. The dispatcher runs it
// under ISA_AVX512 (opt-in: LOWBIT_ISA=avx512) when the CPU reports AVX512_VNNI.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/x86/qdot_x86.h"
#include "kernels/qdot.h"

namespace lowbit {

namespace {

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The 32-byte units at p0 (tile T) and p1 (tile T+1) in one register.
inline __m512i load_pair(const uint8_t* p0, const uint8_t* p1) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p0))),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p1)), 1);
}

// 8 values at index s0 (tile T) and 8 at s1 (tile T+1) of a (tiles, ·, 8) array, as 16 floats.
inline __m512 load_pair_f32(const float* v, size_t s0, size_t s1) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(v + s0)), _mm256_loadu_ps(v + s1), 1);
}
inline __m512 load_pair_f16(const uint16_t* v, size_t s0, size_t s1) {
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v + s0)), b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v + s1));
  return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
}
inline __m512 load_pair_i8(const int8_t* v, size_t s0, size_t s1) {
  const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(v + s0)), b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(v + s1));
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_unpacklo_epi64(a, b)));
}

// Block epilogue for 16 columns: acc += cvt(Σ [− 128·Σx]) · d·sx + (m or d) · zs; two-level scales
// as in the AVX2 kernel.
template <int NT, bool BIAS128>
inline void epilogue(const Ctx& c, size_t T, size_t t0, size_t b, __m512i (&s32)[NT], __m512 (&acc)[NT]) {
  const QBlockMatrix& w = c.w;
  const size_t s0 = (T * c.B + b) * 8, s1 = ((T + 1) * c.B + b) * 8;
  const size_t p0 = c.sups.at(T, b), p1 = c.sups.at(T + 1, b);
  const __m512 dv = w.ds ? _mm512_mul_ps(load_pair_f16(w.d, p0, p1), load_pair_i8(w.ds, s0, s1)) : load_pair_f16(w.d, s0, s1);
  const __m512 mv = w.ms ? _mm512_xor_ps(_mm512_mul_ps(load_pair_f16(w.mh, p0, p1), load_pair_i8(w.ms, s0, s1)), _mm512_set1_ps(-0.0f))
                  : w.m  ? load_pair_f32(w.m, s0, s1)
                         : dv;
  for (int t = 0; t < NT; t++) {
    const size_t ti = (t0 + t) * c.B + b;
    if (BIAS128) s32[t] = _mm512_sub_epi32(s32[t], _mm512_set1_epi32(128 * c.a.sum[ti]));
    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s32[t]), _mm512_mul_ps(dv, _mm512_set1_ps(c.a.sx[ti])), acc[t]);
    acc[t] = _mm512_fmadd_ps(mv, _mm512_set1_ps(c.zs[ti]), acc[t]);
  }
}

template <int NT>
inline void store(const __m512 (&acc)[NT], size_t T, size_t t0, size_t ncols, float* y, size_t ldy) {
  const __mmask16 m = (__mmask16)(ncols >= 16 ? 0xffff : (1u << ncols) - 1);
  for (int t = 0; t < NT; t++) {
    float* dst = y + (t0 + t) * ldy + T * 8;
    if (ncols >= 16) _mm512_storeu_ps(dst, acc[t]);
    else _mm512_mask_storeu_ps(dst, m, acc[t]);
  }
}

// Tiles T and T+1 × NT tokens. A unit of UB bytes per tile holds C channels of its 8 columns;
// `unit.dot` adds one unit's products for one token to an int32 accumulator.
template <int NT, size_t C, size_t UB, bool BIAS128, class Unit>
inline void tile_pair(const Ctx& c, size_t T, size_t t0, size_t ncols, float* y, size_t ldy, const Unit& unit) {
  const QBlockMatrix& w = c.w;
  const size_t in = w.in, upb = (size_t)w.kb / C, stride = (in / C) * UB;
  const uint8_t* q0 = w.q + T * stride;
  const uint8_t* q1 = q0 + stride;
  const int8_t* xr[NT];
  __m512 acc[NT];
  for (int t = 0; t < NT; t++) xr[t] = c.a.xq + (t0 + t) * in, acc[t] = _mm512_setzero_ps();
  size_t u = 0;
  for (size_t b = 0; b < c.B; b++) {
    __m512i s32[NT];
    for (int t = 0; t < NT; t++) s32[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (size_t j = 0; j < upb; j++, u++) {
      prefetch_line(q0, u * UB, UB);
      prefetch_line(q1, u * UB, UB);
      const auto dec = unit.decode(q0 + u * UB, q1 + u * UB);
      for (int t = 0; t < NT; t++) s32[t] = unit.dot(s32[t], dec, xr[t] + u * C);
    }
    epilogue<NT, BIAS128>(c, T, t0, b, s32, acc);
  }
  store<NT>(acc, T, t0, ncols, y, ldy);
}

struct Unit4 {  // 8 channels per unit: nibbles i (low) and 4 + i (high) of byte i
  __m512i lo4 = _mm512_set1_epi8(0x0F);
  struct D {
    __m512i lo, hi;
  };
  D decode(const uint8_t* p0, const uint8_t* p1) const {
    const __m512i v = load_pair(p0, p1);
    return {_mm512_and_si512(v, lo4), _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4)};
  }
  __m512i dot(__m512i s, const D& d, const int8_t* x) const {
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s, d.lo, bcast4(x)), d.hi, bcast4(x + 4));
  }
};

// 16 channels per unit: crumb s of byte i is channel 4s + i; 3-bit units add 16 bytes of high bits
// per tile (a nibble per crumb byte: low nibbles for bytes 0–15, high for 16–31; bit s of the
// nibble is bit 2 of crumb s's code).
template <bool HIGH>
struct UnitLow {
  __m512i m3 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
  __m128i m15 = _mm_set1_epi8(15);
  struct D {
    __m512i q[4];
  };
  __m256i spread(const uint8_t* h) const {  // 16 bytes of nibbles → 32 bytes, one per crumb byte
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h));
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(v, m15)), _mm_and_si128(_mm_srli_epi16(v, 4), m15), 1);
  }
  D decode(const uint8_t* p0, const uint8_t* p1) const {
    const __m512i v = load_pair(p0, p1);
    D d{{_mm512_and_si512(v, m3), _mm512_and_si512(_mm512_srli_epi16(v, 2), m3), _mm512_and_si512(_mm512_srli_epi16(v, 4), m3),
         _mm512_and_si512(_mm512_srli_epi16(v, 6), m3)}};
    if (HIGH) {
      const __m512i hx = _mm512_inserti64x4(_mm512_castsi256_si512(spread(p0 + 32)), spread(p1 + 32), 1);
      d.q[0] = _mm512_or_si512(d.q[0], _mm512_and_si512(_mm512_slli_epi16(hx, 2), four));  // bit 0 → 2
      d.q[1] = _mm512_or_si512(d.q[1], _mm512_and_si512(_mm512_slli_epi16(hx, 1), four));  // bit 1 → 2
      d.q[2] = _mm512_or_si512(d.q[2], _mm512_and_si512(hx, four));
      d.q[3] = _mm512_or_si512(d.q[3], _mm512_and_si512(_mm512_srli_epi16(hx, 1), four));  // bit 3 → 2
    }
    return d;
  }
  __m512i dot(__m512i s, const D& d, const int8_t* x) const {
    s = _mm512_dpbusd_epi32(s, d.q[0], bcast4(x));
    s = _mm512_dpbusd_epi32(s, d.q[1], bcast4(x + 4));
    s = _mm512_dpbusd_epi32(s, d.q[2], bcast4(x + 8));
    return _mm512_dpbusd_epi32(s, d.q[3], bcast4(x + 12));
  }
};

struct Unit8 {  // 4 channels per unit, signed codes made unsigned by + 128 (corrected per block)
  __m512i bias = _mm512_set1_epi8((char)0x80);
  using D = __m512i;
  D decode(const uint8_t* p0, const uint8_t* p1) const { return _mm512_xor_si512(load_pair(p0, p1), bias); }
  __m512i dot(__m512i s, const D& d, const int8_t* x) const { return _mm512_dpbusd_epi32(s, d, bcast4(x)); }
};

template <int NT>
inline void tile(const Ctx& c, size_t T, size_t t0, size_t ncols, float* y, size_t ldy) {
  switch (c.w.bits) {
    case 4: tile_pair<NT, 8, 32, false>(c, T, t0, ncols, y, ldy, Unit4{}); break;
    case 2: tile_pair<NT, 16, 32, false>(c, T, t0, ncols, y, ldy, UnitLow<false>{}); break;
    case 3: tile_pair<NT, 16, 48, false>(c, T, t0, ncols, y, ldy, UnitLow<true>{}); break;
    default: tile_pair<NT, 4, 32, true>(c, T, t0, ncols, y, ldy, Unit8{});
  }
}

}  // namespace

void qdot_gemm_avx512vnni_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1) {
  if (n1 <= n0) return;
  const Ctx c{w, a, w.blocks(), a.zs};
  const size_t T0 = n0 / 8, T1 = (n1 + 7) / 8;
  const size_t Tp = T0 + (T1 - T0) / 2 * 2;  // tiles [T0, Tp) in pairs; an odd last tile to AVX2
  size_t t = 0;
  for (; t + 4 <= rows; t += 4)
    for (size_t T = T0; T < Tp; T += 2) tile<4>(c, T, t, std::min<size_t>(16, n1 - T * 8), y, ldy);
  const size_t rest = rows - t;
  for (size_t T = T0; T < Tp; T += 2) {
    const size_t nc = std::min<size_t>(16, n1 - T * 8);
    if (rest == 3) tile<3>(c, T, t, nc, y, ldy);
    else if (rest == 2) tile<2>(c, T, t, nc, y, ldy);
    else if (rest == 1) tile<1>(c, T, t, nc, y, ldy);
  }
  if (Tp < T1) qdot_gemm_avx2_range(w, a, rows, y, ldy, Tp * 8, n1);
}

}  // namespace lowbit
