// Integer-dot matmul: y = x · Wᵀ with W held as 4- or 8-bit codes in lowbit's kernel layout and x
// quantized to int8 per block of input channels at run time (W4A8 / W8A8).
//
//   W[n, k] = d[n, b] · q[n, k] + m[n, b]            b = k / kb (the block of input channel k)
//   x[t, k] ≈ sx[t, b] · xq[t, k],  xq ∈ [−127, 127], sx[t, b] = max|x[t, block b]| / 127
//   y[t, n] = Σ_b sx[t, b] · (d[n, b] · Σ_{k∈b} q·xq + m[n, b] · Σ_{k∈b} xq)
//
// The inner sums are exact int32 (integer products); only the per-block combination is float.
// One scale per block of activations (not one per token): as many scales as the weights have, so
// an outlier channel costs resolution in its own block only (llama.cpp quantizes its activations
// the same way); the cost is one multiply per block, which the weight scale needs anyway.
//
// Kernel layout (made at load by the repack functions; files on disk keep their formats): output
// channels in tiles of 8 (out padded up to a multiple of 8 with zero rows), so one 32-byte vector
// holds 4 bytes of each of 8 columns and every vector lane belongs to one output column — the dot
// products come out as 8 columns per register, with no horizontal sums and no transposes.
//   bits 4: tile T, unit u (8 channels): 32 bytes at (T·in/8 + u)·32; column j's 4 bytes at 4j,
//           byte i = q[8T + j][8u + i] | q[8T + j][8u + 4 + i] << 4 (codes 0…15, unsigned).
//           AVX2: a mask and a shift give channels 8u…8u+3 and 8u+4…8u+7 of all 8 columns; each
//           is a vpmaddubsw against the broadcast 4 activation bytes of those channels.
//   bits 8: tile T, unit u (4 channels): 32 bytes at (T·in/4 + u)·32; column j's 4 bytes at 4j,
//           byte i = q[8T + j][4u + i] as int8 (codes − 128 for unsigned sources).
//   bits 2: tile T, unit u (16 channels): 32 bytes at (T·in/16 + u)·32; column j's 4 bytes at 4j,
//           byte i = q[..][16u + i] | q[..][16u + 4 + i] << 2 | q[..][16u + 8 + i] << 4 | q[..][16u + 12 + i] << 6
//           (codes 0…3). AVX2: four shift-and-masks give channels 16u + 4s … +3 of all 8 columns.
//   bits 3: tile T, unit u (16 channels): 48 bytes at (T·in/16 + u)·48: 32 bytes of the codes' low
//           two bits exactly as the 2-bit layout, then 16 bytes of high bits: the crumb byte at
//           position p = 4j + i (0…31) has its four high bits (bit s: channel 16u + 4s + i) in
//           nibble p / 16 of byte 32 + p % 16 — so AVX2 spreads them to 32 bytes with a mask, a
//           shift and one 128-bit insert.
//   d: (out8/8, in/kb, 8) fp16 scales — the sources' scales are fp16 (GPTQ, GGUF): nothing lost.
//   m: (out8/8, in/kb, 8) f32 offsets (asymmetric), or null: then m = −zero_fixed · d (q4_0: 8,
//      q8_0: 0, symmetric GPTQ: 8; 8-bit sources' 128 is folded into the signed codes).
//   Two-level scales (GGUF k-quants, whose block scales are products fp16 cannot hold: Q4_K d·sc,
//   Q6_K d·scale): with ds set, d holds one fp16 value per super-block of sbk blocks,
//   (out8/8, in/kb/sbk, 8), ds one int8 multiplier per block, (out8/8, in/kb, 8), and a block's scale
//   is f32(d) · ds — ggml's own f32 product, exactly. With ms set, the offset is −f32(mh) · ms in the
//   same arrangement (Q4_K: dmin · min). 2.5 bytes per block and column instead of 8 in f32: the
//   scales of Q4_K cost what they cost in the file (Q4_K read 1.33× the file's bytes as f32 scale +
//   offset; Q6_K 1.52×, now 1.30×, the rest being its 6-bit codes held in 8).
//   perm: null, or the order in which channels were laid out (act-order checkpoints are repacked
//      in processing order so groups become consecutive blocks; x is gathered by perm first).
// kb ∈ {32, 64, 128, 256} (and 16 for 8-bit codes: Q6_K's sub-blocks); in % kb == 0. The 4-bit kernel sums vpmaddubsw pairs in int16 over 32
// channels (each lane: 16 products ≤ 15·127, |Σ| ≤ 30480 < 2¹⁵), then in int32 over the block,
// and converts to float once per block.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

