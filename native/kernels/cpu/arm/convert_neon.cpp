// NEON conversions (AArch64): f16 <-> f32 with fcvtl/fcvtn (IEEE RNE), bf16 via integer ops;
// NaNs keep their exact bits (fixed up with integer ops where fcvtl would quiet them).
// 4 elements per step; the tail goes through the generic kernel. f32 -> f16 handles overflow
// accounting in the generic kernel (only when a block contains |x| >= 65520), so results stay
// bit-exact with convert_ref.
#include <arm_neon.h>

#include <cstring>

#include "kernels/convert.h"

namespace lowbit {

void convert_range_neon(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, size_t base, ConvertResult* r) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  uint8_t* d = static_cast<uint8_t*>(dst);
  const size_t ss = dtype_size(sdt), ds = dtype_size(ddt);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float32x4_t x;
    if (sdt == DTYPE_F32) x = vld1q_f32(reinterpret_cast<const float*>(s + i * 4));
    else {
      uint16x4_t h = vld1_u16(reinterpret_cast<const uint16_t*>(s + i * 2));
      x = sdt == DTYPE_F16 ? vcvt_f32_f16(vreinterpret_f16_u16(h)) : vreinterpretq_f32_u32(vshll_n_u16(h, 16));
      if (sdt == DTYPE_F16) {
        // FCVTL quiets signaling NaNs (IEEE); the reference keeps every NaN's bits (sign, payload
        // << 13): rebuild NaN lanes with integer ops (found under qemu-aarch64; x86's vcvtph2ps too)
        const uint16x4_t mn = vand_u16(h, vdup_n_u16(0x03ff));
        const uint16x4_t nan = vand_u16(vceq_u16(vand_u16(h, vdup_n_u16(0x7c00)), vdup_n_u16(0x7c00)), vtst_u16(mn, mn));
        if (vmaxv_u16(nan)) {
          const uint32x4_t hw = vmovl_u16(h);
          const uint32x4_t bits = vorrq_u32(vorrq_u32(vshlq_n_u32(vandq_u32(hw, vdupq_n_u32(0x8000)), 16), vdupq_n_u32(0x7f800000)),
                                            vshlq_n_u32(vandq_u32(hw, vdupq_n_u32(0x03ff)), 13));
          x = vbslq_f32(vreinterpretq_u32_s32(vmovl_s16(vreinterpret_s16_u16(nan))), vreinterpretq_f32_u32(bits), x);
        }
      }
    }
    if (ddt == DTYPE_F32) {
      vst1q_f32(reinterpret_cast<float*>(d + i * 4), x);
    } else if (ddt == DTYPE_F16) {
      float32x4_t ax = vabsq_f32(x);
      uint32x4_t big = vandq_u32(vcgeq_f32(ax, vdupq_n_f32(65520.0f)), vcltq_f32(ax, vdupq_n_f32(__builtin_inff())));
      if (vmaxvq_u32(big)) {
        convert_range_generic(s + i * ss, sdt, d + i * ds, ddt, 4, saturate, base + i, r);
        continue;
      }
      vst1_u16(reinterpret_cast<uint16_t*>(d + i * 2), vreinterpret_u16_f16(vcvt_f16_f32(x)));
    } else {
      uint32x4_t u = vreinterpretq_u32_f32(x);
      uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
      uint32x4_t rnd = vshrq_n_u32(vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fff)), lsb), 16);
      uint32x4_t nanv = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(0x40));
      uint32x4_t isnan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
      vst1_u16(reinterpret_cast<uint16_t*>(d + i * 2), vmovn_u32(vbslq_u32(isnan, nanv, rnd)));
    }
  }
  if (i < n) convert_range_generic(s + i * ss, sdt, d + i * ds, ddt, n - i, saturate, base + i, r);
}


// 32 elements per step: compares OR-ed into one vector, tested with a max across lanes.
size_t first_nonfinite_range_neon(const void* src, int dt, size_t n) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  size_t i = 0;
  if (dt == DTYPE_F32) {
    const uint32x4_t e = vdupq_n_u32(0x7f800000u);
    for (; i + 32 <= n; i += 32) {
      uint32x4_t any = vdupq_n_u32(0);
      for (int k = 0; k < 8; k++) {
        const uint32x4_t u = vreinterpretq_u32_u8(vld1q_u8(s + (i + 4 * k) * 4));
        any = vorrq_u32(any, vceqq_u32(vandq_u32(u, e), e));
      }
      if (vmaxvq_u32(any)) return i + first_nonfinite_ref(s + i * 4, dt, 32);
    }
  } else {
    const uint16x8_t e = vdupq_n_u16(dt == DTYPE_F16 ? 0x7c00 : 0x7f80);
    for (; i + 32 <= n; i += 32) {
      uint16x8_t any = vdupq_n_u16(0);
      for (int k = 0; k < 4; k++) {
        const uint16x8_t u = vreinterpretq_u16_u8(vld1q_u8(s + (i + 8 * k) * 2));
        any = vorrq_u16(any, vceqq_u16(vandq_u16(u, e), e));
      }
      if (vmaxvq_u16(any)) return i + first_nonfinite_ref(s + i * 2, dt, 32);
    }
  }
  const size_t r = first_nonfinite_range_generic(s + i * dtype_size(dt), dt, n - i);
  return r == SIZE_MAX ? r : i + r;
}

}  // namespace lowbit
