// Small host-side helpers shared by the .cu files (never included by the g++-compiled addon glue):
//   DevBuf<T>     RAII device allocation; counts the bytes it holds in a DevMemCounter, so every
//                 host entry can report its peak device memory without asking the driver.
//   cuda_require_device()  LOWBIT_NO_CUDA with the reason (no driver / no device) before any
//                 allocation, so callers get one clear message instead of a failing cudaMalloc.
//   EventTimer    elapsed milliseconds between two events on a stream.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <string>

#include "core/error.h"
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_check.cuh"

namespace lowbit {

// Bytes held by the DevBufs of one host call, and the most held at once.
struct DevMemCounter {
  size_t current = 0, peak = 0;
  void add(size_t b) {
    current += b;
    if (current > peak) peak = current;
  }
  void sub(size_t b) { current -= b; }
};

template <typename T>
class DevBuf {
 public:
  DevBuf() = default;
  DevBuf(size_t n, DevMemCounter* c = nullptr) { alloc(n, c); }
  ~DevBuf() { release(); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;

  void alloc(size_t n, DevMemCounter* c = nullptr) {
    release();
    counter_ = c;
    if (n == 0) return;
    CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
    n_ = n;
    if (counter_) counter_->add(bytes());
  }
  void release() {
    if (p_) {
      cudaFree(p_);  // no check: also runs while unwinding from another error
      if (counter_) counter_->sub(bytes());
    }
    p_ = nullptr;
    n_ = 0;
  }
  void upload(const T* host, size_t n) { CUDA_CHECK(cudaMemcpy(p_, host, n * sizeof(T), cudaMemcpyHostToDevice)); }
  void download(T* host, size_t n) const { CUDA_CHECK(cudaMemcpy(host, p_, n * sizeof(T), cudaMemcpyDeviceToHost)); }
  void zero() {
    if (n_) CUDA_CHECK(cudaMemset(p_, 0, bytes()));
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
  DevMemCounter* counter_ = nullptr;
};

inline void cuda_require_device() {
  int drv = 0;
  if (cudaDriverGetVersion(&drv) != cudaSuccess || drv == 0) {
    cudaGetLastError();
    throw Error("LOWBIT_NO_CUDA", "no NVIDIA driver installed (libcuda not found)");
  }
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();
    throw Error("LOWBIT_NO_CUDA", e != cudaSuccess ? std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e) : "no CUDA device visible");
  }
}

class EventTimer {
 public:
  explicit EventTimer(cudaStream_t s = 0) : s_(s) {
    CUDA_CHECK(cudaEventCreate(&a_));
    CUDA_CHECK(cudaEventCreate(&b_));
  }
  ~EventTimer() {
    cudaEventDestroy(a_);
    cudaEventDestroy(b_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start() { CUDA_CHECK(cudaEventRecord(a_, s_)); }
  float stop() {
    CUDA_CHECK(cudaEventRecord(b_, s_));
    CUDA_CHECK(cudaEventSynchronize(b_));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a_, b_));
    return ms;
  }

 private:
  cudaStream_t s_;
  cudaEvent_t a_ = nullptr, b_ = nullptr;
};

// Launch check: a bad configuration is reported at the launch, not at the next sync.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// Evicts the L2 cache before a "cold" timed launch by writing a buffer of twice its size, so a
// benchmark measures DRAM reads and not weights left in L2 by the previous repeat (50 MiB on H100:
// a 4096×4096 fp16 matrix would otherwise stay resident). The memset is outside the timed events.
class L2Flusher {
 public:
  explicit L2Flusher(bool on, DevMemCounter* c = nullptr) {
    if (!on) return;
    int dev = 0, l2 = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    buf_.alloc((size_t)std::max(l2, 1 << 20) * 2, c);
  }
  void flush() {
    if (buf_.size()) CUDA_CHECK(cudaMemsetAsync(buf_.get(), ++n_ & 0xff, buf_.bytes(), 0));
  }

 private:
  DevBuf<uint8_t> buf_;
  int n_ = 0;
};

inline int cuda_sm_count() {
  int dev = 0, n = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n;
}

}  // namespace lowbit
