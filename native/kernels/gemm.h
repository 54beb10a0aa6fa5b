// y = x · wᵀ  (+ y when accumulate): the product every linear layer of the runtime computes.
//   x: (m, k) row-major activations (tokens × in_features)
//   w: (n, k) row-major weights     (out_features × in_features), lowbit's one weight layout
//   y: (m, n) row-major outputs
// Fast paths: AVX2/FMA (6×16 tile), AVX-512 (12×32 tile, opt-in until measured on hardware) and NEON
// (8×8 tile, kernels/cpu/arm/gemm_neon.cpp). AVX2: panels of w packed 16 rows wide and blocks of x packed 6 rows high feed a
// 6×16 register tile (12 ymm accumulators); k is blocked by 256 so a packed w block stays in L2.
// m == 1 (decoding) is a GEMV: memory-bound, 4 weight rows per step straight from w.
// Reference: a triple loop accumulating in double.
#pragma once
#include <cstddef>

namespace lowbit {

struct TaskContext;

void gemm_ref(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, bool accumulate);
void gemm_generic(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, bool accumulate);
void gemm_avx2(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, bool accumulate);

// Dispatching, multi-threaded driver. mode: MODE_FAST or MODE_REF. ldy: row stride of y
// (0 = n), so y can be a sub-block of a larger matrix.
void gemm(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, bool accumulate, int mode, size_t ldy = 0);

// Several weight matrices applied to the same x (q/k/v, gate/up), in one parallel region over all
// their output columns (each part: w (n, k), y with row stride ldy); x packed once for all.
struct GemmPart {
  const float* w;
  size_t n;
  float* y;
  size_t ldy;
};
void gemm_multi(const GemmPart* parts, size_t count, const float* x, size_t m, size_t k, int mode);

// The same product on a range of output columns [n0, n1) only (the driver splits n across threads).
// apre: x already packed for the whole call (gemm_avx2_pack_a over tiles [0, gemm_avx2_a_tiles(m)),
// into gemm_avx2_packed_a_floats(m, k) floats, 32-byte aligned), or null to pack per block.
void gemm_avx2_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool accumulate, size_t n0, size_t n1,
                     const float* apre = nullptr);
size_t gemm_avx2_packed_a_floats(size_t m, size_t k);
size_t gemm_avx2_a_tiles(size_t m);
void gemm_avx2_pack_a(const float* x, size_t m, size_t k, float* apre, size_t t0, size_t t1);
// AVX-512 (12×32 tile, kernels/cpu/x86/gemm_avx512.cpp): the blocked path only, with the same
// pre-packing contract (x packed for MR = 12). m == 1 goes to the AVX2 GEMV.
void gemm_avx512_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool accumulate, size_t n0, size_t n1,
                       const float* apre = nullptr);
size_t gemm_avx512_packed_a_floats(size_t m, size_t k);
size_t gemm_avx512_a_tiles(size_t m);
void gemm_avx512_pack_a(const float* x, size_t m, size_t k, float* apre, size_t t0, size_t t1);
void gemm_neon_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool accumulate, size_t n0, size_t n1);
void gemm_generic_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool accumulate, size_t n0, size_t n1);
// Small batches on AVX2 (GEMM_SMALL_M_MIN ≤ m ≤ GEMM_SMALL_M_MAX): x packed once per call
// (gemm_small_pack_x_avx2 into gemm_small_packed_floats(m, k) floats, 32-byte aligned), w read in
// place; see gemm_avx2.cpp. The bounds are measured: below 9 rows the product is memory-bound
// and the blocked path is as fast; at 96 rows the blocked path has caught up.
constexpr size_t GEMM_SMALL_M_MIN = 9, GEMM_SMALL_M_MAX = 64;
inline size_t gemm_small_packed_floats(size_t m, size_t k) { return (m + 15) / 16 * 16 * k; }
void gemm_small_pack_x_avx2(const float* x, size_t m, size_t k, float* dst);
void gemm_small_avx2_range(const float* xp, size_t m, size_t k, const float* w, float* y, size_t ldy, bool accumulate, size_t n0, size_t n1);
// Single-threaded, ISA-dispatched (for use inside an already-parallel region: the pool does not nest).
void gemm_serial(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, bool accumulate);
// Σ a[i]·b[i] in f32, ISA-dispatched (several vector accumulators: the plain loop is one serial
// chain of dependent adds, ~4 cycles per element — decode attention's q·k at long contexts).
float dot_f32(const float* a, const float* b, size_t n);
float dot_f32_avx2(const float* a, const float* b, size_t n);
float dot_f32_neon(const float* a, const float* b, size_t n);
float dot_f32_generic(const float* a, const float* b, size_t n);
void gemm_ref_ld(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool accumulate);

}  // namespace lowbit
