// The calibration Hessian on the device, quant/hessian.cpp's twin:
//   H (cols, cols) = beta·H + alpha·XᵀX,  X (n, cols) f32 row-major
// GPTQ's running mean over batches is beta = n_old/n_new, alpha = 2/n_new. It is a SYRK: the GEMM
// of linalg_cuda.cu computes only the 64×64 tiles on and above the diagonal and writes each to
// both halves (GEMM_TRI_UPPER_MIRROR), half the FLOPs of the full XᵀX. sum_abs/max_abs, which the
// CPU path also gathers, are not computed here (the GPTQ layer needs H only).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/error.h"
#include "kernels/cuda/cuda_util.cuh"
#include "quant/cuda/gptq_cuda.h"
#include "quant/cuda/linalg_cuda.cuh"

namespace lowbit {

void hessian_accumulate_cuda_launch(const float* x, int n, int cols, float* H, float alpha, float beta, void* stream) {
  // H[i][j] = beta·H[i][j] + alpha·Σ_t X[t][i]·X[t][j]: a(i, t) = X[t·cols + i] (transposed), b(t, j) = X[t·cols + j]
  gemm_f32_cuda(true, false, cols, cols, n, alpha, x, cols, x, cols, beta, H, cols, GEMM_TRI_UPPER_MIRROR, static_cast<cudaStream_t>(stream));
}

CudaRunStats hessian_accumulate_cuda(const float* x, size_t n, size_t cols, float* H, float alpha, float beta) {
  if (n < 1 || cols < 1 || n > (size_t)INT32_MAX || cols > 65536)
    throw Error("LOWBIT_SHAPE_MISMATCH",
                "hessian CUDA: expected 1 ≤ tokens < 2^31 and 1 ≤ cols ≤ 65536, got " + std::to_string(n) + " × " + std::to_string(cols));
  cuda_require_device();
  CudaRunStats st;
  DevMemCounter mem;
  DevBuf<float> dx(n * cols, &mem), dh(cols * cols, &mem);
  dx.upload(x, n * cols);
  dh.upload(H, cols * cols);
  EventTimer timer;
  timer.start();
  hessian_accumulate_cuda_launch(dx.get(), (int)n, (int)cols, dh.get(), alpha, beta, nullptr);
  st.ms.push_back(timer.stop());
  dh.download(H, cols * cols);
  st.device_bytes = mem.peak;
  return st;
}

}  // namespace lowbit
