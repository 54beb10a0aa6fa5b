// AVX-512 GEMM y = x · wᵀ (see kernels/gemm.h for shapes): the blocked path with a 12×32 register
// tile. Small batches (GEMM_SMALL_M_MIN … GEMM_SMALL_M_MAX rows) and m == 1 (a memory-bound GEMV)
// stay on the AVX2 code, which the dispatcher runs on AVX-512 CPUs as well.
//
// Blocking: NR = 32 weight rows per panel (two zmm), MR = 12 activation rows per tile: 24
// accumulators + 2 B loads, the A values broadcast straight from memory (FMA operands), 26 of 32
// zmm registers; two FMAs per broadcast, 24 per 2 loads. KC = 128 keeps the packed B panel
// (32×128×4 = 16 KiB) and an A tile (6 KiB) together in a 32 KiB L1; NC = 512 weight rows per
// packed B block (256 KiB) and MC = 96 activation rows (48 KiB) sit in L2.
//
// Not yet measured on AVX-512 hardware (the project's machine has none); its logic is checked on
// any AVX2 CPU by scripts/check-avx512.sh (the intrinsics emulated) and, where the CPU has AVX-512,
// by the test suite itself. The dispatcher runs it only when asked (LOWBIT_ISA=avx512, setIsa).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/gemm_blocked.h"
#include "kernels/cpu/x86/gemm_pack_avx.h"
#include "kernels/gemm.h"

namespace lowbit {

namespace {

constexpr size_t MR = 12, NR = 32, KC = 128, MC = 96, NC = 512;

// C (mr × nr valid of a 12 × 32 tile, leading dimension ldc) (+)= A_pack · B_pack over kc.
inline void kernel_12x32(size_t kc, const float* A, const float* B, float* C, size_t ldc, size_t mr, size_t nr, bool overwrite) {
  __m512 c[MR][2];
  for (size_t i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
  // C's rows are fetched while the k loop runs (as in the AVX2 kernel: y beyond L2 at large sizes)
  for (size_t i = 0; i < mr; i++) {
    _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc + 16), _MM_HINT_T0);
  }
  for (size_t p = 0; p < kc; p++) {
    const __m512 b0 = _mm512_load_ps(B + p * NR), b1 = _mm512_load_ps(B + p * NR + 16);
    const float* a = A + p * MR;
#pragma GCC unroll 12
    for (size_t i = 0; i < MR; i++) {
      const __m512 av = _mm512_set1_ps(a[i]);
      c[i][0] = _mm512_fmadd_ps(av, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(av, b1, c[i][1]);
    }
  }
  if (mr == MR && nr == NR) {
    for (size_t i = 0; i < MR; i++) {
      float* ci = C + i * ldc;
      if (overwrite) {
        _mm512_storeu_ps(ci, c[i][0]);
        _mm512_storeu_ps(ci + 16, c[i][1]);
      } else {
        _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_loadu_ps(ci), c[i][0]));
        _mm512_storeu_ps(ci + 16, _mm512_add_ps(_mm512_loadu_ps(ci + 16), c[i][1]));
      }
    }
    return;
  }
  alignas(64) float tile[MR][NR];
  for (size_t i = 0; i < MR; i++) {
    _mm512_store_ps(tile[i], c[i][0]);
    _mm512_store_ps(tile[i] + 16, c[i][1]);
  }
  store_edge_tile<MR, NR>(tile, C, ldc, mr, nr, overwrite);
}

}  // namespace

size_t gemm_avx512_packed_a_floats(size_t m, size_t k) { return packed_a_floats<MR>(m, k); }
size_t gemm_avx512_a_tiles(size_t m) { return padded_rows<MR>(m) / MR; }
void gemm_avx512_pack_a(const float* x, size_t m, size_t k, float* apre, size_t t0, size_t t1) { pack_a_all<MR, KC>(x, m, k, apre, t0, t1); }

void gemm_avx512_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool accumulate, size_t n0, size_t n1,
                       const float* apre) {
  if (n1 <= n0) return;
  if (m == 1 || k == 0) {  // the GEMV (memory-bound: no gain from wider vectors) and the empty product
    gemm_avx2_range(x, m, k, w, n, y, ldy, accumulate, n0, n1);
    return;
  }
  thread_local PackBuf pa, pb;
  gemm_blocked<MR, NR, KC, MC, NC>(
      x, m, k, w, y, ldy, accumulate, n0, n1, pa.get(MC * KC), pb.get(NC * KC),
      [](size_t kc, const float* A, const float* B, float* C, size_t ldc, size_t mr, size_t nr, bool ow) {
        kernel_12x32(kc, A, B, C, ldc, mr, nr, ow);
      },
      [](const float* w_, size_t k_, size_t r0, size_t re, size_t k0, size_t kc, float* dst) { pack_b_panel_avx<NR>(w_, k_, r0, re, k0, kc, dst); },
      apre);
}

}  // namespace lowbit
