// NEON integer-dot tiles (see kernels/qdot.h), shared by the plain NEON and the dot-product builds:
// `Dot::dot4(acc, w, xb)` adds, to each int32 lane j, the dot product of bytes 4j…4j+3 of w with
// the 4 activation bytes broadcast in xb — exactly the layout's unit (4 bytes of each column), so
// lanes are output columns, as in the AVX2 kernel. A 32-byte unit is two int8x16 halves: columns
// 0–3 and 4–7. Codes of 2, 3, 4 and 8 bits, each in its own layout. Sums are int32 throughout (exact); the block epilogue matches the AVX2 kernel's.
#pragma once
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels/qdot.h"

namespace lowbit {
namespace neon_qdot {

static inline int8x16_t bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

template <class Dot, int NT>
static void tile(const QBlockMatrix& w, const QActs& a, size_t T, size_t t0, size_t ncols, float* y, size_t ldy) {
  const size_t in = w.in, B = w.blocks(), kb = (size_t)w.kb;
  const QblockSupers sups(w);  // two-level scales: where block b finds d and mh
  const int8_t* xr[NT];
  float32x4_t acc[NT][2];
  for (int t = 0; t < NT; t++) xr[t] = a.xq + (t0 + t) * in, acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
  const uint8x16_t lo4 = vdupq_n_u8(0x0F);
  const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
  const uint8_t* wq = w.q + T * 8 * w.row_bytes();
  size_t u = 0;
  for (size_t b = 0; b < B; b++) {
    int32x4_t s[NT][2];
    for (int t = 0; t < NT; t++) s[t][0] = s[t][1] = vdupq_n_s32(0);
    if (w.bits == 4) {
      for (size_t j = 0; j < kb / 8; j++, u++) {  // unit: 8 channels
        const uint8x16_t v0 = vld1q_u8(wq + u * 32), v1 = vld1q_u8(wq + u * 32 + 16);
        const int8x16_t l0 = vreinterpretq_s8_u8(vandq_u8(v0, lo4)), h0 = vreinterpretq_s8_u8(vshrq_n_u8(v0, 4));
        const int8x16_t l1 = vreinterpretq_s8_u8(vandq_u8(v1, lo4)), h1 = vreinterpretq_s8_u8(vshrq_n_u8(v1, 4));
        for (int t = 0; t < NT; t++) {
          const int8x16_t xl = bcast4(xr[t] + u * 8), xh = bcast4(xr[t] + u * 8 + 4);
          s[t][0] = Dot::dot4(Dot::dot4(s[t][0], l0, xl), h0, xh);
          s[t][1] = Dot::dot4(Dot::dot4(s[t][1], l1, xl), h1, xh);
        }
      }
    } else if (w.bits == 2 || w.bits == 3) {
      // unit: 16 channels; crumb s of byte 4j + i is channel 16u + 4s + i of column j. 3-bit units
      // (48 bytes) add 16 bytes of high bits: byte p % 16 holds crumb byte p's four in its low
      // nibble (p < 16: columns 0–3) or high nibble (p ≥ 16: columns 4–7); nibble bit s is bit 2
      // of crumb s's code. Codes 0…7 are valid int8 as they are.
      const size_t ub = w.bits == 2 ? 32 : 48;
      for (size_t j = 0; j < kb / 16; j++, u++) {
        const uint8_t* p = wq + u * ub;
        const uint8x16_t v0 = vld1q_u8(p), v1 = vld1q_u8(p + 16);
        int8x16_t q0[4], q1[4];
        q0[0] = vreinterpretq_s8_u8(vandq_u8(v0, m3)), q1[0] = vreinterpretq_s8_u8(vandq_u8(v1, m3));
        q0[1] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v0, 2), m3)), q1[1] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v1, 2), m3));
        q0[2] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v0, 4), m3)), q1[2] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v1, 4), m3));
        q0[3] = vreinterpretq_s8_u8(vshrq_n_u8(v0, 6)), q1[3] = vreinterpretq_s8_u8(vshrq_n_u8(v1, 6));
        if (w.bits == 3) {
          const uint8x16_t h = vld1q_u8(p + 32), h0 = vandq_u8(h, vdupq_n_u8(15)), h1 = vshrq_n_u8(h, 4);
          const uint8x16_t b0[4] = {vandq_u8(vshlq_n_u8(h0, 2), four), vandq_u8(vshlq_n_u8(h0, 1), four), vandq_u8(h0, four),
                                    vandq_u8(vshrq_n_u8(h0, 1), four)};
          const uint8x16_t b1[4] = {vandq_u8(vshlq_n_u8(h1, 2), four), vandq_u8(vshlq_n_u8(h1, 1), four), vandq_u8(h1, four),
                                    vandq_u8(vshrq_n_u8(h1, 1), four)};
          for (int c = 0; c < 4; c++) {
            q0[c] = vorrq_s8(q0[c], vreinterpretq_s8_u8(b0[c]));
            q1[c] = vorrq_s8(q1[c], vreinterpretq_s8_u8(b1[c]));
          }
        }
        for (int t = 0; t < NT; t++) {
          const int8_t* x = xr[t] + u * 16;
          for (int c = 0; c < 4; c++) {
            const int8x16_t xv = bcast4(x + 4 * c);
            s[t][0] = Dot::dot4(s[t][0], q0[c], xv);
            s[t][1] = Dot::dot4(s[t][1], q1[c], xv);
          }
        }
      }
    } else {
      for (size_t j = 0; j < kb / 4; j++, u++) {  // unit: 4 channels, signed codes
        const int8x16_t v0 = vld1q_s8(reinterpret_cast<const int8_t*>(wq + u * 32));
        const int8x16_t v1 = vld1q_s8(reinterpret_cast<const int8_t*>(wq + u * 32 + 16));
        for (int t = 0; t < NT; t++) {
          const int8x16_t xv = bcast4(xr[t] + u * 4);
          s[t][0] = Dot::dot4(s[t][0], v0, xv);
          s[t][1] = Dot::dot4(s[t][1], v1, xv);
        }
      }
    }
    // epilogue: acc += cvt(Σ) · d·sx + (m or d) · zs, lanes = columns
    // two-level scales: d = f32(d[super]) · ds, m = −f32(mh[super]) · ms (see kernels/qdot.h)
    const size_t si = (T * B + b) * 8, sup = w.ds ? sups.at(T, b) : 0;
    const auto f16x4 = [](const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); };
    float32x4_t d0, d1, m0, m1;
    if (w.ds) {
      const int16x8_t s = vmovl_s8(vld1_s8(w.ds + si));
      d0 = vmulq_f32(f16x4(w.d + sup), vcvtq_f32_s32(vmovl_s16(vget_low_s16(s))));
      d1 = vmulq_f32(f16x4(w.d + sup + 4), vcvtq_f32_s32(vmovl_high_s16(s)));
    } else {
      d0 = f16x4(w.d + si);
      d1 = f16x4(w.d + si + 4);
    }
    if (w.ms) {
      const int16x8_t s = vmovl_s8(vld1_s8(w.ms + si));
      m0 = vnegq_f32(vmulq_f32(f16x4(w.mh + sup), vcvtq_f32_s32(vmovl_s16(vget_low_s16(s)))));
      m1 = vnegq_f32(vmulq_f32(f16x4(w.mh + sup + 4), vcvtq_f32_s32(vmovl_high_s16(s))));
    } else if (w.m) {
      m0 = vld1q_f32(w.m + si);
      m1 = vld1q_f32(w.m + si + 4);
    } else {
      m0 = d0;
      m1 = d1;
    }
    for (int t = 0; t < NT; t++) {
      const size_t ti = (t0 + t) * B + b;
      const float sx = a.sx[ti], zs = a.zs[ti];
      acc[t][0] = vfmaq_f32(acc[t][0], vcvtq_f32_s32(s[t][0]), vmulq_n_f32(d0, sx));
      acc[t][1] = vfmaq_f32(acc[t][1], vcvtq_f32_s32(s[t][1]), vmulq_n_f32(d1, sx));
      acc[t][0] = vfmaq_n_f32(acc[t][0], m0, zs);
      acc[t][1] = vfmaq_n_f32(acc[t][1], m1, zs);
    }
  }
  for (int t = 0; t < NT; t++) {
    float* dst = y + (t0 + t) * ldy + T * 8;
    if (ncols == 8) {
      vst1q_f32(dst, acc[t][0]);
      vst1q_f32(dst + 4, acc[t][1]);
    } else {
      float tmp[8];
      vst1q_f32(tmp, acc[t][0]);
      vst1q_f32(tmp + 4, acc[t][1]);
      for (size_t j = 0; j < ncols; j++) dst[j] = tmp[j];
    }
  }
}

// Columns [n0, n1) (n0 a multiple of 8) for every token; token tiles of 4 share each weight load.
template <class Dot>
static void gemm_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1) {
  const size_t T0 = n0 / 8, T1 = (n1 + 7) / 8;
  size_t t = 0;
  for (; t + 4 <= rows; t += 4)
    for (size_t T = T0; T < T1; T++) tile<Dot, 4>(w, a, T, t, std::min<size_t>(8, n1 - T * 8), y, ldy);
  const size_t rest = rows - t;
  for (size_t T = T0; T < T1; T++) {
    const size_t nc = std::min<size_t>(8, n1 - T * 8);
    if (rest == 3) tile<Dot, 3>(w, a, T, t, nc, y, ldy);
    else if (rest == 2) tile<Dot, 2>(w, a, T, t, nc, y, ldy);
    else if (rest == 1) tile<Dot, 1>(w, a, T, t, nc, y, ldy);
  }
}

}  // namespace neon_qdot
}  // namespace lowbit