struct QBlockMatrix {
  int bits = 4;  // 2, 3, 4 or 8
  int kb = 128;  // channels per scale block
  size_t out = 0, in = 0;
  const uint8_t* q = nullptr;
  const uint16_t* d = nullptr;  // fp16 scales per block, or per super-block when ds is set
  const float* m = nullptr;
  const int8_t* ds = nullptr;    // two-level scales: per-block multipliers of d
  const uint16_t* mh = nullptr;  // two-level offsets: −f32(mh) · ms
  const int8_t* ms = nullptr;
  int sbk = 1;  // blocks per super-block (1 unless two-level; a power of two)
  float zero_fixed = 0.0f;
  const int32_t* perm = nullptr;
  size_t out8() const { return (out + 7) / 8 * 8; }
  size_t row_bytes() const { return bits == 2 ? in / 4 : bits == 3 ? in / 16 * 6 : bits == 4 ? in / 2 : in; }  // per output row
  size_t q_bytes() const { return out8() * row_bytes(); }
  size_t blocks() const { return in / (size_t)kb; }
  size_t d_count() const { return out8() * blocks(); }                      // per-block arrays: d (one level), m, ds, ms
  size_t super_count() const { return out8() * (blocks() / (size_t)sbk); }  // d and mh when two-level
  bool asym() const { return m || ms; }
};

// Activations quantized per block: xq (rows × in), sx and sum (rows × in/kb), sum = Σ xq.
// zs (rows × in/kb), filled by the driver for the fast kernel: sx·Σxq (asymmetric weights, times m)
// or −zero_fixed·sx·Σxq (fixed zero, times d) — the per-block offset term, once per call.
struct QActs {
  int8_t* xq = nullptr;
  float* sx = nullptr;
  int32_t* sum = nullptr;
  float* zs = nullptr;
};

// Checks of a QBlockMatrix's geometry (bits, kb, in); returns null or the reason.
// Index helpers of the layout: code of output n, channel k (in layout order); scale index.
const char* qblock_check(int bits, int kb, size_t in);
int qblock_code(const QBlockMatrix& w, size_t n, size_t k);
inline size_t qblock_sidx(const QBlockMatrix& w, size_t n, size_t b) { return ((n / 8) * w.blocks() + b) * 8 + n % 8; }
// Super-block indexing of the two-level arrays d and mh, set up once per matrix: at(T, b) is the first
// of tile T's 8 values for block b (a shift, not a division: the kernels' epilogues run once per
// block and tile). sbk is a power of two.
struct QblockSupers {
  size_t per_tile;
  unsigned shift = 0;
  explicit QblockSupers(const QBlockMatrix& w) : per_tile(w.blocks() / (size_t)w.sbk) {
    while ((1u << shift) < (unsigned)w.sbk) shift++;
  }
  size_t at(size_t T, size_t b) const { return (T * per_tile + (b >> shift)) * 8; }
};
// The super-block index of scale index si (si itself when sbk is 1).
inline size_t qblock_supidx(const QBlockMatrix& w, size_t si) {
  const size_t tb = si / 8;
  return QblockSupers(w).at(tb / w.blocks(), tb % w.blocks()) + si % 8;
}
float qblock_scale(const QBlockMatrix& w, size_t si);   // fp16 d[si], or f32(d[super]) · ds[si]
float qblock_offset(const QBlockMatrix& w, size_t si);  // m[si], −f32(mh[super]) · ms[si], or −zero_fixed · scale

// x (rows × in) → QActs, gathering by perm when given. Round half to even of x · (127 / max|x|).
void quantize_acts_ref(const float* x, size_t rows, size_t in, int kb, const int32_t* perm, const QActs& a);
void quantize_acts_avx2(const float* x, size_t rows, size_t in, int kb, const int32_t* perm, const QActs& a);
void quantize_acts_neon(const float* x, size_t rows, size_t in, int kb, const int32_t* perm, const QActs& a);
// ISA-dispatched (mode MODE_REF: the reference).
void quantize_acts(const float* x, size_t rows, size_t in, int kb, const int32_t* perm, const QActs& a, int mode);

