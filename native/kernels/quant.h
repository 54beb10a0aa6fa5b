// Uniform and codebook weight quantization of one row, group by group along the input dimension.
//
//   uniform:  code = clamp(rint(x / s) + z, 0, 2^bits − 1),   x̂ = s · (code − z)
//   codebook: code = argmin_k |x / s − level_k|,             x̂ = s · level_code   (s = clipped absmax)
//
// Inputs: x, one row of `cols` floats (row-major weight (rows, cols) = (out, in)). Outputs per row:
// codes (cols) uint8, scales (G) f32, zeros (G) uint8, dequant (cols) f32 or null, where
// G = ceil(cols / group_size) (the last group may be shorter). rint rounds half to even, as the
// reference implementations (torch.round) do.
//
// Range (GPTQ reference, quant.py): [min(0, min x), max(0, max x)] — zero always representable.
// Symmetric: the fixed zero 2^(bits−1) and xmin = −max(|xmin|, xmax). (Deviation from the
// reference, which keeps xmin = 0 for all-positive rows in sym mode and then clips half the row.)
// The scale is rounded to fp16 before codes are computed (what a fp16 checkpoint stores), so the
// reported dequantized values equal what a reader of the file computes. `zero_min = 1` (GPTQ v1
// checkpoints cannot store a zero of 0) raises a zero of 0 to 1 and widens the scale to keep
// xmax representable.
//
// The per-group parameter math lives here, inline, and is shared by every variant, so fast and
// reference kernels produce identical codes (all builds use -ffp-contract=off).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "core/half.h"

