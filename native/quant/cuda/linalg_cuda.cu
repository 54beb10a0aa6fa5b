// Dense SPD linear algebra for GPTQ on the device, the same route as quant/linalg.cpp:
//   GEMM:      C = beta·C + alpha·op(A)·op(B), optionally one triangle only (also the Hessian's
//              SYRK, hessian_cuda.cu).
//   Cholesky:  right-looking, 64-wide panels: (1) the diagonal block factored by one thread block
//              in shared memory with double sums, in cholesky_lower_ref's order; (2) the panel
//              below it L21 = A21·L11⁻ᵀ as a GEMM against the inverted diagonal block (what the CPU
//              fast path does); (3) A22 −= L21·L21ᵀ on the lower triangle as a GEMM.
//   Triangular inverse: every 64-wide diagonal block inverted at once (double, per column, in
//              tri_inverse_lower_ref's order), then inv([[A,0],[B,C]]) = [[A⁻¹,0],[−C⁻¹BA⁻¹,C⁻¹]]
//              recursively with split points on the 64-grid, the off-diagonal blocks as GEMMs.
//   Inverse factor: U = J·(chol(J·H·J))⁻¹·J, J the order reversal (quant/linalg.h explains why).
// The GEMM is a plain 64×64-tile, 16-deep f32 kernel (each thread 4×4 outputs): simple and exact
// enough; tensor-core (3×TF32) versions are the next step once timings exist (docs/CUDA.md).
// Failure of the factorization is a device flag the host reads once per factorization, so the
// caller can raise damping and retry as the CPU path does.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "core/error.h"
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_util.cuh"
#include "quant/cuda/gptq_cuda.h"
#include "quant/cuda/linalg_cuda.cuh"

