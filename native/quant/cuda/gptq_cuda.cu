// GPTQ on one linear layer on the device: quant/gptq.cpp's algorithm, step for step, with the
// layer's data kept on the device (W, H, U, codes, the per-block errors) and only O(cols) vectors
// on the host (the diagonal of H, the permutation, the damping decision):
//   1. no groups: per-row params from the original W              (group_params_kernel)
//   2. dead inputs H_jj = 0: H_jj ← 1, W[:, j] ← 0                (dead_inputs_kernel)
//   3. static groups: params per group of original columns        (group_params_kernel)
//   4. act-order: stable descending sort of diag(H) on the host; W columns and H rows+columns
//      gathered on the device                                      (permute_*_kernel)
//   5–6. λ = damp·mean(diag H), U = upper Cholesky factor of (H + λI)⁻¹ (linalg_cuda.cu); when
//      the factorization fails, damp += damp_step and retry, up to damp_max (LOWBIT_NUMERICAL)
//   7. per block of B ≤ 128 columns: gptq_sweep_kernel runs the column loop with U[b0:b1, b0:b1]
//      in shared memory, one warp per row (rows are independent within a block; lane l holds
//      columns l, l+32, l+64, l+96 of the block in registers); group params are computed when a
//      group starts, from W in global memory, which holds exactly what the CPU path reads (this
//      block's columns at their block-start values); then the lazy update
//      W[:, b1:] −= E·U[b0:b1, b1:] as a GEMM
//   8. codes and dequantized values scattered back to the original column order.
// The sweep uses the CPU's arithmetic (no FMA contraction, same order, loss in double), so given
// the same U it produces the same codes; U itself and the lazy GEMM round differently, so codes
// may differ where a value sits within rounding of a grid boundary (the tests bound how often).
// Supported: clip = minmax (the MSE clip search stays on the CPU), block_size ≤ 128.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/quant_grid.cuh"
#include "quant/cuda/gptq_cuda.h"
#include "quant/cuda/linalg_cuda.cuh"

namespace lowbit {

namespace {

constexpr int SWEEP_MAX_BLOCK = 128;  // 4 registers per lane; U block 64 KiB of shared memory
constexpr int SWEEP_WARPS = 8;
constexpr unsigned FULL = 0xffffffffu;

enum ParamMode { PARAMS_ROW = 0, PARAMS_STATIC = 1, PARAMS_DYNAMIC = 2 };

// Params of x[0 .. n) (n ≥ 1) by one warp: range [min(0, min x), max(0, max x)], then the grid.
// min/max are exact, so the order of the reduction does not matter.
__device__ DevGroupParams warp_group_params(const float* __restrict__ x, int n, const GridSpec& q, int lane) {
  float lo = 0.f, hi = 0.f;
  for (int k = lane; k < n; k += 32) {
    const float v = x[k];
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    lo = fminf(lo, __shfl_xor_sync(FULL, lo, o));
    hi = fmaxf(hi, __shfl_xor_sync(FULL, hi, o));
  }
  return dev_uniform_params(lo, hi, q);
}

// out[r·G + g] = params of W[r, g·gs : min(cols, (g+1)·gs)); one warp per (r, g).
__global__ void group_params_kernel(const float* __restrict__ W, int rows, int cols, int gs, int G, GridSpec q, DevGroupParams* __restrict__ out) {
  const size_t item = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (item >= (size_t)rows * G) return;  // warp-uniform
  const int r = (int)(item / G), g = (int)(item % G);
  const int c0 = g * gs, n = min(gs, cols - c0);
  const DevGroupParams p = warp_group_params(W + (size_t)r * cols + c0, n, q, lane);
  if (lane == 0) out[item] = p;
}

__global__ void nonfinite_kernel(const float* __restrict__ a, size_t n, unsigned long long* first) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n && !isfinite(a[i])) atomicMin(first, (unsigned long long)i);
}

__global__ void dead_inputs_kernel(float* __restrict__ W, float* __restrict__ H, int rows, int cols, const uint8_t* __restrict__ dead) {
  const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= (size_t)rows * cols) return;
  const int r = (int)(e / cols), j = (int)(e % cols);
  if (!dead[j]) return;
  W[e] = 0.f;
  if (r == 0) H[(size_t)j * cols + j] = 1.f;
}

