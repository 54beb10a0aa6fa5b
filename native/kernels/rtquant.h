// Run-time quantizers: the quantized KV cache, activation quantization (fake or for integer kernels),
// and the orthogonal (Hadamard) rotations applied online.
//
// KV cache rows. A row of n values (one token's K or V, or the part of it one call encodes) is cut
// into groups of g consecutive values (g divides n). Each group stores b-bit codes c (b = 2, 4, 8)
// and two fp16 numbers, a scale s and an offset z, and decodes as  x̂ = s · c + z:
//   asymmetric: z = f16(min), s = f16((max − min) / (2^b − 1)), c = clamp(round((x − z) / s), 0, 2^b − 1)
//   symmetric:  s = f16(max|x| / (2^(b−1) − 1)), z = −2^(b−1) · s (exact in fp16),
//               c = clamp(round(x / s), −(2^(b−1) − 1), 2^(b−1) − 1) + 2^(b−1)
// (s == 0: every code 0, the group decodes as z). round() is round-half-to-even (nearbyint).
// Codes are packed little-endian within bytes: value i of a row sits at bits (i·b) % 8 of byte i·b / 8
// (4-bit: even value in the low nibble). Scales/offsets: (groups, 2) fp16 as {s, z}.
// Per channel (KIVI's keys): a block of T tokens × n channels; each channel c gets its own {s, z} over
// the block's T values; codes are stored per token row exactly as above.
//
// The attention over such a cache works on the codes, never on decoded rows (kernels/cpu/rtquant_generic.cpp):
//   q·k̂ = Σ_j s_j · (Σ_{i ∈ group j} q_i c_i) + z_j · Σ_{i ∈ group j} q_i        (kv_dot_groups)
//   o += a · v̂  =  o_i += (a · s_j) · c_i, and Σ_j a · z_j is added once per group  (kv_axpy_groups)
// The reference (kernels/ref/rtquant_ref.cpp, mode MODE_REF) decodes each row to floats and uses
// plain loops.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace lowbit {

// ---- KV cache rows ----
// Bytes of codes for n values of b bits (n · b a multiple of 8 is required by the callers).
inline size_t kv_code_bytes(size_t n, int bits) { return n * (size_t)bits / 8; }
// Quantize `rows` rows of n values (row stride n), groups of g; codes (rows, n·b/8), sz (rows, n/g, 2).
void kv_quantize_rows(const float* x, size_t rows, size_t n, int bits, size_t g, bool sym, uint8_t* codes, uint16_t* sz);
// Per channel: x is (T, n) (row stride ldx); each channel's T values get one {s, z} (sz: (n, 2));
// codes (T, n·b/8).
void kv_quantize_channels(const float* x, size_t T, size_t n, size_t ldx, int bits, bool sym, uint8_t* codes, uint16_t* sz);
// Decode one row of n values: per group (sz_stride 2 · per-group) or per channel (per_channel: sz is (n, 2)).
void kv_dequantize_row(const uint8_t* codes, const uint16_t* sz, size_t n, int bits, size_t g, bool per_channel, float* out);
// The code of value i of a row.
inline int kv_code(const uint8_t* codes, size_t i, int bits) {
  const size_t bit = i * (size_t)bits;
  return (codes[bit / 8] >> (bit % 8)) & ((1 << bits) - 1);
}

// Fast primitives on codes (ISA-dispatched; mode MODE_REF: plain loops).
//   dot: out[j] = Σ_{i in group j} q[i] · c[i] for the n / g groups of the row.
void kv_dot_groups(const float* q, const uint8_t* codes, size_t n, int bits, size_t g, float* out, int mode);
//   axpy: y[i] += w[i] · c[i] (w: per value weights, e.g. a · s_group expanded, or a · s_channel).
void kv_axpy_codes(const float* w, const uint8_t* codes, size_t n, int bits, float* y, int mode);
//   axpy with one weight per group: y[i] += w[i / g] · c[i].
void kv_axpy_groups(const float* w, const uint8_t* codes, size_t n, int bits, size_t g, float* y, int mode);

void kv_dot_groups_ref(const float* q, const uint8_t* codes, size_t n, int bits, size_t g, float* out);
void kv_axpy_codes_ref(const float* w, const uint8_t* codes, size_t n, int bits, float* y);
void kv_axpy_groups_ref(const float* w, const uint8_t* codes, size_t n, int bits, size_t g, float* y);

// ---- Activations ----
// Fake quantization (quantize, then decode in place) of `rows` rows of n values, symmetric, b bits
// (2…8): per row (scale = max|row| / (2^(b−1) − 1)) when `scale` is null, else with the one given
// scale (static, per tensor). Codes clamp to ±(2^(b−1) − 1). Returns nothing; NaN stays NaN.
void act_fake_quant(float* x, size_t rows, size_t n, int bits, const float* scale, int mode);
void act_fake_quant_ref(float* x, size_t rows, size_t n, int bits, const float* scale);

// ---- Orthogonal rotations ----
// Q = H · D on vectors of length n: D a diagonal of random signs (seeded), H orthonormal:
//   n = 2^k · m. H = H_m ⊗ H_{2^k} / sqrt(n) where H_{2^k} is Sylvester's Hadamard matrix and H_m
//   (m > 1) a Hadamard matrix of order m when lowbit constructs one (Paley I: m − 1 a prime ≡ 3 mod 4;
//   Paley II: m / 2 − 1 a prime ≡ 1 mod 4; Goethals–Seidel for 172 = 4 · 43, from four sequences
//   lowbit's own search found — so 11008 = 172 · 2^6 and 5632 = 44 · 2^7 are Hadamard), else a random
//   orthogonal m × m matrix (seeded Gaussian, Gram–Schmidt in double) — the Kronecker product is
//   orthogonal either way, so every rotation is
//   exact in full precision. The vector is read as an (m, 2^k) matrix X (row-major): H X = H_m X H_{2^k}.
struct Rotation {
  size_t n = 0, p = 1, m = 1;  // n = m · p, p a power of two
  bool hadamard_m = true;      // H_m is a Hadamard matrix (else random orthogonal)
  std::vector<float> small;    // (m, m) orthonormal, row-major (empty when m == 1)
  std::vector<float> signs;    // (n) ±1
};
// Builds Q for length n with the given seed (seed 0: no sign flips, D = I).
Rotation make_rotation(size_t n, uint64_t seed);
// y = Q x for `rows` contiguous vectors of length n (in place). mode MODE_REF: the explicit matrix.
void rotate_rows(const Rotation& r, float* x, size_t rows, int mode);
void rotate_rows_ref(const Rotation& r, float* x, size_t rows);
// The explicit n × n matrix of Q (row-major), for the reference and tests.
std::vector<double> rotation_matrix(const Rotation& r);

}  // namespace lowbit
