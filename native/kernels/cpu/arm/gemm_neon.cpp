// NEON (AArch64) GEMM y = x · wᵀ (see kernels/gemm.h for shapes).
//
// Same structure as the AVX2 kernel: panels of w packed NR = 8 rows wide, blocks of x packed MR = 8
// rows high, an 8×8 register tile (16 float32x4 accumulators, 2 B loads and 2 A loads per step:
// 20 of the 32 vector registers), k blocked by KC = 256 so a packed A tile (8 KiB) and B panel
// (8 KiB) sit in L1, NC = 256 weight rows per packed B block (256 KiB, L2). vfmaq_laneq_f32 takes
// the A value from a lane, so no broadcast is needed. Edges are zero-padded in the packed copies.
// m == 1 streams w once, 4 rows at a time (decoding is memory-bound).
#include <arm_neon.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/gemm_blocked.h"
#include "kernels/gemm.h"

namespace lowbit {

namespace {

constexpr size_t MR = 8, NR = 8, KC = 256, MC = 96, NC = 256;

void gemv(const float* x, size_t k, const float* w, float* y, bool accumulate, size_t n0, size_t n1) {
  size_t j = n0;
  for (; j + 4 <= n1; j += 4) {
    const float *w0 = w + j * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    size_t t = 0;
    for (; t + 4 <= k; t += 4) {
      const float32x4_t xv = vld1q_f32(x + t);
      a0 = vfmaq_f32(a0, vld1q_f32(w0 + t), xv);
      a1 = vfmaq_f32(a1, vld1q_f32(w1 + t), xv);
      a2 = vfmaq_f32(a2, vld1q_f32(w2 + t), xv);
      a3 = vfmaq_f32(a3, vld1q_f32(w3 + t), xv);
    }
    float s0 = vaddvq_f32(a0), s1 = vaddvq_f32(a1), s2 = vaddvq_f32(a2), s3 = vaddvq_f32(a3);
    for (; t < k; t++) {
      s0 += x[t] * w0[t];
      s1 += x[t] * w1[t];
      s2 += x[t] * w2[t];
      s3 += x[t] * w3[t];
    }
    if (accumulate) {
      y[j] += s0;
      y[j + 1] += s1;
      y[j + 2] += s2;
      y[j + 3] += s3;
    } else {
      y[j] = s0;
      y[j + 1] = s1;
      y[j + 2] = s2;
      y[j + 3] = s3;
    }
  }
  for (; j < n1; j++) {
    const float* wj = w + j * k;
    float32x4_t a = vdupq_n_f32(0.0f);
    size_t t = 0;
    for (; t + 4 <= k; t += 4) a = vfmaq_f32(a, vld1q_f32(wj + t), vld1q_f32(x + t));
    float s = vaddvq_f32(a);
    for (; t < k; t++) s += x[t] * wj[t];
    y[j] = accumulate ? y[j] + s : s;
  }
}

// C (mr × nr valid of an 8 × 8 tile, leading dimension ldc) (+)= A_pack · B_pack over kc.
inline void kernel_8x8(size_t kc, const float* A, const float* B, float* C, size_t ldc, size_t mr, size_t nr, bool overwrite) {
  float32x4_t c[MR][2];
  for (size_t i = 0; i < MR; i++) c[i][0] = c[i][1] = vdupq_n_f32(0.0f);
  for (size_t p = 0; p < kc; p++) {
    const float32x4_t b0 = vld1q_f32(B + p * NR), b1 = vld1q_f32(B + p * NR + 4);
    const float32x4_t a0 = vld1q_f32(A + p * MR), a1 = vld1q_f32(A + p * MR + 4);
    // Not clang-formatted: one row of the 8×8 register tile per line
    // clang-format off
    c[0][0] = vfmaq_laneq_f32(c[0][0], b0, a0, 0); c[0][1] = vfmaq_laneq_f32(c[0][1], b1, a0, 0);
    c[1][0] = vfmaq_laneq_f32(c[1][0], b0, a0, 1); c[1][1] = vfmaq_laneq_f32(c[1][1], b1, a0, 1);
    c[2][0] = vfmaq_laneq_f32(c[2][0], b0, a0, 2); c[2][1] = vfmaq_laneq_f32(c[2][1], b1, a0, 2);
    c[3][0] = vfmaq_laneq_f32(c[3][0], b0, a0, 3); c[3][1] = vfmaq_laneq_f32(c[3][1], b1, a0, 3);
    c[4][0] = vfmaq_laneq_f32(c[4][0], b0, a1, 0); c[4][1] = vfmaq_laneq_f32(c[4][1], b1, a1, 0);
    c[5][0] = vfmaq_laneq_f32(c[5][0], b0, a1, 1); c[5][1] = vfmaq_laneq_f32(c[5][1], b1, a1, 1);
    c[6][0] = vfmaq_laneq_f32(c[6][0], b0, a1, 2); c[6][1] = vfmaq_laneq_f32(c[6][1], b1, a1, 2);
    c[7][0] = vfmaq_laneq_f32(c[7][0], b0, a1, 3); c[7][1] = vfmaq_laneq_f32(c[7][1], b1, a1, 3);
    // clang-format on
  }
  if (mr == MR && nr == NR) {
    for (size_t i = 0; i < MR; i++) {
      float* ci = C + i * ldc;
      if (overwrite) {
        vst1q_f32(ci, c[i][0]);
        vst1q_f32(ci + 4, c[i][1]);
      } else {
        vst1q_f32(ci, vaddq_f32(vld1q_f32(ci), c[i][0]));
        vst1q_f32(ci + 4, vaddq_f32(vld1q_f32(ci + 4), c[i][1]));
      }
    }
    return;
  }
  float tile[MR][NR];
  for (size_t i = 0; i < MR; i++) {
    vst1q_f32(tile[i], c[i][0]);
    vst1q_f32(tile[i] + 4, c[i][1]);
  }
  store_edge_tile<MR, NR>(tile, C, ldc, mr, nr, overwrite);
}

inline void pack_b_panel(const float* w, size_t k, size_t row0, size_t row_end, size_t k0, size_t kc, float* dst) {
  pack_rows_kmajor<NR>(w, k, row0, row_end, k0, kc, dst);
}

}  // namespace

float dot_f32_neon(const float* a, const float* b, size_t n) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
    s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
  }
  for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
  float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

void gemm_neon_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool accumulate, size_t n0, size_t n1) {
  (void)n;
  if (n1 <= n0) return;
  if (m == 1) {
    gemv(x, k, w, y, accumulate, n0, n1);
    return;
  }
  if (k == 0) {
    if (!accumulate)
      for (size_t i = 0; i < m; i++) std::fill(y + i * ldy + n0, y + i * ldy + n1, 0.0f);
    return;
  }
  thread_local std::vector<float> abuf, bbuf;
  if (abuf.size() < MC * KC) abuf.resize(MC * KC);
  if (bbuf.size() < NC * KC) bbuf.resize(NC * KC);
  gemm_blocked<MR, NR, KC, MC, NC>(
      x, m, k, w, y, ldy, accumulate, n0, n1, abuf.data(), bbuf.data(),
      // lambdas (one type each): direct, inlinable calls
      [](size_t kc, const float* A, const float* B, float* C, size_t ldc, size_t mr, size_t nr, bool ow) {
        kernel_8x8(kc, A, B, C, ldc, mr, nr, ow);
      },
      [](const float* w_, size_t k_, size_t r0, size_t re, size_t k0, size_t kc, float* dst) { pack_b_panel(w_, k_, r0, re, k0, kc, dst); });
}

}  // namespace lowbit
