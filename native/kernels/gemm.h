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
#include <cstdint>

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

// y = x · wᵀ with w in f16 or bf16 (wdt: DTYPE_F16 / DTYPE_BF16 of kernels/convert.h), (n, k)
// row-major, read where it lies (a memory-mapped checkpoint): the runtime keeps 16-bit weights
// 16-bit (half the memory of f32, and half the bytes a decode step streams). A GEMV (m == 1, AVX2
// and AVX-512) converts in registers (gemv_w16_avx2); otherwise tiles of whole weight panels are
// converted to f32 (exactly: every f16/bf16 value is an f32) into a per-chunk buffer
// and multiplied by the same f32 kernel, on the same path (GEMV, small batch, blocked), as
// gemm() on the converted matrix, so the result is bit-identical to converting w first.
// Reference: each tile converted by convert_ref, then gemm_ref_ld.
void gemm_w16(const float* x, size_t m, size_t k, const uint16_t* w, int wdt, size_t n, float* y, int mode, size_t ldy = 0);

// The AVX2 GEMV (m == 1) reading f16/bf16 weights as stored, converted in registers: the f32
// GEMV's arithmetic, so bit-identical to it on the converted weights (y written, not accumulated).
void gemv_w16_avx2(const float* x, size_t k, const uint16_t* w, int wdt, float* y, size_t n0, size_t n1);

// bf16 compute (the calibration forward's option, issue 18): y = x̃ · w̃ᵀ where x̃, w̃ are x and w
// rounded to bf16 (round to nearest even), products exact (8 × 8 significand bits fit f32) and
// sums in f32. AVX-512 BF16 (vdpbf16ps, kernels/cpu/x86/gemm_bf16_avx512.cpp) where the CPU has
// it and the active ISA is AVX2 or AVX-512; elsewhere (and under LOWBIT_ISA=generic) the generic
// path: x̃ and w̃ formed exactly, then the f32 kernels (gemm_w16). Either is within the f32
// summation bound of the reference: the rounded inputs' products summed in double.
// Its error against the f32 product is the bf16 input rounding (at most 2⁻⁸ relative per operand: 8 significand bits).
void gemm_bf16(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, int mode, size_t ldy = 0);
// The AVX-512 BF16 kernel on one packed panel of ≤ 32 columns (layout: see its source).
void gemm_bf16_panel_avx512bf16(const uint16_t* xb, size_t m, size_t kp, const uint16_t* panel, size_t cols, float* y, size_t ldy);

}  // namespace lowbit
