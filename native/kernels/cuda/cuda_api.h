// Host-callable CUDA entry points (declarations only: the addon glue compiles with g++ and never
// includes CUDA headers). Every function throws lowbit::Error naming the failing CUDA call, file
// and line; LOWBIT_NO_CUDA when no device/driver is usable.
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
float dequant_gptq_int4_cuda(const int32_t* qweight, const float* scales, const uint8_t* zeros, const int32_t* g_idx,
                             int rows, int cols, int groups, float* out);

}  // namespace lowbit
