// GPTQ (Frantar et al., ICLR 2023) on one linear layer, following the published algorithm's order
// of operations (docs/algorithms.md §2.4):
//   1. no groups: per-row params from the original W;  2. dead inputs (H_jj = 0): H_jj ← 1, W[:, j] ← 0;
//   3. static groups: params per group of original columns;  4. act-order: columns by descending
//   H_jj (stable sort);  5. damping λ = damp · mean(diag H) (raised in steps of 0.01 · mean(diag)
//   when the factorization fails, up to damp_max);  6. U = upper Cholesky factor of H⁻¹;
//   7. blocked column sweep: quantize column j, error e = (w − q)/U_jj, update the rest of the
//   block, and once per block apply W[:, b1:] −= E · U[b0:b1, b1:] as one GEMM (lazy batch);
//   group params are computed when a group starts, from W as the reference holds it (columns of
//   the current block at their block-start values);  8. undo the permutation.
// Quantization grid and rounding are kernels/quant.h's (fp16-rounded scales, half-to-even, codes
// clamped), so the codes are exactly what a GPTQ checkpoint stores.
// Shapes: W (rows = out, cols = in) row-major; H (cols × cols) symmetric.
// The fast path runs the in-block sweep in parallel over rows (rows are independent within a
// block) and the lazy update on the GEMM kernel; the reference updates every remaining column
// after every column, single-threaded, with the reference factorizations.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/quant.h"

namespace lowbit {

struct TaskContext;

struct GptqSpec {
  QuantSpec q;  // bits, group_size (≥ cols: one group per row), sym, clip, zero_min, scale_f16
  bool act_order = false;
  bool static_groups = false;
  float damp = 0.01f;  // fraction of mean(diag H)
  float damp_step = 0.01f;
  float damp_max = 1.0f;  // give up (LOWBIT_NUMERICAL) past this
  int block_size = 128;
};

struct GptqOutput {
  uint8_t* codes = nullptr;  // (rows × cols), original column order
  float* scales = nullptr;   // (rows × G): group order as stored (processing order for act-order)
  uint8_t* zeros = nullptr;  // (rows × G)
  int32_t* g_idx = nullptr;  // (cols)
  float* dequant = nullptr;  // (rows × cols) or null
  double loss = 0;           // Σ (w − q)² / U_jj² / 2, as the reference reports it
  float damp_used = 0;
};

void gptq_quantize(const float* W, const float* H, size_t rows, size_t cols, const GptqSpec& spec, GptqOutput& out, int mode, TaskContext* ctx);

}  // namespace lowbit
