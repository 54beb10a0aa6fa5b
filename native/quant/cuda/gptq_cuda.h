// Host-callable entries of GPTQ on the device, the CUDA twins of quant/hessian.h, quant/linalg.h
// and quant/gptq.h (declarations only: the addon glue compiles with g++ and never includes CUDA
// headers). Same conventions as kernels/cuda/cuda_api.h, whose CudaRunStats they report in:
// `*_cuda(...)` take host pointers and copy in and out; `*_cuda_launch(...)` / `*_cuda_dev(...)`
// take device pointers and a stream (`void*` = cudaStream_t, null = the legacy default stream).
// Errors are lowbit::Error naming the failing CUDA call; argument checks come before any device
// call, LOWBIT_NO_CUDA when no device/driver is usable.
//   Hessian:         H = beta·H + alpha·XᵀX                         (hessian_cuda.cu)
//   inverse factor:  U upper triangular with Uᵀ U = H⁻¹               (linalg_cuda.cu)
//   GPTQ layer:      gptq_quantize's codes, params and loss          (gptq_cuda.cu)
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_api.h"
#include "quant/gptq.h"

namespace lowbit {

struct TaskContext;

// H (cols, cols) = beta·H + alpha·XᵀX, X (n, cols) f32 row-major; H full symmetric (both halves
// written). GPTQ's running mean is beta = n_old/n_new, alpha = 2/n_new.
CudaRunStats hessian_accumulate_cuda(const float* x, size_t n, size_t cols, float* H, float alpha, float beta);
void hessian_accumulate_cuda_launch(const float* x, int n, int cols, float* H, float alpha, float beta, void* stream);

// U (n, n) upper triangular with Uᵀ U = H⁻¹ (quant/linalg.h's gptq_inverse_factor on the device).
// Returns false when H is not positive definite (U is then unspecified).
bool gptq_inverse_factor_cuda(const float* H, size_t n, float* U, CudaRunStats* stats);

struct GptqCudaStats {
  // wall milliseconds on the host: total = prepare + factor + sweep (device work, synchronized at
  // each phase end); copy = host↔device transfers of the host entry (not in total)
  double ms_total = 0, ms_prepare = 0, ms_factor = 0, ms_sweep = 0, ms_copy = 0;
  size_t device_bytes = 0;  // peak of the buffers it allocated
  int factor_attempts = 0;  // Cholesky tries (damping raised in between)
};
// gptq_quantize (quant/gptq.h) on the device: same spec, same outputs (codes, scales, zeros,
// g_idx, dequant, loss, damp_used). Supports clip = CLIP_MINMAX and block_size ≤ 128 only
// (LOWBIT_UNSUPPORTED otherwise, before any device call). ctx (may be null) is polled between
// column blocks.
void gptq_quantize_cuda(const float* W, const float* H, size_t rows, size_t cols, const GptqSpec& spec, GptqOutput& out, TaskContext* ctx,
                        GptqCudaStats* stats);
// Device-pointer form: W (rows, cols) and H (cols, cols) on the device are consumed (overwritten);
// outputs are device pointers of GptqOutput's shapes (dequant may be null), except g_idx, which is
// written on the host (it is known there: the permutation is sorted on the host).
void gptq_quantize_cuda_dev(float* W, float* H, size_t rows, size_t cols, const GptqSpec& spec, GptqOutput& dev_out, int32_t* host_g_idx,
                            TaskContext* ctx, GptqCudaStats* stats);

}  // namespace lowbit