__global__ void permute_cols_kernel(const float* __restrict__ W, int rows, int cols, const int* __restrict__ perm, float* __restrict__ out) {
  const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= (size_t)rows * cols) return;
  const int r = (int)(e / cols), j = (int)(e % cols);
  out[e] = W[(size_t)r * cols + perm[j]];
}

__global__ void permute_sym_kernel(const float* __restrict__ H, int n, const int* __restrict__ perm, float* __restrict__ out) {
  const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= (size_t)n * n) return;
  const int i = (int)(e / n), j = (int)(e % n);
  out[e] = H[(size_t)perm[i] * n + perm[j]];
}

__device__ __forceinline__ DevGroupParams params_at(int mode, int r, int j, int gs, int G, const DevGroupParams* prow, const DevGroupParams* pstatic,
                                                    const DevGroupParams* pdyn, const int* perm) {
  if (mode == PARAMS_ROW) return prow[r];
  if (mode == PARAMS_STATIC) return pstatic[(size_t)r * G + perm[j] / gs];
  return pdyn[(size_t)r * G + j / gs];
}

// The column loop of one block [b0, b0 + bs) for every row (see the file comment).
//   W: (rows, cols) working weights (processing order), not modified here
//   U: (cols, cols) upper factor; codes_p: (rows, cols) codes in processing order
//   E: (rows, bs) scaled errors (w − q)/U_jj for the lazy update; row_loss: (rows) double
__global__ void __launch_bounds__(32 * SWEEP_WARPS)
    gptq_sweep_kernel(const float* __restrict__ W, const float* __restrict__ U, int rows, int cols, int b0, int bs, int mode, int gs, int G,
                      const DevGroupParams* __restrict__ prow, const DevGroupParams* __restrict__ pstatic, DevGroupParams* pdyn,
                      const int* __restrict__ perm, GridSpec q, uint8_t* __restrict__ codes_p, float* __restrict__ E, double* __restrict__ row_loss) {
  extern __shared__ float Us[];  // Us[t·bs + u] = U[b0 + t][b0 + u]
  for (int e = threadIdx.x; e < bs * bs; e += blockDim.x) Us[e] = U[(size_t)(b0 + e / bs) * cols + b0 + e % bs];
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float maxqf = (float)((1 << q.bits) - 1);
  for (int r = blockIdx.x * SWEEP_WARPS + warp; r < rows; r += gridDim.x * SWEEP_WARPS) {  // warp-uniform
    const float* wrow = W + (size_t)r * cols;
    float wreg[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int c = lane + 32 * i;
      wreg[i] = c < bs ? wrow[b0 + c] : 0.f;
    }
    DevGroupParams P{1.f, 0};
    if (mode == PARAMS_ROW) P = prow[r];
    else if (mode == PARAMS_DYNAMIC && b0 % gs != 0) P = pdyn[(size_t)r * G + b0 / gs];  // group started in an earlier block
    double loss = lane == 0 ? row_loss[r] : 0.0;                                         // continued in the CPU's order: column by column
#pragma unroll
    for (int i = 0; i < 4; i++) {
      for (int tl = 0; tl < 32; tl++) {
        const int t = 32 * i + tl;
        if (t >= bs) break;  // uniform
        const int j = b0 + t;
        if (mode == PARAMS_STATIC) {
          P = pstatic[(size_t)r * G + perm[j] / gs];
        } else if (mode == PARAMS_DYNAMIC && j % gs == 0) {
          P = warp_group_params(wrow + j, min(gs, cols - j), q, lane);
          if (lane == 0) pdyn[(size_t)r * G + j / gs] = P;
        }
        const float w = __shfl_sync(FULL, wreg[i], tl);
        const uint8_t c = dev_uniform_code(w, P, maxqf);
        const float qv = dev_uniform_dequant(c, P);
        const float d = Us[t * bs + t];
        const float err = __fsub_rn(w, qv);
        const float e = __fdiv_rn(err, d);
        if (lane == 0) {
          codes_p[(size_t)r * cols + j] = c;
          E[(size_t)r * bs + t] = e;
          const double de = (double)err, dd = (double)d;
          loss = __dadd_rn(loss, __ddiv_rn(__ddiv_rn(__dmul_rn(de, de), __dmul_rn(dd, dd)), 2.0));
        }
        // w_u −= e·U[j][u] for the rest of the block (U is upper triangular: zeros for u < t;
        // u == t touches a column already quantized, which is never read again)
#pragma unroll
        for (int ii = i; ii < 4; ii++) {
          const int u = lane + 32 * ii;
          if (u < bs) wreg[ii] = __fsub_rn(wreg[ii], __fmul_rn(e, Us[t * bs + u]));
        }
      }
    }
    if (lane == 0) row_loss[r] = loss;
  }
}

