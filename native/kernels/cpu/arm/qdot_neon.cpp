// NEON (AArch64, no dot-product extension) integer-dot matmul and the activation quantizer (see
// kernels/qdot.h). dot4 widens: vmull_s8 gives int16 products (|q·x| ≤ 128·127 fits), two pairwise
// widening adds give the 4-channel sums per column in int32. CPUs with the dot-product extension
// (ARMv8.2+: Graviton 2+, Apple M, Ampere, Cortex-A76+) take qdot_neon_dot.cpp's SDOT kernel.
#include <arm_neon.h>

#include "kernels/cpu/arm/qdot_neon_tile.h"

namespace lowbit {

void quantize_acts_neon(const float* x, size_t rows, size_t in, int kb, const int32_t* perm, const QActs& a) {
  const size_t B = in / (size_t)kb;
  const float32x4_t lim = vdupq_n_f32(127.0f), nlim = vdupq_n_f32(-127.0f);
  float g[256];
  for (size_t t = 0; t < rows; t++) {
    const float* xr = x + t * in;
    for (size_t b = 0; b < B; b++) {
      const float* src = xr + b * kb;
      if (perm) {
        for (int k = 0; k < kb; k++) g[k] = xr[perm[b * kb + k]];
        src = g;
      }
      float32x4_t mx = vdupq_n_f32(0.0f);
      for (int k = 0; k < kb; k += 4) mx = vmaxq_f32(mx, vabsq_f32(vld1q_f32(src + k)));
      const float amax = vmaxvq_f32(mx);
      const float idf = amax > 0.0f ? 127.0f / amax : 0.0f;
      int32x4_t acc = vdupq_n_s32(0);
      int8_t* dst = a.xq + t * in + b * kb;
      for (int k = 0; k < kb; k += 8) {
        // same float ops as the reference: x · id, clamp to ±127, round half to even
        const int32x4_t q0 = vcvtnq_s32_f32(vminq_f32(lim, vmaxq_f32(nlim, vmulq_n_f32(vld1q_f32(src + k), idf))));
        const int32x4_t q1 = vcvtnq_s32_f32(vminq_f32(lim, vmaxq_f32(nlim, vmulq_n_f32(vld1q_f32(src + k + 4), idf))));
        acc = vaddq_s32(acc, vaddq_s32(q0, q1));
        vst1_s8(dst + k, vmovn_s16(vcombine_s16(vmovn_s32(q0), vmovn_s32(q1))));
      }
      a.sx[t * B + b] = amax / 127.0f;
      a.sum[t * B + b] = vaddvq_s32(acc);
    }
  }
}

namespace {
struct WideningDot {
  static inline int32x4_t dot4(int32x4_t acc, int8x16_t w, int8x16_t xb) {
    const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(xb)));
    const int32x4_t hi = vpaddlq_s16(vmull_high_s8(w, xb));
    return vaddq_s32(acc, vpaddq_s32(lo, hi));
  }
};
}  // namespace

void qdot_gemm_neon_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1) {
  neon_qdot::gemm_range<WideningDot>(w, a, rows, y, ldy, n0, n1);
}

}  // namespace lowbit
