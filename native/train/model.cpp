// TrainModel (see model.h): the Llama forward of runtime/llama.cpp, op by op from train/ops.h,
// and its backward.
#include "train/model.h"

#include <cstring>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/convert.h"
#include "kernels/rtquant.h"
#include "train/ops.h"

namespace lowbit {
namespace train {

struct TrainModel::Block {
  // xn1, att, xn2, act hold the linears' inputs as multiplied (fake-quantized when activations are)
  std::vector<float> xn1, r1, q, k, v, probs, att, h, xn2, r2, a, u, act;
  std::vector<float> w[TL_COUNT];  // fake-quantized weights
};

namespace {
// Fake-quantize `rows` tokens of n values per token in groups of g, as the KV cache stores them.
void kv_fake_quant(float* x, size_t rows, size_t n, int bits, size_t g, bool sym) {
  std::vector<uint8_t> codes(kv_code_bytes(n, bits));
  std::vector<uint16_t> sz(n / g * 2);
  for (size_t t = 0; t < rows; t++) {
    kv_quantize_rows(x + t * n, 1, n, bits, g, sym, codes.data(), sz.data());
    kv_dequantize_row(codes.data(), sz.data(), n, bits, g, false, x + t * n);
  }
}
}  // namespace

const float* TrainModel::weight(int l, int kind, std::vector<float>& buf, int mode) const {
  const float* w = p_.layers[l].w[kind];
  if (!quant_.weights || (!quant_.w_mask.empty() && !quant_.w_mask[(size_t)l * TL_COUNT + kind])) {
    buf.clear();  // (empty: the block computes with the parameters themselves)
    return w;
  }
  const size_t d = s_.dim, hid = s_.hidden_dim, qd = (size_t)s_.n_heads * s_.head_dim, kvd = (size_t)s_.n_kv_heads * s_.head_dim;
  const size_t rows[TL_COUNT] = {qd, kvd, kvd, d, hid, hid, d}, cols[TL_COUNT] = {d, d, d, qd, d, d, hid};
  const size_t r = rows[kind], c = cols[kind], G = (c + (size_t)quant_.w.group_size - 1) / (size_t)quant_.w.group_size;
  buf.resize(r * c);
  std::vector<uint8_t> codes(r * c), zeros(r * G);
  std::vector<float> scales(r * G);
  QuantStats st;
  quantize_tensor(w, DTYPE_F32, r, c, quant_.w, codes.data(), scales.data(), zeros.data(), buf.data(), mode, &st, nullptr);
  return buf.data();
}

TrainModel::TrainModel(const TrainShape& s, const TrainParams& params, const TrainParams& grads, const TrainQuant& quant)
    : s_(s), p_(params), g_(grads), quant_(quant) {
  LOWBIT_CHECK(s.dim > 0 && s.hidden_dim > 0 && s.n_layers > 0 && s.n_heads > 0 && s.n_kv_heads > 0 && s.head_dim > 0 && s.vocab > 0, "train: shape");
  LOWBIT_CHECK(s.n_heads % s.n_kv_heads == 0 && s.head_dim % 2 == 0, "train: heads");
  LOWBIT_CHECK(s.inv_freq.size() == (size_t)s.head_dim / 2, "train: inv_freq");
  LOWBIT_CHECK((int)params.layers.size() == s.n_layers && (int)grads.layers.size() == s.n_layers, "train: layers");
  LOWBIT_CHECK((params.head == nullptr) == (grads.head == nullptr), "train: head and its gradient");
  LOWBIT_CHECK(!quant.weights || (quant.w.bits >= 2 && quant.w.bits <= 8 && quant.w.group_size >= 1), "train: weight quantizer");
  LOWBIT_CHECK(quant.w_mask.empty() || quant.w_mask.size() == (size_t)s.n_layers * TL_COUNT, "train: weight mask");
  LOWBIT_CHECK(quant.act_bits == 0 || (quant.act_bits >= 2 && quant.act_bits <= 8), "train: activation bits");
  LOWBIT_CHECK(quant.kv_bits == 0 || ((quant.kv_bits == 2 || quant.kv_bits == 4 || quant.kv_bits == 8) && quant.kv_group > 0 &&
                                      s.head_dim % quant.kv_group == 0 && quant.kv_group * quant.kv_bits % 8 == 0),
               "train: KV quantizer");
}

void TrainModel::block_forward(int l, const float* x, float* y, Block& c, size_t B, size_t T, int mode) {
  const TrainLayer& P = p_.layers[l];
  const size_t N = B * T, d = s_.dim, hid = s_.hidden_dim, H = s_.n_heads, KVH = s_.n_kv_heads, hd = s_.head_dim;
  const size_t qd = H * hd, kvd = KVH * hd;
  c.xn1.resize(N * d);
  c.r1.resize(N);
  c.q.resize(N * qd);
  c.k.resize(N * kvd);
  c.v.resize(N * kvd);
  c.probs.resize(B * H * T * T);
  c.att.resize(N * qd);
  c.h.resize(N * d);
  c.xn2.resize(N * d);
  c.r2.resize(N);
  c.a.resize(N * hid);
  c.u.resize(N * hid);
  c.act.resize(N * hid);
  const float* wq[TL_COUNT];
  for (int k = 0; k < TL_COUNT; k++) wq[k] = weight(l, k, c.w[k], mode);
  auto W = [&](int k) { return wq[k]; };
  auto aq = [&](std::vector<float>& a, size_t in) {
    if (quant_.act_bits) act_fake_quant(a.data(), N, in, quant_.act_bits, nullptr, mode);
  };
  rmsnorm_fwd(x, P.attn_norm, N, d, s_.rms_eps, c.xn1.data(), c.r1.data(), mode);
  aq(c.xn1, d);
  linear_fwd(c.xn1.data(), N, d, W(TL_Q), P.bias[0], qd, c.q.data(), mode);
  linear_fwd(c.xn1.data(), N, d, W(TL_K), P.bias[1], kvd, c.k.data(), mode);
  linear_fwd(c.xn1.data(), N, d, W(TL_V), P.bias[2], kvd, c.v.data(), mode);
  rope_apply(c.q.data(), N, H, hd, pos_.data(), s_.inv_freq.data(), s_.rope_style, false, mode);
  rope_apply(c.k.data(), N, KVH, hd, pos_.data(), s_.inv_freq.data(), s_.rope_style, false, mode);
  if (quant_.kv_bits) {
    kv_fake_quant(c.k.data(), N, kvd, quant_.kv_bits, (size_t)quant_.kv_group, quant_.kv_sym);
    kv_fake_quant(c.v.data(), N, kvd, quant_.kv_bits, (size_t)quant_.kv_group, quant_.kv_sym);
  }
  for (size_t b = 0; b < B; b++)
    attention_fwd(c.q.data() + b * T * qd, c.k.data() + b * T * kvd, c.v.data() + b * T * kvd, T, H, KVH, hd, c.att.data() + b * T * qd,
                  c.probs.data() + b * H * T * T, mode);
  aq(c.att, qd);
  linear_fwd(c.att.data(), N, qd, W(TL_O), nullptr, d, c.h.data(), mode);
  for (size_t i = 0; i < N * d; i++) c.h[i] += x[i];
  rmsnorm_fwd(c.h.data(), P.ffn_norm, N, d, s_.rms_eps, c.xn2.data(), c.r2.data(), mode);
  aq(c.xn2, d);
  linear_fwd(c.xn2.data(), N, d, W(TL_GATE), nullptr, hid, c.a.data(), mode);
  linear_fwd(c.xn2.data(), N, d, W(TL_UP), nullptr, hid, c.u.data(), mode);
  swiglu_fwd(c.a.data(), c.u.data(), N * hid, c.act.data(), mode);
  aq(c.act, hid);
  linear_fwd(c.act.data(), N, hid, W(TL_DOWN), nullptr, d, y, mode);
  for (size_t i = 0; i < N * d; i++) y[i] += c.h[i];
}

void TrainModel::block_backward(int l, const float* x, const float* dy, float* dx, Block& c, size_t B, size_t T, int mode) {
  const TrainLayer& P = p_.layers[l];
  TrainLayer& G = g_.layers[l];
  // the weights as the forward multiplied them (straight-through: their gradient is the parameters')
  auto W = [&](int k) { return c.w[k].empty() ? P.w[k] : c.w[k].data(); };
  const size_t N = B * T, d = s_.dim, hid = s_.hidden_dim, H = s_.n_heads, KVH = s_.n_kv_heads, hd = s_.head_dim;
  const size_t qd = H * hd, kvd = KVH * hd;
  // MLP: y = h + down(swiglu(gate(n2(h)), up(n2(h))))
  std::vector<float> dh(dy, dy + N * d), dact(N * hid), da(N * hid), du(N * hid), dxn(N * d);
  linear_bwd(c.act.data(), dy, N, hid, W(TL_DOWN), d, dact.data(), false, G.w[TL_DOWN], nullptr, mode);
  swiglu_bwd(c.a.data(), c.u.data(), dact.data(), N * hid, da.data(), du.data(), mode);
  linear_bwd(c.xn2.data(), da.data(), N, d, W(TL_GATE), hid, dxn.data(), false, G.w[TL_GATE], nullptr, mode);
  linear_bwd(c.xn2.data(), du.data(), N, d, W(TL_UP), hid, dxn.data(), true, G.w[TL_UP], nullptr, mode);
  rmsnorm_bwd(c.h.data(), P.ffn_norm, c.r2.data(), dxn.data(), N, d, dh.data(), true, G.ffn_norm, mode);
  // attention: h = x + o(attn(rope(q(n1(x))), rope(k(n1(x))), v(n1(x))))
  std::vector<float> datt(N * qd), dq(N * qd), dk(N * kvd), dv(N * kvd);
  linear_bwd(c.att.data(), dh.data(), N, qd, W(TL_O), d, datt.data(), false, G.w[TL_O], nullptr, mode);
  for (size_t b = 0; b < B; b++)
    attention_bwd(c.q.data() + b * T * qd, c.k.data() + b * T * kvd, c.v.data() + b * T * kvd, c.probs.data() + b * H * T * T,
                  datt.data() + b * T * qd, T, H, KVH, hd, dq.data() + b * T * qd, dk.data() + b * T * kvd, dv.data() + b * T * kvd, mode);
  rope_apply(dq.data(), N, H, hd, pos_.data(), s_.inv_freq.data(), s_.rope_style, true, mode);
  rope_apply(dk.data(), N, KVH, hd, pos_.data(), s_.inv_freq.data(), s_.rope_style, true, mode);
  linear_bwd(c.xn1.data(), dq.data(), N, d, W(TL_Q), qd, dxn.data(), false, G.w[TL_Q], G.bias[0], mode);
  linear_bwd(c.xn1.data(), dk.data(), N, d, W(TL_K), kvd, dxn.data(), true, G.w[TL_K], G.bias[1], mode);
  linear_bwd(c.xn1.data(), dv.data(), N, d, W(TL_V), kvd, dxn.data(), true, G.w[TL_V], G.bias[2], mode);
  std::memcpy(dx, dh.data(), N * d * 4);
  rmsnorm_bwd(x, P.attn_norm, c.r1.data(), dxn.data(), N, d, dx, true, G.attn_norm, mode);
}

double TrainModel::run(const TrainBatch& bt, int mode, TaskContext* ctx) {
  const size_t B = bt.batch, T = bt.seq_len, N = B * T, d = s_.dim, V = s_.vocab, L = s_.n_layers;
  LOWBIT_CHECK(N > 0 && (bt.targets != nullptr) != (bt.teacher != nullptr), "train: a batch with targets or teacher logits");
  for (size_t t = 0; t < N; t++) LOWBIT_CHECK(bt.tokens[t] >= 0 && bt.tokens[t] < s_.vocab, "train: token id outside the vocabulary");
  pos_.resize(N);
  for (size_t t = 0; t < N; t++) pos_[t] = (int32_t)(t % T);
  // forward, keeping each block's input
  std::vector<std::vector<float>> xs(L + 1, std::vector<float>(N * d));
  for (size_t t = 0; t < N; t++) std::memcpy(xs[0].data() + t * d, p_.embed + (size_t)bt.tokens[t] * d, d * 4);
  Block c;
  for (size_t l = 0; l < L; l++) {
    if (ctx) ctx->check("train");
    block_forward((int)l, xs[l].data(), xs[l + 1].data(), c, B, T, mode);
  }
  std::vector<float> xf(N * d), rf(N), logits(N * V);
  rmsnorm_fwd(xs[L].data(), p_.final_norm, N, d, s_.rms_eps, xf.data(), rf.data(), mode);
  const float* head = p_.head ? p_.head : p_.embed;
  linear_fwd(xf.data(), N, d, head, nullptr, V, logits.data(), mode);
  if (bt.logits_out) std::memcpy(bt.logits_out, logits.data(), N * V * 4);
  std::vector<float> dlogits(bt.backward ? N * V : 0);
  float* dl = bt.backward ? dlogits.data() : nullptr;
  const double loss = bt.targets ? cross_entropy(logits.data(), bt.targets, N, V, dl, bt.scale, mode)
                                 : kl_teacher(logits.data(), bt.teacher, N, V, dl, bt.scale, mode);
  if (!bt.backward) return loss;
  // backward: head, final norm, blocks last to first (each recomputed from its input), embedding
  std::vector<float> dxf(N * d), dx(N * d), dprev(N * d);
  float* ghead = g_.head ? g_.head : g_.embed;
  linear_bwd(xf.data(), dl, N, d, head, V, dxf.data(), false, ghead, nullptr, mode);
  logits = std::vector<float>();
  dlogits = std::vector<float>();
  std::fill(dx.begin(), dx.end(), 0.0f);
  rmsnorm_bwd(xs[L].data(), p_.final_norm, rf.data(), dxf.data(), N, d, dx.data(), false, g_.final_norm, mode);
  for (size_t l = L; l-- > 0;) {
    if (ctx) ctx->check("train");
    block_forward((int)l, xs[l].data(), xs[l + 1].data(), c, B, T, mode);
    block_backward((int)l, xs[l].data(), dx.data(), dprev.data(), c, B, T, mode);
    std::swap(dx, dprev);
  }
  embedding_bwd(bt.tokens, dx.data(), N, d, g_.embed);
  return loss;
}

}  // namespace train
}  // namespace lowbit
