// Calibration statistics of a linear layer's input X (n tokens × cols), accumulated over batches:
//   H += Xᵀ X          (the GPTQ proxy Hessian before its 2/N scale; symmetric, cols × cols f32)
//   sum_abs[j] += Σ_t |X[t, j]|,  max_abs[j] = max(max_abs[j], max_t |X[t, j]|)
// Fast path: SYRK — only the blocks on and above the diagonal are computed (half the FLOPs of the
// full GEMM XᵀX), each as a GEMM on 64-row blocks of Xᵀ, then mirrored. Reference: double sums.
#pragma once
#include <cstddef>

namespace lowbit {

struct TaskContext;

void hessian_accumulate_ref(const float* x, size_t n, size_t cols, float* H, float* sum_abs, float* max_abs);
void hessian_accumulate(const float* x, size_t n, size_t cols, float* H, float* sum_abs, float* max_abs, int mode, TaskContext* ctx);

}  // namespace lowbit
