// The quantized KV cache of the Llama runtime: K and V of every layer and position stored as b-bit
// codes with fp16 {scale, offset} groups (kernels/rtquant.h holds the row format), and the attention
// that reads it.
//
// Layout per layer: codes (seq_len, kv_dim · bits / 8) for K and for V; {s, z} per group of a token
// row (seq_len, kv_dim / group, 2), or for per-channel K (KIVI) per block of `block` tokens and
// channel (seq_len / block, kv_dim, 2); an f32 ring of the last max(window, block) positions written.
//
// A query at position `last` reads position p
//   K in f32 when p > last − window, or (per-channel K) when p's block is not complete at `last`;
//   V in f32 when p > last − window; everything else from the codes.
// The f32 values come from the call's own k/v (p ≥ pos0) or the ring (earlier positions), so the
// result does not depend on how a sequence is cut into calls; with a ring, a layer is written in order
// (pos0 = 0 or the end of what was written). Decoding (and the reference mode) works on the codes
// directly (kv_dot_groups / kv_axpy_groups: q·k̂ = Σ_j s_j Σ q_i c_i + z_j Σ q_i); longer calls decode
// K̂ and V̂ once per kv head and use the GEMM kernel, then add back the f32 terms each query reads.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/softmax.h"

namespace lowbit {

// A quantized KV cache (kernels/rtquant.h holds the row format). bits 0: the f32 cache.
struct KvQuantConfig {
  int bits = 0;                   // 0, 2, 4 or 8
  int group = 0;                  // values per {s, z} along the head dimension (0: the whole head)
  bool sym = false;               // symmetric codes (else asymmetric, min and scale)
  bool k_channel = false;         // K per channel over blocks of `block` tokens (KIVI); else per token like V
  int block = 32;                 // tokens per per-channel block
  int window = 0;                 // each query reads the `window` positions before it (itself included) in f32
  bool rotate = false;            // Hadamard rotation of Q and K per head after RoPE (exact: q·k unchanged)
  uint64_t rotate_seed = 0x6b76;  // the sign pattern of that rotation
};

class KvCache {
 public:
  KvCache(int layers, int seq_len, int n_heads, int n_kv_heads, int head_dim, const KvQuantConfig& kv);
  // Writes k, v (n × kv_dim) of `layer` at positions pos0 … pos0 + n − 1 and computes the causal
  // attention of q (n × n_heads · head_dim) over positions 0 … pos0 + n − 1 into out (same shape as q).
  void attend(int layer, const float* q, const float* k, const float* v, size_t n, size_t pos0, float* out, int mode);
  // Bytes held per position (all layers, K and V, scales included); the fixed f32 ring on top of it.
  double bytes_per_token() const;
  size_t fixed_bytes() const;

 private:
  KvQuantConfig kv_;
  int layers_, seq_len_, n_heads_, n_kv_heads_, head_dim_;
  size_t group_ = 0, ring_ = 0;
  std::vector<uint8_t> kq_, vq_;
  std::vector<uint16_t> ksz_, vsz_;
  std::vector<float> kring_, vring_;
  std::vector<size_t> kv_end_;  // per layer: positions written
};

}  // namespace lowbit
