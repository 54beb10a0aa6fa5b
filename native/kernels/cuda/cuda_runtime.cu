// CUDA runtime helpers: device discovery and the error-checking macro used by every .cu file.
#include <cuda_runtime.h>

#include <string>

#include "core/error.h"
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_check.cuh"

namespace lowbit {

CudaStatus cuda_status() {
  CudaStatus s;
  cudaRuntimeGetVersion(&s.runtime_version);
  cudaError_t e = cudaDriverGetVersion(&s.driver_version);
  if (e != cudaSuccess) {
    s.error = std::string("cudaDriverGetVersion: ") + cudaGetErrorString(e);
    return s;
  }
  if (s.driver_version == 0) {
    s.error = "no NVIDIA driver installed (libcuda not found)";
    return s;
  }
  e = cudaGetDeviceCount(&s.device_count);
  if (e != cudaSuccess) {
    s.device_count = 0;
    s.error = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky error
    return s;
  }
  for (int i = 0; i < s.device_count; i++) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    CudaDeviceInfo d;
    d.name = p.name;
    d.major = p.major;
    d.minor = p.minor;
    d.total_memory = p.totalGlobalMem;
    d.multi_processors = p.multiProcessorCount;
    s.devices.push_back(d);
  }
  if (s.device_count == 0) s.error = "no CUDA device visible";
  return s;
}

void cuda_fail(cudaError_t e, const char* call, const char* file, int line) {
  cudaGetLastError();
  const bool no_device = e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver;
  throw Error(no_device ? "LOWBIT_NO_CUDA" : "LOWBIT_INTERNAL",
              std::string(call) + " failed: " + cudaGetErrorString(e) + " at " + file + ":" + std::to_string(line));
}

}  // namespace lowbit
