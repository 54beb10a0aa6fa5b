// The uniform quantization grid of kernels/quant.h, as device functions (that header is host-only
// and not ours to change):
//   range [min(0, min x), max(0, max x)];  sym: ±max(|xmin|, xmax) with the fixed zero 2^(bits−1)
//   (signed_max: scale |e| / 2^(bits−1), zero 2^(bits−1) or 2^(bits−1) − 1 by the sign of e)
//   scale = (xmax − xmin) / maxq, rounded to fp16 (saturating) when scale_f16
//   zero  = rint(−xmin / scale) (asym), raised to zero_min with a widened scale, clamped to maxq
//   code  = clamp(rint(x / scale) + zero, 0, maxq),   x̂ = scale · (code − zero)
// Every operation is written so that nvcc cannot contract it into an FMA (the CPU builds use
// -ffp-contract=off): the codes must equal the CPU's for the same inputs. rintf rounds half to even.
#pragma once
#include <cuda_fp16.h>
#include <cstdint>

namespace lowbit {

struct GridSpec {
  int bits;
  bool sym;
  int zero_min;
  bool scale_f16;
  bool signed_max;  // QuantSpec::signed_max (llama.cpp's Q4_0 grid)
};

struct DevGroupParams {
  float scale;
  int zero;
};

// round_to_f16 of core/half.h: nearest-even fp16 value, saturating at ±65504.
__device__ __forceinline__ float dev_round_to_f16(float f) {
  const float r = __half2float(__float2half_rn(f));
  if (isinf(r) && !isinf(f)) return f > 0.0f ? 65504.0f : -65504.0f;
  return r;
}

__device__ __forceinline__ DevGroupParams dev_uniform_params(float xmin, float xmax, const GridSpec& q) {
  const int maxq = (1 << q.bits) - 1;
  if (q.sym && q.signed_max) {
    const int half = (maxq + 1) / 2;
    const bool neg = -xmin >= xmax;
    float e = neg ? -xmin : xmax;
    if (e == 0.0f) e = 1.0f;
    float scale = __fdiv_rn(e, (float)half);
    if (q.scale_f16) scale = dev_round_to_f16(scale);
    if (!(scale > 0.0f)) scale = 5.9604644775390625e-8f;
    return {scale, neg ? half : half - 1};
  }
  if (q.sym) {
    const float m = fmaxf(-xmin, xmax);
    xmin = -m;
    xmax = m;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  float scale = __fdiv_rn(__fsub_rn(xmax, xmin), (float)maxq);
  if (q.scale_f16) scale = dev_round_to_f16(scale);
  if (!(scale > 0.0f)) scale = 5.9604644775390625e-8f;
  int zero;
  if (q.sym) {
    zero = (maxq + 1) / 2;
  } else {
    zero = (int)rintf(__fdiv_rn(-xmin, scale));
    if (zero < q.zero_min) {
      zero = q.zero_min;
      float s2 = __fdiv_rn(xmax, (float)(maxq - zero));
      if (q.scale_f16) s2 = dev_round_to_f16(s2);
      if (s2 > scale) scale = s2;
    }
    if (zero > maxq) zero = maxq;
  }
  return {scale, zero};
}

__device__ __forceinline__ uint8_t dev_uniform_code(float x, DevGroupParams p, float maxqf) {
  float v = __fadd_rn(rintf(__fdiv_rn(x, p.scale)), (float)p.zero);
  v = v < 0.0f ? 0.0f : (v > maxqf ? maxqf : v);
  return (uint8_t)v;
}

__device__ __forceinline__ float dev_uniform_dequant(uint8_t c, DevGroupParams p) { return __fmul_rn(p.scale, __fsub_rn((float)c, (float)p.zero)); }

}  // namespace lowbit
