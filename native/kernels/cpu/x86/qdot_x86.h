// Pieces shared by the x86 integer-dot kernels (qdot_avx2.cpp, qdot_avx512vnni.cpp). Internal
// linkage: each source compiles its own copy with its own flags (see gemm_blocked.h).
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/qdot.h"

namespace lowbit {
namespace {

// Software prefetch distance for the weight codes, in bytes (every 64-byte line is requested this far
// ahead of its use). Decoding streams each tile's codes once from DRAM; the hardware prefetchers
// alone left the TinyLlama Q4_0 decode at 39–44 ms/token, 4 KiB ahead 34–37 (alternating processes;
// 1–16 KiB all helped). Prefill reads the codes from L2 and is unchanged.
constexpr size_t PREFETCH_BYTES = 4096;

// For a unit of `ub` ≤ 64 bytes at byte `off`: once per 64-byte line (the unit that starts in its first
// `ub` bytes), so 48-byte 3-bit units also request every line exactly once.
inline void prefetch_line(const uint8_t* p, size_t off, size_t ub) {
  if ((off & 63) < ub) _mm_prefetch(reinterpret_cast<const char*>(p + off + PREFETCH_BYTES), _MM_HINT_T0);
}

struct Ctx {
  const QBlockMatrix& w;
  const QActs& a;
  size_t B;
  const float* zs;       // (rows, B): sx·Σxq (asymmetric: times m) or −z·sx·Σxq (fixed zero: times d)
  QblockSupers sups{w};  // two-level scales: where tile T's block b finds d and mh
};

}  // namespace
}  // namespace lowbit
