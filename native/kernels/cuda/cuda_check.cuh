// CUDA_CHECK(call): turn a CUDA error into lowbit::Error naming the call, file and line.
#pragma once
#include <cuda_runtime.h>

namespace lowbit {
[[noreturn]] void cuda_fail(cudaError_t e, const char* call, const char* file, int line);
}

#define CUDA_CHECK(call)                                                       \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess) ::lowbit::cuda_fail(e_, #call, __FILE__, __LINE__); \
  } while (0)
