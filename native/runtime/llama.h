// A small Llama-family transformer runtime (fp32 compute; f32 or 16-bit weights).
//
//   x = embed[token]; per layer:  h = x + Wo·attn(rope(Wq·n1(x)), rope(Wk·n1(x)), Wv·n1(x))
//                                 x = h + W2·(silu(W1·n2(h)) ⊙ W3·n2(h))
//   logits = Wcls · norm(x)
// n(x) = w ⊙ x / sqrt(mean(x²) + eps) (RMSNorm); grouped-query attention with a causal mask;
// rotary embeddings either on adjacent pairs (2i, 2i+1) (llama2.c, GGUF) or on half-split pairs
// (i, i + hd/2) (Hugging Face). Weights are (out, in) row-major f32 arrays owned by the caller
// (JS typed arrays kept alive by the addon); activations are (tokens, features) row-major.
//
// Linear layers are f32 (gemm), 16-bit f16/bf16 as stored (gemm_w16: f32 compute on exactly
// converted tiles, half the weight memory), GPTQ 4-bit with f32 activations (kernels/qgemm.h), or in the
// integer-dot layout with int8 activations per block (kernels/qdot.h: W4A8 / W8A8).
// Seams for what comes next (not implemented here): every linear layer goes through
// Llama::linear(); every K/V write goes
// through Llama::kv_write(), where a quantized KV cache can sit; ForwardState keeps each layer's
// inputs when `keep_activations` is set, for a backward pass; an optional Observer sees the input
// of every linear layer (calibration: Hessians, mean/max |x|).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/qdot.h"
#include "kernels/rtquant.h"
#include "runtime/kv_cache.h"

namespace lowbit {

struct TaskContext;

enum RopeStyle { ROPE_ADJACENT = 0, ROPE_HALF = 1 };
enum LinearKind { LIN_Q = 0, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT };

// Inputs of a layer's linear modules, for activation quantization.
enum ActInput { ACT_QKV = 0, ACT_O, ACT_GATE_UP, ACT_DOWN, ACT_INPUTS };

struct LlamaConfig {
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab = 0, seq_len = 0, head_dim = 0;
  float rms_eps = 1e-5f, rope_theta = 10000.0f;
  int rope_style = ROPE_ADJACENT;
  // RoPE frequencies (head_dim / 2) when the model scales them (HF rope_scaling linear / llama3,
  // GGUF rope_freqs); empty: 1 / rope_theta^(2i / head_dim), as llama2.c computes them.
  std::vector<float> inv_freq;
  // Linear layers with f32 weights multiply bf16-rounded operands with f32 sums (gemm_bf16): the
  // calibration forward's option (twice the multiply-adds per instruction on AVX-512 BF16).
  bool bf16_compute = false;
  KvQuantConfig kv;
  // Activation quantization per layer and input (ACT_INPUTS per layer: q/k/v, o, gate/up, down):
  // act_bits 0 (none) or 2…8, symmetric; act_scale 0: dynamic per token, else that static scale.
  std::vector<int> act_bits;
  std::vector<float> act_scale;
  // Online rotation of down_proj's input (QuaRot's R4): the checkpoint's down_proj weights were
  // multiplied by Qᵀ offline; the runtime applies Q = make_rotation(hidden_dim, seed) to the input.
  bool rotate_down = false;
  uint64_t rotate_down_seed = 0;
};

// A linear layer kept in GPTQ 4-bit form (see kernels/qgemm.h): multiplied straight from the words.
struct PackedLinear {
  const int32_t* qweight = nullptr;  // (in/8, out)
  const float* scales = nullptr;     // (groups, out)
  const uint8_t* zeros = nullptr;    // (groups, out), true zeros
  const int32_t* g_idx = nullptr;    // (in)
  size_t groups = 0;
};

struct LayerWeights {
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float* w[LIN_COUNT] = {};  // (out, in) each, or null when w16 / packed[kind] / qblock[kind] is set
  // (out, in) in f16 or bf16 (LlamaWeights::dtype16), read where they lie (kernels/gemm.h gemm_w16)
  const uint16_t* w16[LIN_COUNT] = {};
  PackedLinear packed[LIN_COUNT];
  QBlockMatrix qblock[LIN_COUNT];     // integer-dot layout (int8 activations) when .q is set
  const float* bias[LIN_COUNT] = {};  // q/k/v biases (Qwen2) or null
};

struct LlamaWeights {
  const float* embed = nullptr;  // (vocab, dim), or null when embed16 is set
  // 16-bit weights (any of embed16, classifier16, LayerWeights::w16) are all of this dtype
  // (DTYPE_F16 or DTYPE_BF16, kernels/convert.h): the checkpoint's own, kept 16-bit
  int dtype16 = 0;
  const uint16_t* embed16 = nullptr;
  const uint16_t* classifier16 = nullptr;
  std::vector<LayerWeights> layers;
  const float* final_norm = nullptr;
  const float* classifier = nullptr;  // (vocab, dim); == embed when tied
  QBlockMatrix classifier_q;          // the head in the integer-dot layout when .q is set
};

// Sees each distinct linear-layer input (tokens × in_features) during a forward pass: kind LIN_Q
// for the input shared by q/k/v, LIN_O, LIN_GATE for the input shared by gate/up, LIN_DOWN.
struct Observer {
  virtual ~Observer() = default;
  virtual void observe(int layer, int kind, const float* x, size_t tokens, size_t in_features) = 0;
};

class Llama {
 public:
  Llama(const LlamaConfig& c, const LlamaWeights& w);
  const LlamaConfig& config() const { return cfg_; }