// Original column order: codes[r][perm[j]] = codes_p[r][j], dequant likewise (may be null).
__global__ void finalize_kernel(const uint8_t* __restrict__ codes_p, int rows, int cols, const int* __restrict__ perm, int mode, int gs, int G,
                                const DevGroupParams* prow, const DevGroupParams* pstatic, const DevGroupParams* pdyn, uint8_t* __restrict__ codes,
                                float* __restrict__ dequant) {
  const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= (size_t)rows * cols) return;
  const int r = (int)(e / cols), j = (int)(e % cols);
  const uint8_t c = codes_p[e];
  const size_t dst = (size_t)r * cols + perm[j];
  codes[dst] = c;
  if (dequant) dequant[dst] = dev_uniform_dequant(c, params_at(mode, r, j, gs, G, prow, pstatic, pdyn, perm));
}

__global__ void params_out_kernel(int rows, int G, int mode, const DevGroupParams* prow, const DevGroupParams* pstatic, const DevGroupParams* pdyn,
                                  float* __restrict__ scales, uint8_t* __restrict__ zeros) {
  const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= (size_t)rows * G) return;
  const DevGroupParams P = mode == PARAMS_ROW ? prow[e / G] : mode == PARAMS_STATIC ? pstatic[e] : pdyn[e];
  scales[e] = P.scale;
  zeros[e] = (uint8_t)P.zero;
}

unsigned blocks_for(size_t n, int per) { return (unsigned)((n + per - 1) / per); }

std::string fmt(float v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", (double)v);
  return b;
}

double now_ms() { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// What the device path supports; LOWBIT_UNSUPPORTED before any device call otherwise.
void check_spec(const GptqSpec& spec, size_t rows, size_t cols) {
  if (spec.q.clip != CLIP_MINMAX) throw Error("LOWBIT_UNSUPPORTED", "GPTQ on CUDA: clip 'mse' is not implemented on the device (use the CPU)");
  if (spec.q.codebook != CODEBOOK_UNIFORM) throw Error("LOWBIT_UNSUPPORTED", "GPTQ on CUDA: only the uniform grid is implemented");
  if (spec.block_size < 1 || spec.block_size > SWEEP_MAX_BLOCK)
    throw Error("LOWBIT_UNSUPPORTED", "GPTQ on CUDA: blockSize must be in [1, 128], got " + std::to_string(spec.block_size));
  if (spec.q.bits < 2 || spec.q.bits > 8) throw Error("LOWBIT_UNSUPPORTED", "GPTQ on CUDA: bits must be 2..8, got " + std::to_string(spec.q.bits));
  if (spec.q.group_size < 1) throw Error("LOWBIT_INTERNAL", "GPTQ on CUDA: group_size must be ≥ 1");
  if (rows < 1 || cols < 1 || rows > (size_t)INT32_MAX / 2 || cols > 65536 || rows * cols > ((size_t)1 << 34))
    throw Error("LOWBIT_SHAPE_MISMATCH", "GPTQ on CUDA: unsupported layer shape " + std::to_string(rows) + "×" + std::to_string(cols));
}

}  // namespace

