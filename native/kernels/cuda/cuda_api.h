// Host-callable CUDA entry points (declarations only: the addon glue compiles with g++ and never
// includes CUDA headers). Every function throws lowbit::Error naming the failing CUDA call, file
// and line; LOWBIT_NO_CUDA when no device/driver is usable.
//
// Two kinds of entry: `*_cuda(...)` take host pointers, copy in, run, copy out and report kernel
// times and the peak device memory they allocated (tests, benchmarks); `*_cuda_launch(...)` /
// `*_cuda_dev(...)` take device pointers and a stream (`void*` = cudaStream_t, null = the legacy
// default stream) for a pipeline that keeps its data on the device. Host entries check their
// arguments before touching the device, so those checks can be tested on a machine without one.
// This header declares the kernels' entries; the algorithms built on them (Hessian, inverse
// factor, GPTQ layer) declare theirs in quant/cuda/gptq_cuda.h, beside their CPU twins.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {

struct CudaDeviceInfo {
  std::string name;
  int major = 0, minor = 0;
  size_t total_memory = 0;
  int multi_processors = 0;
};

struct CudaStatus {
  int runtime_version = 0, driver_version = 0, device_count = 0;
  std::vector<CudaDeviceInfo> devices;
  std::string error;  // empty when a device is usable
};

CudaStatus cuda_status();

// GPTQ 4-bit dequantization on the device:
//   W[n, k] = scales[g_idx[k], n] · (code(k, n) − zeros[g_idx[k], n])
// qweight: (cols/8, rows) int32, 8 codes per word along the input dim, low nibble first;
// scales: (groups, rows) f32; zeros: (groups, rows) uint8 (true zeros); g_idx: (cols) int32;
// out: (rows, cols) f32. All host pointers; returns the kernel time in milliseconds.
float dequant_gptq_int4_cuda(const int32_t* qweight, const float* scales, const uint8_t* zeros, const int32_t* g_idx, int rows, int cols, int groups,
                             float* out);

enum CudaDtype { CUDA_F32 = 0, CUDA_F16 = 1 };
enum QgemmKernel { QGEMM_AUTO = 0, QGEMM_GEMV = 1, QGEMM_MMA = 2 };  // auto: GEMV for m == 1, else MMA

// Timings of a host entry: per-repeat kernel milliseconds (events around the launches only), the
// most device memory it held at once, and what it chose.
struct CudaRunStats {
  std::vector<float> ms;
  size_t device_bytes = 0;
  int kernel = 0;      // QgemmKernel actually run
  int splits = 1;      // k splits (partial sums added by a second kernel)
  int group_size = 0;  // run length of g_idx used by the fast group path; 0 = general g_idx
};

// ---- packed-int matmul (kernels/cuda/qgemm_cuda.cu) ----
//   y (m, out) f32 = x (m, in) · Wᵀ,  W[n, k] = scales[g_idx[k], n] · (code(k, n) − zeros[g_idx[k], n])
// x: (m, in) f32 or f16 (CudaDtype); qweight: (in·bits/32, out) int32, codes of consecutive input
// channels per word, lowest bits first (GPTQ layout, bits 4 or 8); scales: (groups, out) f32;
// zeros: (groups, out) uint8, true zeros; g_idx: (in) int32 in [0, groups).
struct QgemmHostArgs {
  const void* x = nullptr;
  int x_dtype = CUDA_F32;
  int m = 0, in = 0, out = 0, bits = 4, groups = 0;
  const int32_t* qweight = nullptr;
  const float* scales = nullptr;
  const uint8_t* zeros = nullptr;
  const int32_t* g_idx = nullptr;
  float* y = nullptr;
};
// Runs `warmup` untimed and `repeats` timed launches; y holds the last result. cold: evict the L2
// cache before each timed launch (DRAM-bound figures; the eviction itself is not timed).
// Errors: LOWBIT_UNSUPPORTED (bits), LOWBIT_SHAPE_MISMATCH (in not a multiple of the word),
// LOWBIT_BAD_FORMAT (g_idx out of range) — all before any device call; then LOWBIT_NO_CUDA.
CudaRunStats qgemm_gptq_cuda(const QgemmHostArgs& a, int kernel, int warmup, int repeats, bool cold = false);

// Device-pointer form. x, qweight, scales 16-byte aligned, zeros 4-byte aligned.
struct QgemmCudaArgs {
  const void* x = nullptr;
  int x_dtype = CUDA_F32;
  int m = 0, in = 0, out = 0, bits = 4, groups = 0;
  const int32_t* qweight = nullptr;
  const float* scales = nullptr;
  const uint8_t* zeros = nullptr;
  const int32_t* g_idx = nullptr;  // read only when group_size == 0
  // > 0: g_idx[k] == k / group_size (a multiple of 8) — the fast group path; 0: general g_idx.
  // qgemm_cuda_group_size() finds it from a host copy of g_idx.
  int group_size = 0;
  float* y = nullptr;
  float* workspace = nullptr;  // qgemm_gptq_cuda_workspace_floats() floats (may be 0)
  size_t workspace_floats = 0;
  int kernel = QGEMM_AUTO;
};
void qgemm_gptq_cuda_launch(const QgemmCudaArgs& a, void* stream);
size_t qgemm_gptq_cuda_workspace_floats(int m, int in, int out, int kernel);
// The run length of g_idx when g_idx[k] == k / gs with gs % 8 == 0, else 0. Throws
// LOWBIT_BAD_FORMAT when an entry lies outside [0, groups).
int qgemm_cuda_group_size(const int32_t* g_idx, int in, int groups);

// fp16 GEMM of the same shape, for the benchmark's speed-up: y (m, out) f32 = x · Wᵀ with x and
// W (out, in) rounded to f16 on the device (nearest even), f32 accumulation; in % 8 == 0.
CudaRunStats gemm_f16_cuda(const float* x, const float* w, int m, int in, int out, float* y, int warmup, int repeats, bool cold = false);
void gemm_f16_cuda_launch(const void* x_f16, const void* w_f16, int m, int in, int out, float* y, float* workspace, size_t workspace_floats,
                          void* stream);
size_t gemm_f16_cuda_workspace_floats(int m, int in, int out);

// Device-to-device copy of `bytes` (read + write = 2·bytes of traffic): per-repeat milliseconds.
std::vector<float> copy_bench_cuda(size_t bytes, int repeats);

}  // namespace lowbit
