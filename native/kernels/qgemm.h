// y = x · Wᵀ straight from GPTQ-packed 4-bit weights — never a dequantized copy of W:
//   W[n, k] = s[g(k), n] · (q(k, n) − z[g(k), n]),  g(k) = g_idx[k]
//   x: (m, in) f32 row-major; y: (m, out) f32
//   qweight: (in/8, out) int32, 8 codes of consecutive input channels per word, low nibble first
//   scales: (G, out) f32; zeros: (G, out) uint8 (true zeros); g_idx: (in) int32
// Fast path (AVX2): 8 output channels per ymm — one load brings the 8 words of a word row, each
// nibble is shifted out, converted and FMA'd with a broadcast x; per group, y += s·(Σ x·q − z·Σx),
// so scales and zeros are applied once per group, not per weight. It needs groups that are runs of
// consecutive input channels (g_idx[k] = k / group_size, group_size a multiple of 8): act-order
// checkpoints take the reference path (or are repacked in processing order — not done yet).
// Reference: the formula per weight, accumulated in double.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

struct QGemmArgs {
  const float* x;
  size_t m, in, out, groups;
  const int32_t* qweight;
  const float* scales;
  const uint8_t* zeros;
  const int32_t* g_idx;
  float* y;
};

void qgemm_gptq4_ref(const QGemmArgs& a);
// Output channels [n0, n1) (n0 a multiple of 8); group_size: the run length of g_idx.
void qgemm_gptq4_avx2_range(const QGemmArgs& a, size_t group_size, size_t n0, size_t n1);
// Driver: mode MODE_REF → reference; else the fast path when g_idx is runs, threads over outputs.
void qgemm_gptq4(const QGemmArgs& a, int mode);

}  // namespace lowbit