  // Runs `n` tokens at positions pos0 … pos0 + n − 1 (the KV cache must hold 0 … pos0 − 1).
  // Writes logits (rows × vocab) for the last `logit_rows` positions (0: none).
  void forward(const int32_t* tokens, size_t n, size_t pos0, float* logits, size_t logit_rows, int mode, TaskContext* ctx, Observer* obs = nullptr);
  size_t kv_capacity() const { return (size_t)cfg_.seq_len; }
  // Bytes the KV cache holds per position (all layers, K and V, scales included), and the fixed
  // full-precision part (window / pending per-channel block) on top of it.
  double kv_bytes_per_token() const;
  size_t kv_fixed_bytes() const;
  // One decoder layer on hidden states x (n × dim, in place) at positions pos0 …, writing that
  // layer's KV cache: the unit the sequential calibration driver (and GPTQ) runs block by block.
  void block(int layer, float* x, size_t n, size_t pos0, int mode, Observer* obs);

 private:
  void linear(int kind, int layer, const float* x, size_t n, size_t in, size_t out, float* y, int mode, Observer* obs);
  // Several linear layers on the same input (q/k/v, gate/up): one parallel region (and one
  // activation quantization) when their weights allow, else one linear() after another.
  struct LinOut {
    int kind;
    size_t out;
    float* y;
  };
  void linears(int layer, const float* x, size_t n, size_t in, const LinOut* outs, size_t count, int mode, Observer* obs);
  void linear_raw(int kind, int layer, const float* x, size_t n, size_t in, size_t out, float* y, int mode);
  // The input of a linear module as it is multiplied: x itself, or its fake-quantized copy in buf.
  const float* act_input(int layer, int input, int first_kind, const float* x, size_t n, size_t in, std::vector<float>& buf, int mode) const;
  void add_bias(int kind, int layer, size_t n, size_t out, float* y) const;
  void kv_write(int layer, size_t pos, const float* k, const float* v);
  void rope(float* q, float* k, size_t n, size_t pos0) const;
  void attention(int layer, const float* q, size_t n, size_t pos0, float* out, int mode) const;
  void attention_gemm(int layer, const float* q, size_t n, size_t pos0, float* out) const;

  LlamaConfig cfg_;
  LlamaWeights w_;
  std::vector<float> kcache_, vcache_;  // (layers, seq_len, kv_dim)
  std::vector<float> inv_freq_;         // head_dim / 2
  std::unique_ptr<KvCache> kvq_;        // the quantized cache (cfg_.kv.bits > 0)
  Rotation rot_head_, rot_down_;
};

}  // namespace lowbit