namespace lowbit {

namespace {

constexpr int TB = 64;  // GEMM tile (rows and columns)
constexpr int TK = 16;  // GEMM depth per shared-memory stage
constexpr int NB = 64;  // Cholesky / inverse diagonal block

template <bool AT, bool BT>
__global__ void __launch_bounds__(256) gemm_f32_kernel(int M, int N, int K, float alpha, const float* __restrict__ A, int lda,
                                                       const float* __restrict__ B, int ldb, float beta, float* __restrict__ C, int ldc, int tri) {
  __shared__ float As[TK][TB + 4];  // As[k][i]; +4 keeps rows 16-byte aligned and spreads banks
  __shared__ float Bs[TK][TB + 4];  // Bs[k][j]
  const int i0 = blockIdx.y * TB, j0 = blockIdx.x * TB;
  if (tri == GEMM_TRI_LOWER && j0 > i0 + TB - 1) return;         // tile strictly above the diagonal
  if (tri == GEMM_TRI_UPPER_MIRROR && i0 > j0 + TB - 1) return;  // tile strictly below
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  float acc[4][4];
#pragma unroll
  for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0.f;
  for (int k0 = 0; k0 < K; k0 += TK) {
    // consecutive threads walk the contiguous dimension of each operand (coalesced loads)
    for (int e = tid; e < TB * TK; e += 256) {
      const int ii = AT ? e % TB : e / TK, kk = AT ? e / TB : e % TK;
      const int gi = i0 + ii, gk = k0 + kk;
      As[kk][ii] = gi < M && gk < K ? (AT ? A[(size_t)gk * lda + gi] : A[(size_t)gi * lda + gk]) : 0.f;
    }
    for (int e = tid; e < TB * TK; e += 256) {
      const int jj = BT ? e / TK : e % TB, kk = BT ? e % TK : e / TB;
      const int gj = j0 + jj, gk = k0 + kk;
      Bs[kk][jj] = gj < N && gk < K ? (BT ? B[(size_t)gj * ldb + gk] : B[(size_t)gk * ldb + gj]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < TK; kk++) {
      float a[4], b[4];
#pragma unroll
      for (int r = 0; r < 4; r++) a[r] = As[kk][ty + 16 * r];
#pragma unroll
      for (int c = 0; c < 4; c++) b[c] = Bs[kk][tx + 16 * c];
#pragma unroll
      for (int r = 0; r < 4; r++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 4; r++)
#pragma unroll
    for (int c = 0; c < 4; c++) {
      const int i = i0 + ty + 16 * r, j = j0 + tx + 16 * c;
      if (i >= M || j >= N) continue;
      if (tri == GEMM_TRI_LOWER && j > i) continue;
      if (tri == GEMM_TRI_UPPER_MIRROR && i > j) continue;
      float v = alpha * acc[r][c];
      if (beta != 0.f) v = fmaf(beta, C[(size_t)i * ldc + j], v);
      C[(size_t)i * ldc + j] = v;
      if (tri == GEMM_TRI_UPPER_MIRROR && i != j) C[(size_t)j * ldc + i] = v;
    }
}

// Factor the nb × nb (≤ 64) diagonal block at A in place. One block of 64 threads; column j's
// pivot by thread 0, the entries below it by one thread per row, double sums in the reference's
// order (explicit _rn intrinsics: no FMA contraction, as the CPU builds use -ffp-contract=off).
// On failure writes col0 + j + 1 to *info (first failure wins) and stops.
__global__ void chol_diag_kernel(float* A, int lda, int nb, int* info, int col0) {
  __shared__ float L[NB][NB + 1];
  __shared__ double piv;
  __shared__ int bad;
  const int tid = threadIdx.x;
  for (int e = tid; e < nb * nb; e += blockDim.x) {
    const int i = e / nb, j = e % nb;
    L[i][j] = j <= i ? A[(size_t)i * lda + j] : 0.f;
  }
  if (tid == 0) bad = 0;
  __syncthreads();
  int j = 0;
  for (; j < nb; j++) {
    if (tid == 0) {
      double s = L[j][j];
      for (int k = 0; k < j; k++) s = __dsub_rn(s, __dmul_rn((double)L[j][k], (double)L[j][k]));
      if (!(s > 0) || !isfinite(s)) {
        bad = 1;
      } else {
        piv = sqrt(s);
        L[j][j] = (float)piv;
      }
    }
    __syncthreads();
    if (bad) break;  // uniform: every thread reads the same shared flag after the barrier
    const double d = piv;
    for (int i = j + 1 + tid; i < nb; i += blockDim.x) {
      double t = L[i][j];
      for (int k = 0; k < j; k++) t = __dsub_rn(t, __dmul_rn((double)L[i][k], (double)L[j][k]));
      L[i][j] = (float)(t / d);
    }
    __syncthreads();
  }
  if (bad) {
    if (tid == 0) atomicCAS(info, 0, col0 + j + 1);
    return;
  }
  for (int e = tid; e < nb * nb; e += blockDim.x) {
    const int i = e / nb, jj = e % nb;
    if (jj <= i) A[(size_t)i * lda + jj] = L[i][jj];
  }
}

// Invert the lower-triangular diagonal blocks of L (n × n, ld): block b = blockIdx.x covers
// [b·NB, b·NB + nbb). Writes the inverse (zeros above its diagonal) to the same place in `out`
// (may be L: each thread block reads its block into shared memory before writing). One thread
// per column solves L x = e_j by forward substitution in double, the reference's order.
__global__ void trinv_diag_kernel(const float* L, int ldl, float* out, int ldo, int n) {
  __shared__ float Ls[NB][NB];  // 16 KiB
  __shared__ double X[NB][NB];  // 32 KiB (together exactly the 48 KiB static limit)
  const int b0 = blockIdx.x * NB, nbb = min(NB, n - b0), tid = threadIdx.x;
  for (int e = tid; e < nbb * nbb; e += blockDim.x) {
    const int i = e / nbb, j = e % nbb;
    Ls[i][j] = j <= i ? L[(size_t)(b0 + i) * ldl + b0 + j] : 0.f;
  }
  __syncthreads();
  const int j = tid;
  if (j < nbb) {
    for (int i = j; i < nbb; i++) {
      double t = i == j ? 1.0 : 0.0;
      for (int k = j; k < i; k++) t = __dsub_rn(t, __dmul_rn((double)Ls[i][k], X[k][j]));
      X[i][j] = t / (double)Ls[i][i];
    }
  }
  __syncthreads();
  for (int e = tid; e < nbb * nbb; e += blockDim.x) {
    const int i = e / nbb, jj = e % nbb;
    out[(size_t)(b0 + i) * ldo + b0 + jj] = jj <= i ? (float)X[i][jj] : 0.f;
  }
}

__global__ void zero_upper_kernel(float* A, int n, int lda) {
  const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= (size_t)n * n) return;
  const int i = (int)(e / n), j = (int)(e % n);
  if (j > i) A[(size_t)i * lda + j] = 0.f;
}

// Lt[i][j] = H[n−1−i][n−1−j] (+ damp_add on the diagonal, one float add as the CPU's Hd[j][j] += λ).
__global__ void reverse_damp_kernel(const float* __restrict__ H, int n, float damp_add, float* __restrict__ Lt) {
  const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= (size_t)n * n) return;
  const int i = (int)(e / n), j = (int)(e % n);
  float v = H[(size_t)(n - 1 - i) * n + (n - 1 - j)];
  if (i == j) v = __fadd_rn(v, damp_add);
  Lt[e] = v;
}

// U[i][j] = j ≥ i ? Linv[n−1−i][n−1−j] : 0.
__global__ void unreverse_upper_kernel(const float* __restrict__ Linv, int n, float* __restrict__ U) {
  const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= (size_t)n * n) return;
  const int i = (int)(e / n), j = (int)(e % n);
  U[e] = j >= i ? Linv[(size_t)(n - 1 - i) * n + (n - 1 - j)] : 0.f;
}

unsigned blocks_for(size_t n, int per) { return (unsigned)((n + per - 1) / per); }

void tri_inverse_rec(float* L, int n, int ld, float* T, cudaStream_t s) {
  if (n <= NB) return;  // a diagonal block: already inverted
  const int n1 = (n / 2 + NB - 1) / NB * NB, n2 = n - n1;
  float* B = L + (size_t)n1 * ld;       // (n2 × n1)
  float* C = L + (size_t)n1 * ld + n1;  // (n2 × n2)
  tri_inverse_rec(L, n1, ld, T, s);
  tri_inverse_rec(C, n2, ld, T, s);
  // T (n2 × n1) = C⁻¹ · B ;  B ← −T · A⁻¹   (C⁻¹, A⁻¹ lower with zeros above the diagonal)
  gemm_f32_cuda(false, false, n2, n1, n2, 1.f, C, ld, B, ld, 0.f, T, n1, GEMM_TRI_ALL, s);
  gemm_f32_cuda(false, false, n2, n1, n1, -1.f, T, n1, L, ld, 0.f, B, ld, GEMM_TRI_ALL, s);
}

}  // namespace

void gemm_f32_cuda(bool a_t, bool b_t, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb, float beta, float* C,
                   int ldc, int tri, cudaStream_t s) {
  if (M <= 0 || N <= 0) return;
  const dim3 grid((N + TB - 1) / TB, (M + TB - 1) / TB);
  if (a_t && b_t) gemm_f32_kernel<true, true><<<grid, 256, 0, s>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, tri);
  else if (a_t) gemm_f32_kernel<true, false><<<grid, 256, 0, s>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, tri);
  else if (b_t) gemm_f32_kernel<false, true><<<grid, 256, 0, s>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, tri);
  else gemm_f32_kernel<false, false><<<grid, 256, 0, s>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, tri);
  CUDA_CHECK_LAUNCH();
}

