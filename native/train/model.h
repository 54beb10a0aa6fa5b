// A Llama that trains: forward, loss and backward over a batch of B sequences of T tokens, with
// the parameters and their gradients in caller-owned f32 arrays (JS typed arrays).
//
// Memory is bounded by one block's activations: the forward keeps only each block's input (the
// residual stream, (L + 1) × B·T·dim floats) and the logits; the backward runs each block's
// forward again from its saved input (activation recomputation, llm.c / gradient checkpointing)
// and then its backward. Gradients are accumulated (+=) into the gradient arrays, scaled by
// `scale` (1 / tokens of the optimizer step, for a mean), so micro-batches add up.
// Deterministic for a given thread count (train/ops.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/quant.h"

namespace lowbit {

struct TaskContext;

namespace train {

struct TrainShape {
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, vocab = 0;
  float rms_eps = 1e-5f;
  int rope_style = 0;           // 0 adjacent pairs, 1 halves (runtime/llama.h RopeStyle)
  std::vector<float> inv_freq;  // head_dim / 2
};

enum TrainLinear { TL_Q = 0, TL_K, TL_V, TL_O, TL_GATE, TL_UP, TL_DOWN, TL_COUNT };

struct TrainLayer {
  float* attn_norm = nullptr;
  float* ffn_norm = nullptr;
  float* w[TL_COUNT] = {};  // (out, in)
  float* bias[3] = {};      // q, k, v biases or null
};

// Quantization-aware training: what the forward fake-quantizes, with a straight-through estimator
// in the backward (the gradient of a fake-quantized value passes to its input unchanged; the weight
// gradient is taken against the quantized input). The quantizers are the runtime's own, so a model
// trained this way runs in lowbit's runtime as it was trained:
//   weights      every linear of every block through quantize_tensor (lowbit's RTN: the spec's
//                bits, groups, symmetry, fp16 scales) — the dequantized values a checkpoint quantized
//                with the same quantizer holds;
//   activations  each linear input per token, symmetric (act_fake_quant, runtime/llama.cpp act_input);
//   kv           K (after RoPE) and V per token in groups (kv_quantize_rows, the KV cache's encoder).
// LLM-QAT additionally zeroes the gradient where a quantizer's input lies outside [−2, 2]; lowbit
// does not (the MinMax ranges cover every value, so nothing is clipped to zero).
struct TrainQuant {
  bool weights = false;
  QuantSpec w;
  // Which linears the weight quantizer applies to (n_layers × 7, q k v o gate up down); empty: all
  // (a checkpoint format may keep a module it cannot hold in float, and so does training)
  std::vector<uint8_t> w_mask;
  int act_bits = 0;  // 0: none
  int kv_bits = 0;   // 0: none; 2, 4 or 8
  int kv_group = 0;  // values per group along a token's K or V (divides head_dim)
  bool kv_sym = false;
};

struct TrainParams {
  float* embed = nullptr;       // (vocab, dim)
  float* final_norm = nullptr;  // (dim)
  float* head = nullptr;        // (vocab, dim); null: tied to embed
  std::vector<TrainLayer> layers;
};

// What one call computes. targets (B·T; < 0: ignored) gives cross-entropy; teacher (B·T × vocab
// logits) gives KL(teacher ‖ model). Returns the summed loss (not scaled).
struct TrainBatch {
  const int32_t* tokens = nullptr;
  size_t batch = 0, seq_len = 0;
  const int32_t* targets = nullptr;
  const float* teacher = nullptr;
  float scale = 1.0f;
  bool backward = true;
  float* logits_out = nullptr;  // optional copy of the logits (B·T × vocab)
};

class TrainModel {
 public:
  TrainModel(const TrainShape& s, const TrainParams& params, const TrainParams& grads, const TrainQuant& quant = TrainQuant());
  double run(const TrainBatch& b, int mode, TaskContext* ctx);
  const TrainShape& shape() const { return s_; }

 private:
  struct Block;  // one block's saved internals
  void block_forward(int l, const float* x, float* y, Block& c, size_t B, size_t T, int mode);
  void block_backward(int l, const float* x, const float* dy, float* dx, Block& c, size_t B, size_t T, int mode);

  // The weight a linear computes with: its parameters, or their fake-quantized copy (into buf).
  const float* weight(int l, int kind, std::vector<float>& buf, int mode) const;

  TrainShape s_;
  TrainParams p_, g_;
  TrainQuant quant_;
  std::vector<int32_t> pos_;
};

}  // namespace train
}  // namespace lowbit
