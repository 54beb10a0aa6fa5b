// Device-pointer building blocks of GPTQ on the device (internal to the .cu files; the addon sees
// only gptq_cuda.h). All matrices are row-major f32 with a leading dimension; all calls are
// asynchronous on `s` unless stated.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace lowbit {

enum GemmTri { GEMM_TRI_ALL = 0, GEMM_TRI_LOWER = 1, GEMM_TRI_UPPER_MIRROR = 2 };

// C (M, N) = beta·C + alpha·Σ_k a(i, k)·b(k, j), where
//   a(i, k) = a_t ? A[k·lda + i] : A[i·lda + k],   b(k, j) = b_t ? B[j·ldb + k] : B[k·ldb + j].
// tri: GEMM_TRI_LOWER writes only i ≥ j; GEMM_TRI_UPPER_MIRROR computes i ≤ j and writes C[i][j]
// and C[j][i] (square symmetric results). beta == 0 never reads C. C must not overlap A or B.
void gemm_f32_cuda(bool a_t, bool b_t, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C,
                   int ldc, int tri, cudaStream_t s);

// Scratch for gptq_inverse_factor_dev on an n × n matrix.
struct InverseFactorWork {
  float* lt = nullptr;     // n·n
  float* t = nullptr;      // inverse_factor_t_floats(n)
  float* panel = nullptr;  // n·64
  float* linv = nullptr;   // 64·64
  int* info = nullptr;     // 1
};
size_t inverse_factor_t_floats(size_t n);

// A (n, n, lda) = L Lᵀ in place (lower triangle; the strict upper triangle is left as it was).
// Returns false when a pivot is ≤ 0 or not finite (synchronizes on `s` to read the flag).
bool cholesky_lower_dev(float* A, int n, int lda, const InverseFactorWork& w, cudaStream_t s);
// L (n, n, ld) lower triangular ← L⁻¹; zeroes the strict upper triangle first.
void tri_inverse_lower_dev(float* L, int n, int ld, const InverseFactorWork& w, cudaStream_t s);
// U (n, n) upper triangular with Uᵀ U = (H + damp_add·I)⁻¹, H (n, n) full symmetric (not modified).
// Same route as quant/linalg.h: Cholesky of the order-reversed matrix and its triangular inverse.
bool gptq_inverse_factor_dev(const float* H, int n, float damp_add, float* U, const InverseFactorWork& w, cudaStream_t s);

}  // namespace lowbit
