// Host emulation of the CUDA execution model, enough for lowbit's kernels (test/cuda/emu/run.sh):
// every CUDA thread is a user-level context (ucontext) run round robin by the calling OS thread,
// the blocks of a launch run one after another (so __shared__
// can be a function-local static), __syncthreads is a barrier over the block, and warp operations
// (__shfl*_sync, mma.sync) exchange values through per-warp slots between two barriers over the
// warp. mma.sync m16n8k16 is computed from the PTX ISA fragment tables (rows/columns per lane and
// register), products exact, sums in double. Launches (`k<<<g, b, smem, s>>>(args)`) are rewritten
// by transform.py into emu_launch(k, g, b, smem, s)(args). Not modelled: memory ordering between
// concurrent blocks, resource limits (registers, shared memory, occupancy), alignment faults, timing.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint4 { unsigned x, y, z, w; };
struct uint2 { unsigned x, y; };
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }

// The CUDA threads of a block are user-level contexts run by one OS thread, round robin: a thread
// runs until it waits at a barrier or ends (deterministic, and cheap on a 2-core machine).
struct EmuBarrier {
  int n = 0, count = 0;
  long gen = 0;
};
struct EmuThread {
  ucontext_t ctx;
  int linear = 0;
  dim3 tid;
  EmuBarrier* wait = nullptr;
  long gen = 0;
  bool done = false;
};
struct EmuWarp {
  EmuBarrier bar;
  uint64_t slot[32][16];
};
struct EmuBlock {
  EmuBarrier bar;
  std::vector<EmuWarp> warps;
  std::vector<uint8_t> dyn;
};

extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
extern thread_local EmuBlock* emu_block;
extern thread_local EmuThread* emu_self;
void emu_barrier(EmuBarrier& b);
inline EmuWarp& emu_warp() { return emu_block->warps[emu_self->linear / 32]; }
inline int emu_lane() { return emu_self->linear % 32; }
inline void __syncthreads() { emu_barrier(emu_block->bar); }
inline void* emu_dyn_smem() { return emu_block->dyn.data(); }

template <class T>
T emu_shfl(T v, int src) {
  EmuWarp& w = emu_warp();
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  w.slot[emu_lane()][0] = u;
  emu_barrier(w.bar);
  T r;
  uint64_t s = w.slot[src & 31][0];
  std::memcpy(&r, &s, sizeof(T));
  emu_barrier(w.bar);
  return r;
}
template <class T> T __shfl_sync(unsigned, T v, int src) { return emu_shfl(v, src); }
template <class T> T __shfl_xor_sync(unsigned, T v, int m) { return emu_shfl(v, emu_lane() ^ m); }

// one OS thread runs a block, so plain read-modify-write is atomic within it; the lock serialises
// launches made from different OS threads (they never share memory in lowbit's use)
std::mutex& emu_atomic_mutex();
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  std::lock_guard<std::mutex> g(emu_atomic_mutex());
  auto o = *p; if (v < o) *p = v; return o;
}
inline int atomicCAS(int* p, int cmp, int v) {
  std::lock_guard<std::mutex> g(emu_atomic_mutex());
  int o = *p; if (o == cmp) *p = v; return o;
}

void emu_run(dim3 grid, dim3 block, size_t smem, const std::function<void()>& fn);
template <class K>
auto emu_launch(K k, dim3 grid, dim3 block, size_t smem = 0, void* = nullptr) {
  return [=](auto... args) { emu_run(grid, block, smem, [&] { k(args...); }); };
}

template <class T> T __ldg(const T* p) { return *p; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
inline double __dsub_rn(double a, double b) { volatile double r = a - b; return r; }
inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
inline double __ddiv_rn(double a, double b) { volatile double r = a / b; return r; }
using std::min; using std::max; using std::isfinite; using std::isinf; using std::sqrt;
inline void __trap() { std::abort(); }
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

// mma.sync m16n8k16 row.col f32.f16.f16.f32, from the PTX ISA fragment tables.
inline float emu_h(uint32_t reg, int half) {
  uint16_t b = (uint16_t)(half ? reg >> 16 : reg & 0xffff);
  // f16 -> f32 (local copy to avoid including half.h here)
  uint32_t sign = (uint32_t)(b & 0x8000) << 16, exp = (b >> 10) & 0x1f, man = b & 0x3ff;
  float v;
  if (exp == 0) { v = (float)man * 5.9604644775390625e-8f; return sign ? -v : v; }
  uint32_t u = exp == 31 ? (sign | 0x7f800000u | (man << 13)) : (sign | ((exp + 112) << 23) | (man << 13));
  std::memcpy(&v, &u, 4);
  return v;
}
inline void emu_mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
  EmuWarp& w = emu_warp();
  const int lane = emu_lane();
  uint64_t* s = w.slot[lane];
  s[0] = a0; s[1] = a1; s[2] = a2; s[3] = a3; s[4] = b0; s[5] = b1;
  emu_barrier(w.bar);
  const int g = lane >> 2, t = lane & 3;
  float r[4];
  for (int i = 0; i < 4; i++) {
    const int row = g + 8 * (i >= 2), col = 2 * t + (i & 1);
    double acc = d[i];
    for (int k = 0; k < 16; k++) {
      const int la = (row % 8) * 4 + (k % 8) / 2, ra = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
      const int lb = col * 4 + (k % 8) / 2, rb = k >= 8 ? 1 : 0;
      acc += (double)emu_h((uint32_t)w.slot[la][ra], k & 1) * (double)emu_h((uint32_t)w.slot[lb][4 + rb], k & 1);
    }
    r[i] = (float)acc;
  }
  emu_barrier(w.bar);
  for (int i = 0; i < 4; i++) d[i] = r[i];
}