size_t inverse_factor_t_floats(size_t n) { return n * n / 4 + 64 * n + 64; }

bool cholesky_lower_dev(float* A, int n, int lda, const InverseFactorWork& w, cudaStream_t s) {
  CUDA_CHECK(cudaMemsetAsync(w.info, 0, sizeof(int), s));
  for (int k0 = 0; k0 < n; k0 += NB) {
    const int nb = std::min(NB, n - k0), k1 = k0 + nb;
    float* Akk = A + (size_t)k0 * lda + k0;
    chol_diag_kernel<<<1, NB, 0, s>>>(Akk, lda, nb, w.info, k0);
    CUDA_CHECK_LAUNCH();
    if (k1 >= n) break;
    const int m = n - k1;
    // L21 = A21 · L11⁻ᵀ: y = P · Linvᵀ with P a copy of A21 (the GEMM cannot write its input)
    trinv_diag_kernel<<<1, NB, 0, s>>>(Akk, lda, w.linv, NB, nb);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(
        cudaMemcpy2DAsync(w.panel, (size_t)nb * 4, A + (size_t)k1 * lda + k0, (size_t)lda * 4, (size_t)nb * 4, m, cudaMemcpyDeviceToDevice, s));
    gemm_f32_cuda(false, true, m, nb, nb, 1.f, w.panel, nb, w.linv, NB, 0.f, A + (size_t)k1 * lda + k0, lda, GEMM_TRI_ALL, s);
    // A22 −= L21 · L21ᵀ (lower triangle)
    const float* L21 = A + (size_t)k1 * lda + k0;
    gemm_f32_cuda(false, true, m, m, nb, -1.f, L21, lda, L21, lda, 1.f, A + (size_t)k1 * lda + k1, lda, GEMM_TRI_LOWER, s);
  }
  int info = 0;
  CUDA_CHECK(cudaMemcpyAsync(&info, w.info, sizeof(int), cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  return info == 0;
}

void tri_inverse_lower_dev(float* L, int n, int ld, const InverseFactorWork& w, cudaStream_t s) {
  zero_upper_kernel<<<blocks_for((size_t)n * n, 256), 256, 0, s>>>(L, n, ld);
  CUDA_CHECK_LAUNCH();
  trinv_diag_kernel<<<(n + NB - 1) / NB, NB, 0, s>>>(L, ld, L, ld, n);
  CUDA_CHECK_LAUNCH();
  tri_inverse_rec(L, n, ld, w.t, s);
}

bool gptq_inverse_factor_dev(const float* H, int n, float damp_add, float* U, const InverseFactorWork& w, cudaStream_t s) {
  reverse_damp_kernel<<<blocks_for((size_t)n * n, 256), 256, 0, s>>>(H, n, damp_add, w.lt);
  CUDA_CHECK_LAUNCH();
  if (!cholesky_lower_dev(w.lt, n, n, w, s)) return false;
  tri_inverse_lower_dev(w.lt, n, n, w, s);
  unreverse_upper_kernel<<<blocks_for((size_t)n * n, 256), 256, 0, s>>>(w.lt, n, U);
  CUDA_CHECK_LAUNCH();
  return true;
}

bool gptq_inverse_factor_cuda(const float* H, size_t n, float* U, CudaRunStats* stats) {
  if (n < 1 || n > 65536) throw Error("LOWBIT_SHAPE_MISMATCH", "inverse factor CUDA: expected 1 ≤ n ≤ 65536, got " + std::to_string(n));
  cuda_require_device();
  DevMemCounter mem;
  DevBuf<float> dh(n * n, &mem), du(n * n, &mem), lt(n * n, &mem), t(inverse_factor_t_floats(n), &mem), panel(n * 64, &mem), linv(64 * 64, &mem);
  DevBuf<int> info(1, &mem);
  dh.upload(H, n * n);
  InverseFactorWork w{lt.get(), t.get(), panel.get(), linv.get(), info.get()};
  EventTimer timer;
  timer.start();
  const bool ok = gptq_inverse_factor_dev(dh.get(), (int)n, 0.0f, du.get(), w, nullptr);
  const float ms = timer.stop();
  if (ok) du.download(U, n * n);
  if (stats) {
    stats->ms.push_back(ms);
    stats->device_bytes = mem.peak;
  }
  return ok;
}

}  // namespace lowbit