// y (rows × ldy, first `out` columns) from quantized activations. The reference sums each block's
// integer dot exactly and combines the blocks in double.
void qdot_gemm_ref(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy);
void qdot_gemm_generic_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1);
void qdot_gemm_avx2_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1);  // needs a.zs
// AVX-512 VNNI (vpdpbusd, two layout tiles per zmm); ISA_AVX512 on CPUs with AVX512_VNNI; needs a.zs.
void qdot_gemm_avx512vnni_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1);
// AArch64: plain NEON (widening multiplies) and SDOT (ARMv8.2 dot product); both need a.zs.
void qdot_gemm_neon_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1);
void qdot_gemm_neon_dot_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1);

// Driver: quantizes x (into `scratch`-owned buffers), then multiplies on the thread pool.
// mode MODE_REF: the references.
void qdot_linear(const QBlockMatrix& w, const float* x, size_t rows, float* y, size_t ldy, int mode);
// Several matrices applied to the same x (q/k/v, gate/up): one quantization of x, one parallel
// region over all their output tiles. The matrices must agree on in, kb and perm
// (qdot_can_share_acts).
struct QdotPart {
  const QBlockMatrix* w;
  float* y;
  size_t ldy;
};
bool qdot_can_share_acts(const QBlockMatrix& a, const QBlockMatrix& b);
void qdot_linear_multi(const QdotPart* parts, size_t count, const float* x, size_t rows, int mode);

// ---- repacking into the kernel layout (at load) --------------------------------------------
// From GPTQ (qweight (in·bits/32, out) int32, any of 2/3/4/8 bits, v1/v2 handled by the caller:
// zeros are true zeros), scales (G, out) f32 (fp16 values), zeros (G, out) u8, g_idx (in).
// Requirements: every group has the same size gs, either consecutive runs or (act-order) any
// order; in % 32 == 0; gs % 32 == 0 or G == 1. 2- and 3-bit codes get layouts of their own where
// the CPU has kernels for them (see qblock_plan_gptq).
// Output sizes: q q_bytes(), d and m d_count(), perm in (filled only for act-order; the return
// tells); q, d and m must be zero-filled (padding rows). Returns the chosen kb (> 0) or 0 with `why` set when the layout can't hold it.
struct GptqSource {
  int bits;
  size_t in, out, groups;
  const int32_t* qweight;
  const float* scales;
  const uint8_t* zeros;
  const int32_t* g_idx;
};
// 2- and 3-bit codes keep layouts of their own (every fast variant has kernels for them: AVX2,
// AVX-512 VNNI, NEON with and without SDOT), a quarter / a half fewer bytes than nibbles.
int qblock_plan_gptq(const GptqSource& s, int* out_bits, bool* needs_perm, const char** why);
void qblock_repack_gptq(const GptqSource& s, int bits, int kb, uint8_t* q, uint16_t* d, float* m, int32_t* perm);

// From ggml blocks of 32 (Q4_0: 18 bytes {f16 d, 16 B nibbles}, Q8_0: 34 bytes {f16 d, 32 × i8},
// Q4_1: 20 bytes {f16 d, f16 m, 16 B nibbles}; rows of `in` channels, in % 32 == 0, kb = 32, scales
// to d) and super-blocks of 256 (Q4_K: 144 bytes, 8 sub-blocks of 32 with 6-bit scales and mins →
// 4-bit codes, kb = 32, two-level: d = d, ds = sc, mh = dmin, ms = min (sbk 8); Q6_K: 210 bytes,
// 16 sub-blocks of 16 with int8 scales → 8-bit codes q − 32, kb = 16, d = d, ds = scale (sbk 16);
// in % 256 == 0) — the values ggml's own dequantization computes, exactly. Outputs zero-filled as
// above; d holds super_count() values for the k-quants.
enum GgmlQType { GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q8_0 = 8, GGML_Q4_K = 12, GGML_Q6_K = 14 };
void qblock_repack_ggml(int type, const uint8_t* src, size_t out, size_t in, uint8_t* q, uint16_t* d, float* m, int8_t* ds = nullptr,
                        uint16_t* mh = nullptr, int8_t* ms = nullptr);
// Geometry of a ggml type in the layout: bytes per ggml block, values per ggml block, bits, kb
// (0 bytes: not supported).
// (sbk > 1: two-level scales, with offsets when has_ms.)
struct GgmlQInfo {
  size_t block_bytes, block_values;
  int bits, kb;
  bool has_m;
  int sbk;
  bool has_ms;
  float zero_fixed;
};
GgmlQInfo qblock_ggml_info(int type);

}  // namespace lowbit