void gptq_quantize_cuda_dev(float* W, float* H, size_t rows_, size_t cols_, const GptqSpec& spec, GptqOutput& out, int32_t* host_g_idx,
                            TaskContext* ctx, GptqCudaStats* stats) {
  check_spec(spec, rows_, cols_);
  const int rows = (int)rows_, cols = (int)cols_;
  const double t0 = now_ms();
  cudaStream_t s = 0;
  DevMemCounter mem;
  const QuantSpec& qs = spec.q;
  const GridSpec q{qs.bits, qs.sym, qs.zero_min, qs.scale_f16, qs.signed_max};
  const int gs = std::min(qs.group_size, cols);
  const bool groups = gs < cols;
  const int G = groups ? (cols + gs - 1) / gs : 1;
  const int mode = !groups ? PARAMS_ROW : spec.static_groups ? PARAMS_STATIC : PARAMS_DYNAMIC;
  const size_t nw = (size_t)rows * cols, nh = (size_t)cols * cols;

  {  // non-finite inputs, reported as the CPU path reports them
    DevBuf<unsigned long long> first(2, &mem);
    const unsigned long long none[2] = {~0ull, ~0ull};
    first.upload(none, 2);
    nonfinite_kernel<<<blocks_for(nw, 256), 256, 0, s>>>(W, nw, first.get());
    CUDA_CHECK_LAUNCH();
    nonfinite_kernel<<<blocks_for(nh, 256), 256, 0, s>>>(H, nh, first.get() + 1);
    CUDA_CHECK_LAUNCH();
    unsigned long long f[2];
    first.download(f, 2);
    if (f[0] != ~0ull)
      throw Error("LOWBIT_NUMERICAL", "non-finite weight at [" + std::to_string(f[0] / cols) + ", " + std::to_string(f[0] % cols) + "]");
    if (f[1] != ~0ull)
      throw Error("LOWBIT_NUMERICAL", "non-finite Hessian entry at [" + std::to_string(f[1] / cols) + ", " + std::to_string(f[1] % cols) + "]");
  }

  // 1. per-row params from the original W
  DevBuf<DevGroupParams> prow(mode == PARAMS_ROW ? rows : 0, &mem);
  if (mode == PARAMS_ROW) {
    group_params_kernel<<<blocks_for((size_t)rows * 32, 256), 256, 0, s>>>(W, rows, cols, cols, 1, q, prow.get());
    CUDA_CHECK_LAUNCH();
  }
  // 2. dead inputs, from the diagonal copied to the host
  std::vector<float> diag(cols);
  CUDA_CHECK(cudaMemcpy2D(diag.data(), sizeof(float), H, (size_t)(cols + 1) * sizeof(float), sizeof(float), cols, cudaMemcpyDeviceToHost));
  {
    std::vector<uint8_t> dead(cols, 0);
    bool any = false;
    for (int j = 0; j < cols; j++)
      if (diag[j] == 0.0f) {
        dead[j] = 1;
        diag[j] = 1.0f;
        any = true;
      }
    if (any) {
      DevBuf<uint8_t> dd(cols, &mem);
      dd.upload(dead.data(), cols);
      dead_inputs_kernel<<<blocks_for(nw, 256), 256, 0, s>>>(W, H, rows, cols, dd.get());
      CUDA_CHECK_LAUNCH();
      CUDA_CHECK(cudaStreamSynchronize(s));  // before dd is freed
    }
  }
  // 3. static groups on the original column order
  DevBuf<DevGroupParams> pstatic(mode == PARAMS_STATIC ? (size_t)rows * G : 0, &mem);
  if (mode == PARAMS_STATIC) {
    group_params_kernel<<<blocks_for((size_t)rows * G * 32, 256), 256, 0, s>>>(W, rows, cols, gs, G, q, pstatic.get());
    CUDA_CHECK_LAUNCH();
  }
  // 4. act-order: stable descending sort of diag(H) (the CPU's comparator), gathered on the device
  std::vector<int> perm(cols);
  std::iota(perm.begin(), perm.end(), 0);
  if (spec.act_order) std::stable_sort(perm.begin(), perm.end(), [&](int a, int b) { return diag[a] > diag[b]; });
  DevBuf<int> dperm(cols, &mem);
  dperm.upload(perm.data(), cols);
  if (spec.act_order) {
    DevBuf<float> tmp(std::max(nw, nh), &mem);
    permute_cols_kernel<<<blocks_for(nw, 256), 256, 0, s>>>(W, rows, cols, dperm.get(), tmp.get());
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaMemcpyAsync(W, tmp.get(), nw * sizeof(float), cudaMemcpyDeviceToDevice, s));
    permute_sym_kernel<<<blocks_for(nh, 256), 256, 0, s>>>(H, cols, dperm.get(), tmp.get());
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaMemcpyAsync(H, tmp.get(), nh * sizeof(float), cudaMemcpyDeviceToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
  }
  double mean_diag = 0;
  for (int j = 0; j < cols; j++) mean_diag += diag[perm[j]];
  mean_diag /= (double)cols;
  const double t1 = now_ms();

  // 5–6. damping (raised on failure) and U
  DevBuf<float> U(nh, &mem);
  float damp = spec.damp;
  int attempts = 0;
  {
    DevBuf<float> lt(nh, &mem), tw(inverse_factor_t_floats(cols), &mem), panel((size_t)cols * 64, &mem), linv(64 * 64, &mem);
    DevBuf<int> info(1, &mem);
    const InverseFactorWork w{lt.get(), tw.get(), panel.get(), linv.get(), info.get()};
    for (;;) {
      if (ctx) ctx->check("gptq");
      attempts++;
      if (gptq_inverse_factor_dev(H, cols, (float)(damp * mean_diag), U.get(), w, s)) break;
      const float next = damp + spec.damp_step;
      if (next > spec.damp_max + 1e-6f)
        throw Error("LOWBIT_NUMERICAL", "Hessian not positive definite after damping raised " + fmt(spec.damp) + " → " + fmt(damp) +
                                            " (the bound is " + fmt(spec.damp_max) + " of the mean diagonal)");
      damp = next;
    }
    CUDA_CHECK(cudaStreamSynchronize(s));
  }
  out.damp_used = damp;
  const double t2 = now_ms();

  // 7. column sweep
  const int B = spec.block_size;
  DevBuf<uint8_t> codes_p(nw, &mem);
  DevBuf<float> E((size_t)rows * B, &mem);
  DevBuf<DevGroupParams> pdyn(mode == PARAMS_DYNAMIC ? (size_t)rows * G : 0, &mem);
  DevBuf<double> row_loss(rows, &mem);
  row_loss.zero();
  const size_t smem_max = (size_t)B * B * sizeof(float);
  CUDA_CHECK(cudaFuncSetAttribute(gptq_sweep_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_max));
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gptq_sweep_kernel, 32 * SWEEP_WARPS, smem_max));
  if (per_sm < 1)
    throw Error("LOWBIT_INTERNAL", "GPTQ on CUDA: the sweep kernel does not fit on this device (" + std::to_string(smem_max) + " B shared memory)");
  const unsigned sweep_blocks = (unsigned)std::min<size_t>((rows + SWEEP_WARPS - 1) / SWEEP_WARPS, (size_t)per_sm * cuda_sm_count());
  for (int b0 = 0; b0 < cols; b0 += B) {
    if (ctx) ctx->check("gptq");
    const int b1 = std::min(cols, b0 + B), bs = b1 - b0;
    gptq_sweep_kernel<<<sweep_blocks, 32 * SWEEP_WARPS, (size_t)bs * bs * sizeof(float), s>>>(W, U.get(), rows, cols, b0, bs, mode, gs, G, prow.get(),
                                                                                              pstatic.get(), pdyn.get(), dperm.get(), q,
                                                                                              codes_p.get(), E.get(), row_loss.get());
    CUDA_CHECK_LAUNCH();
    if (b1 < cols) {
      // W[:, b1:] −= E · U[b0:b1, b1:]
      gemm_f32_cuda(false, false, rows, cols - b1, bs, -1.f, E.get(), bs, U.get() + (size_t)b0 * cols + b1, cols, 1.f, W + b1, cols, GEMM_TRI_ALL, s);
    }
    if (ctx) {
      CUDA_CHECK(cudaStreamSynchronize(s));  // progress means done, and cancellation stops within a block
      ctx->add_done((double)bs);
    }
  }
  // 8. outputs in the original column order
  finalize_kernel<<<blocks_for(nw, 256), 256, 0, s>>>(codes_p.get(), rows, cols, dperm.get(), mode, gs, G, prow.get(), pstatic.get(), pdyn.get(),
                                                      out.codes, out.dequant);
  CUDA_CHECK_LAUNCH();
  params_out_kernel<<<blocks_for((size_t)rows * G, 256), 256, 0, s>>>(rows, G, mode, prow.get(), pstatic.get(), pdyn.get(), out.scales, out.zeros);
  CUDA_CHECK_LAUNCH();
  std::vector<double> rl(rows);
  row_loss.download(rl.data(), rows);  // synchronizes
  out.loss = 0;
  for (double l : rl) out.loss += l;
  if (host_g_idx) {
    for (int c = 0; c < cols; c++) host_g_idx[c] = 0;
    if (groups) {
      if (spec.act_order && !spec.static_groups)
        for (int j = 0; j < cols; j++) host_g_idx[perm[j]] = j / gs;
      else
        for (int c = 0; c < cols; c++) host_g_idx[c] = c / gs;
    }
  }
  const double t3 = now_ms();
  if (stats) {
    stats->ms_prepare = t1 - t0;
    stats->ms_factor = t2 - t1;
    stats->ms_sweep = t3 - t2;
    stats->ms_total = t3 - t0;
    stats->device_bytes = mem.peak;
    stats->factor_attempts = attempts;
  }
}

