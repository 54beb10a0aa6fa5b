// Machine-limit probes for the benchmarks: a streaming copy (memory bandwidth) and a
// register-resident FMA loop (peak fp32 FLOP/s), measured in the same run as the kernels so every
// figure can be reported as a fraction of what this machine can do right now.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

// Returns the FLOPs executed; 12 independent accumulators hide the FMA latency.
double peak_fma_generic(uint64_t iters);
double peak_fma_avx2(uint64_t iters);
double peak_fma_avx512(uint64_t iters);
// Dispatching version.
double peak_fma(uint64_t iters);

}  // namespace lowbit