namespace lowbit {

enum Codebook { CODEBOOK_UNIFORM = 0, CODEBOOK_NF4 = 1, CODEBOOK_LOG2 = 2 };
enum Clip { CLIP_MINMAX = 0, CLIP_MSE = 1 };

struct QuantSpec {
  int bits = 4;
  int group_size = 128;  // columns per group (>= 1); == cols for per-channel
  bool sym = true;
  int codebook = CODEBOOK_UNIFORM;
  int clip = CLIP_MINMAX;
  int clip_grid = 100;           // shrink factors p = 1 − i/grid ...
  float clip_max_shrink = 0.8f;  // ... for i < max_shrink · grid
  float clip_norm = 2.4f;        // error Σ|x̂ − x|^norm
  int zero_min = 0;
  bool scale_f16 = true;
  // Symmetric groups on llama.cpp's Q4_0 grid: scale = |e| / 2^(bits−1) where e is the group's
  // (clipped) value of largest magnitude, zero 2^(bits−1) when e < 0 (e ↦ code 0) and
  // 2^(bits−1) − 1 when e > 0 (e ↦ code 2^bits − 1): e is exact, and the step is |e|/8 rather
  // than the default 2|e|/15 at 4 bits. Needs sym.
  bool signed_max = false;
};

struct QuantStats {
  double sum_sq_err = 0, sum_sq_ref = 0, max_abs_err = 0;
  size_t non_finite = 0;
  size_t first_non_finite = SIZE_MAX;  // index within the row (the driver adds the row offset)
  void merge(const QuantStats& o, size_t offset) {
    sum_sq_err += o.sum_sq_err;
    sum_sq_ref += o.sum_sq_ref;
    if (o.max_abs_err > max_abs_err) max_abs_err = o.max_abs_err;
    if (o.non_finite) {
      non_finite += o.non_finite;
      size_t f = o.first_non_finite + offset;
      if (f < first_non_finite) first_non_finite = f;
    }
  }
};

// The helpers below are `static inline`: the ISA sources (quant_avx2.cpp, …) call them too, and an
// external inline copy compiled there with -mavx2 could be the one the linker keeps for every caller.
struct GroupParams {
  float scale;
  int zero;
};

static inline int quant_maxq(int bits) { return (1 << bits) - 1; }

// Scale and zero for a group whose (clipped) range is [xmin, xmax] (xmin <= 0 <= xmax).
static inline GroupParams uniform_params(float xmin, float xmax, const QuantSpec& q) {
  const int maxq = quant_maxq(q.bits);
  if (q.sym && q.signed_max) {
    const int half = (maxq + 1) / 2;
    const bool neg = -xmin >= xmax;  // ties (and all-zero groups) take the negative side
    float e = neg ? -xmin : xmax;
    if (e == 0.0f) e = 1.0f;
    float scale = e / (float)half;
    if (q.scale_f16) scale = round_to_f16(scale);
    if (!(scale > 0.0f)) scale = 5.9604644775390625e-8f;
    return {scale, neg ? half : half - 1};
  }
  if (q.sym) {
    float m = std::fmax(-xmin, xmax);
    xmin = -m;
    xmax = m;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  float scale = (xmax - xmin) / (float)maxq;
  if (q.scale_f16) scale = round_to_f16(scale);
  if (!(scale > 0.0f)) scale = 5.9604644775390625e-8f;  // smallest fp16 subnormal: never divide by 0
  int zero;
  if (q.sym) {
    zero = (maxq + 1) / 2;
  } else {
    zero = (int)std::nearbyint(-xmin / scale);
    if (zero < q.zero_min) {
      // GPTQ v1 cannot store zero 0: use zero 1 and widen the scale so xmax stays representable.
      zero = q.zero_min;
      float s2 = xmax / (float)(maxq - zero);
      if (q.scale_f16) s2 = round_to_f16(s2);
      if (s2 > scale) scale = s2;
    }
    if (zero > maxq) zero = maxq;
  }
  return {scale, zero};
}

static inline uint8_t uniform_code(float x, GroupParams p, float maxqf) {
  float v = std::nearbyint(x / p.scale) + (float)p.zero;
  v = v < 0.0f ? 0.0f : (v > maxqf ? maxqf : v);
  return (uint8_t)v;
}

static inline float uniform_dequant(uint8_t c, GroupParams p) { return p.scale * ((float)c - (float)p.zero); }

// Codebook levels in [-1, 1], ascending; n = number of levels.
const float* codebook_levels(int codebook, int bits, int* n);

// Clip search by grid (reference quant.py, mse=True): the shrink factor minimising Σ|x̂ − x|^norm.
// Shared by every variant (scalar, double accumulation) so all give identical parameters.
GroupParams uniform_params_mse(const float* x, size_t n, float xmin, float xmax, const QuantSpec& q);
// Vectorised clip search (AVX2): same candidates, error Σ|x̂ − x|^norm evaluated with a
// polynomial exp2/log2 (relative error < 1e-6) and float partial sums. It can pick a different
// shrink than the reference only between candidates whose errors agree to ~1e-6 relative; the
// test bounds the chosen candidate's reference error against the reference optimum.
GroupParams uniform_params_mse_avx2(const float* x, size_t n, float xmin, float xmax, const QuantSpec& q);
float codebook_scale_mse(const float* x, size_t n, float absmax, const QuantSpec& q);
uint8_t codebook_code(float x, float scale, const float* levels, int n);

// One row. stats accumulates; first_non_finite is a column index.
void quant_row_ref(const float* x, size_t cols, const QuantSpec& q, uint8_t* codes, float* scales, uint8_t* zeros, float* deq, QuantStats* st);
void quant_row_avx2(const float* x, size_t cols, const QuantSpec& q, uint8_t* codes, float* scales, uint8_t* zeros, float* deq, QuantStats* st);
void quant_row_avx512(const float* x, size_t cols, const QuantSpec& q, uint8_t* codes, float* scales, uint8_t* zeros, float* deq, QuantStats* st);

using QuantRowFn = void (*)(const float*, size_t, const QuantSpec&, uint8_t*, float*, uint8_t*, float*, QuantStats*);

// One row from an f32/f16/bf16 source (f16/bf16 converted into `buf`, ≥ cols floats, first).
// first_non_finite in `st` is a column index.
void quant_row_any(QuantRowFn row_kernel, const uint8_t* src, int src_dtype, size_t cols, const QuantSpec& q, uint8_t* codes, float* scales,
                   uint8_t* zeros, float* deq, QuantStats* st, float* buf);

struct TaskContext;
// Whole tensor (rows, cols) from f32/f16/bf16 `src`. Outputs as above with rows × (cols | G)
// extents. mode: MODE_FAST (threads + ISA variant) or MODE_REF (reference, one thread).
void quantize_tensor(const void* src, int src_dtype, size_t rows, size_t cols, const QuantSpec& q, uint8_t* codes, float* scales, uint8_t* zeros,
                     float* deq, int mode, QuantStats* st, TaskContext* ctx);

}  // namespace lowbit