void gptq_quantize_cuda(const float* W, const float* H, size_t rows, size_t cols, const GptqSpec& spec, GptqOutput& out, TaskContext* ctx,
                        GptqCudaStats* stats) {
  // host checks first (testable without a device), with the CPU path's messages
  check_spec(spec, rows, cols);
  for (size_t i = 0; i < rows * cols; i++)
    if (!std::isfinite(W[i]))
      throw Error("LOWBIT_NUMERICAL", "non-finite weight at [" + std::to_string(i / cols) + ", " + std::to_string(i % cols) + "]");
  for (size_t i = 0; i < cols * cols; i++)
    if (!std::isfinite(H[i]))
      throw Error("LOWBIT_NUMERICAL", "non-finite Hessian entry at [" + std::to_string(i / cols) + ", " + std::to_string(i % cols) + "]");
  cuda_require_device();
  const double t0 = now_ms();
  const size_t gs = std::min((size_t)spec.q.group_size, cols);
  const size_t G = gs < cols ? (cols + gs - 1) / gs : 1;
  DevMemCounter mem;
  DevBuf<float> dw(rows * cols, &mem), dh(cols * cols, &mem), ds(rows * G, &mem);
  DevBuf<float> ddq(out.dequant ? rows * cols : 0, &mem);
  DevBuf<uint8_t> dc(rows * cols, &mem), dz(rows * G, &mem);
  dw.upload(W, rows * cols);
  dh.upload(H, cols * cols);
  GptqOutput dev;
  dev.codes = dc.get();
  dev.scales = ds.get();
  dev.zeros = dz.get();
  dev.dequant = out.dequant ? ddq.get() : nullptr;
  GptqCudaStats inner;
  const double t1 = now_ms();
  gptq_quantize_cuda_dev(dw.get(), dh.get(), rows, cols, spec, dev, out.g_idx, ctx, &inner);
  const double t2 = now_ms();
  dc.download(out.codes, rows * cols);
  ds.download(out.scales, rows * G);
  dz.download(out.zeros, rows * G);
  if (out.dequant) ddq.download(out.dequant, rows * cols);
  out.loss = dev.loss;
  out.damp_used = dev.damp_used;
  if (stats) {
    *stats = inner;
    stats->ms_copy = (t1 - t0) + (now_ms() - t2);
    stats->device_bytes = mem.peak + inner.device_bytes;  // the in/out buffers live throughout
  }
}

}  // namespace lowbit
