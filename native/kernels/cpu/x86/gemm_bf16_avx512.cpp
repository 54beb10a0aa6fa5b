// bf16 GEMM on AVX-512 BF16 (kernels/gemm.h gemm_bf16): y = x̃ · w̃ᵀ with x̃, w̃ the inputs rounded
// to bf16, products exact and sums in f32. vdpbf16ps multiplies 16 pairs of bf16 values and adds
// each pair's two products into one f32 lane: twice the multiply-adds of an f32 FMA per
// instruction. Layout: x rows in bf16 (kp channels, kp even, zero padded); w packed by the caller
// in panels of 32 output columns, channel pairs interleaved — for pair p, the 32-bit words
// (w[j][2p], w[j][2p+1]) of columns j = 0…15 then 16…31 — so one load feeds 16 columns and one
// broadcast 32-bit word of x (its pair of channels) feeds them all. Register tile: 12 rows × 32
// columns (24 accumulators), summed over the whole k, stored once (masked for a short panel).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/gemm.h"

namespace lowbit {

namespace {

// A vector of 32 bf16 values from its bits (memcpy: also right where the intrinsics are emulated).
inline __m512bh as_bh(__m512i v) {
  __m512bh r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}

template <int R>
void tile(const uint16_t* xb, size_t kp, const uint16_t* panel, float* y, size_t ldy, __mmask16 m0, __mmask16 m1) {
  __m512 acc0[R], acc1[R];
  for (int r = 0; r < R; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
  const size_t pairs = kp / 2;
  const uint32_t* xw = reinterpret_cast<const uint32_t*>(xb);
  const size_t xstride = kp / 2;  // 32-bit words per x row
  for (size_t p = 0; p < pairs; p++) {
    const __m512bh w0 = as_bh(_mm512_loadu_si512(panel + p * 64));
    const __m512bh w1 = as_bh(_mm512_loadu_si512(panel + p * 64 + 32));
    for (int r = 0; r < R; r++) {
      uint32_t word;
      std::memcpy(&word, xw + r * xstride + p, 4);
      const __m512bh xv = as_bh(_mm512_set1_epi32((int)word));
      acc0[r] = _mm512_dpbf16_ps(acc0[r], xv, w0);
      acc1[r] = _mm512_dpbf16_ps(acc1[r], xv, w1);
    }
  }
  for (int r = 0; r < R; r++) {
    _mm512_mask_storeu_ps(y + r * ldy, m0, acc0[r]);
    _mm512_mask_storeu_ps(y + r * ldy + 16, m1, acc1[r]);
  }
}

}  // namespace

void gemm_bf16_panel_avx512bf16(const uint16_t* xb, size_t m, size_t kp, const uint16_t* panel, size_t cols, float* y, size_t ldy) {
  const __mmask16 m0 = cols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? (__mmask16)0xffff : cols <= 16 ? (__mmask16)0 : (__mmask16)((1u << (cols - 16)) - 1);
  size_t i = 0;
  for (; i + 12 <= m; i += 12) tile<12>(xb + i * kp, kp, panel, y + i * ldy, ldy, m0, m1);
  const size_t rest = m - i;
  const uint16_t* xr = xb + i * kp;
  float* yr = y + i * ldy;
  switch (rest) {
    case 0: break;
    case 1: tile<1>(xr, kp, panel, yr, ldy, m0, m1); break;
    case 2: tile<2>(xr, kp, panel, yr, ldy, m0, m1); break;
    case 3: tile<3>(xr, kp, panel, yr, ldy, m0, m1); break;
    case 4: tile<4>(xr, kp, panel, yr, ldy, m0, m1); break;
    case 5: tile<5>(xr, kp, panel, yr, ldy, m0, m1); break;
    case 6: tile<6>(xr, kp, panel, yr, ldy, m0, m1); break;
    case 7: tile<7>(xr, kp, panel, yr, ldy, m0, m1); break;
    case 8: tile<8>(xr, kp, panel, yr, ldy, m0, m1); break;
    case 9: tile<9>(xr, kp, panel, yr, ldy, m0, m1); break;
    case 10: tile<10>(xr, kp, panel, yr, ldy, m0, m1); break;
    default: tile<11>(xr, kp, panel, yr, ldy, m0, m1); break;
  }
}

}  // namespace lowbit
