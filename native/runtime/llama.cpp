// Forward pass of the Llama runtime (see runtime/llama.h). Matrix products go through gemm()
// (multi-threaded, ISA-dispatched); attention is parallel over (token, head).
#include "runtime/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/convert.h"
#include "kernels/gemm.h"
#include "kernels/qgemm.h"
#include "kernels/rtquant.h"
#include "runtime/kv_cache.h"

namespace lowbit {

Llama::Llama(const LlamaConfig& c, const LlamaWeights& w) : cfg_(c), w_(w) {
  LOWBIT_CHECK(c.dim > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.head_dim > 0 && c.head_dim % 2 == 0, "llama: bad config");
  LOWBIT_CHECK((int)w.layers.size() == c.n_layers, "llama: layer count");
  const size_t kv_dim = (size_t)c.n_kv_heads * c.head_dim;
  const KvQuantConfig& kv = c.kv;
  if (kv.bits == 0) {
    kcache_.assign((size_t)c.n_layers * c.seq_len * kv_dim, 0.0f);
    vcache_.assign(kcache_.size(), 0.0f);
  } else {
    kvq_ = std::make_unique<KvCache>(c.n_layers, c.seq_len, c.n_heads, c.n_kv_heads, c.head_dim, kv);
  }
  if (kv.rotate) rot_head_ = make_rotation((size_t)c.head_dim, kv.rotate_seed);
  if (c.rotate_down) rot_down_ = make_rotation((size_t)c.hidden_dim, c.rotate_down_seed);
  const size_t acts = (size_t)c.n_layers * ACT_INPUTS;
  LOWBIT_CHECK(c.act_bits.empty() || (c.act_bits.size() == acts && c.act_scale.size() == acts), "llama: act_bits / act_scale sizes");
  for (int b : c.act_bits)
    if (b != 0 && (b < 2 || b > 8)) throw Error("LOWBIT_INVALID_OPTION", "activations: bits must be 2…8, received " + std::to_string(b));
  // Frequencies exactly as llama2.c's run.c computes them (float powf), shared by both styles.
  inv_freq_.resize(c.head_dim / 2);
  for (int i = 0; i < c.head_dim / 2; i++) inv_freq_[i] = 1.0f / powf(c.rope_theta, (float)(2 * i) / (float)c.head_dim);
  if (!c.inv_freq.empty()) {
    LOWBIT_CHECK(c.inv_freq.size() == inv_freq_.size(), "llama: inv_freq must hold head_dim / 2 values");
    inv_freq_ = c.inv_freq;
  }
}

static void rmsnorm(float* out, const float* x, const float* w, size_t n, size_t dim, float eps) {
  for (size_t t = 0; t < n; t++) {
    const float* xt = x + t * dim;
    float ss = 0.0f;
    for (size_t i = 0; i < dim; i++) ss += xt[i] * xt[i];
    ss = ss / (float)dim + eps;
    ss = 1.0f / sqrtf(ss);
    float* o = out + t * dim;
    for (size_t i = 0; i < dim; i++) o[i] = w[i] * (ss * xt[i]);
  }
}

void Llama::add_bias(int kind, int layer, size_t n, size_t out, float* y) const {
  const float* b = w_.layers[layer].bias[kind];
  if (!b) return;
  for (size_t t = 0; t < n; t++)
    for (size_t j = 0; j < out; j++) y[t * out + j] += b[j];
}

static int act_input_of(int kind) {
  switch (kind) {
    case LIN_Q:
    case LIN_K:
    case LIN_V: return ACT_QKV;
    case LIN_O: return ACT_O;
    case LIN_GATE:
    case LIN_UP: return ACT_GATE_UP;
    default: return ACT_DOWN;
  }
}

const float* Llama::act_input(int layer, int input, int first_kind, const float* x, size_t n, size_t in, std::vector<float>& buf, int mode) const {
  if (cfg_.act_bits.empty()) return x;
  const size_t i = (size_t)layer * ACT_INPUTS + input;
  const int bits = cfg_.act_bits[i];
  if (bits == 0) return x;
  const float scale = cfg_.act_scale[i];
  // Dynamic 8-bit into an integer-dot layer: the kernel quantizes its input to int8 per block of
  // channels itself (finer than per token): no fake quantization in front of it.
  if (bits == 8 && scale == 0.0f && w_.layers[layer].qblock[first_kind].q) return x;
  buf.assign(x, x + n * in);
  act_fake_quant(buf.data(), n, in, bits, scale > 0.0f ? &scale : nullptr, mode);
  return buf.data();
}

void Llama::linear_raw(int kind, int layer, const float* x, size_t n, size_t in, size_t out, float* y, int mode) {
  const LayerWeights& L = w_.layers[layer];
  if (L.qblock[kind].q) {
    qdot_linear(L.qblock[kind], x, n, y, out, mode);
  } else if (L.packed[kind].qweight) {
    const PackedLinear& P = L.packed[kind];
    QGemmArgs a{x, n, in, out, P.groups, P.qweight, P.scales, P.zeros, P.g_idx, y};
    qgemm_gptq4(a, mode);
  } else if (L.w16[kind]) {
    gemm_w16(x, n, in, L.w16[kind], w_.dtype16, out, y, mode);
  } else if (cfg_.bf16_compute) {
    gemm_bf16(x, n, in, L.w[kind], out, y, mode);
  } else {
    gemm(x, n, in, L.w[kind], out, y, false, mode);
  }
  add_bias(kind, layer, n, out, y);
}

void Llama::linear(int kind, int layer, const float* x, size_t n, size_t in, size_t out, float* y, int mode, Observer* obs) {
  if (obs) obs->observe(layer, kind, x, n, in);
  std::vector<float> buf;
  linear_raw(kind, layer, act_input(layer, act_input_of(kind), kind, x, n, in, buf, mode), n, in, out, y, mode);
}

void Llama::linears(int layer, const float* x0, size_t n, size_t in, const LinOut* o, size_t count, int mode, Observer* obs) {
  if (obs) obs->observe(layer, o[0].kind, x0, n, in);  // one input, observed once (as its first layer)
  std::vector<float> buf;
  const float* x = act_input(layer, act_input_of(o[0].kind), o[0].kind, x0, n, in, buf, mode);
  const LayerWeights& L = w_.layers[layer];
  bool all_q = true, all_f32 = true;
  for (size_t i = 0; i < count; i++) {
    const int k = o[i].kind;
    all_q = all_q && L.qblock[k].q && qdot_can_share_acts(L.qblock[o[0].kind], L.qblock[k]);
    all_f32 = all_f32 && L.w[k] && !L.qblock[k].q && !L.packed[k].qweight;
  }
  if (cfg_.bf16_compute) all_f32 = false;  // one gemm_bf16 per layer
  if (count > 1 && count <= 8 && mode != MODE_REF && (all_q || all_f32)) {
    if (all_q) {
      QdotPart parts[8];
      for (size_t i = 0; i < count; i++) parts[i] = QdotPart{&L.qblock[o[i].kind], o[i].y, o[i].out};
      qdot_linear_multi(parts, count, x, n, mode);
    } else {
      GemmPart parts[8];
      for (size_t i = 0; i < count; i++) parts[i] = GemmPart{L.w[o[i].kind], o[i].out, o[i].y, o[i].out};
      gemm_multi(parts, count, x, n, in, mode);
    }
    for (size_t i = 0; i < count; i++) add_bias(o[i].kind, layer, n, o[i].out, o[i].y);
    return;
  }
  for (size_t i = 0; i < count; i++) linear_raw(o[i].kind, layer, x, n, in, o[i].out, o[i].y, mode);
}

void Llama::kv_write(int layer, size_t pos, const float* k, const float* v) {
  // The f32 cache (a quantized one is written by attention_quant).
  const size_t kv_dim = (size_t)cfg_.n_kv_heads * cfg_.head_dim;
  float* kc = kcache_.data() + ((size_t)layer * cfg_.seq_len + pos) * kv_dim;
  float* vc = vcache_.data() + ((size_t)layer * cfg_.seq_len + pos) * kv_dim;
  std::memcpy(kc, k, kv_dim * 4);
  std::memcpy(vc, v, kv_dim * 4);
}

void Llama::rope(float* q, float* k, size_t n, size_t pos0) const {
  const int hd = cfg_.head_dim, half = hd / 2;
  const size_t qd = (size_t)cfg_.n_heads * hd, kd = (size_t)cfg_.n_kv_heads * hd;
  for (size_t t = 0; t < n; t++) {
    const float pos = (float)(pos0 + t);
    for (int i = 0; i < half; i++) {
      const float val = pos * inv_freq_[i];
      const float fcr = cosf(val), fci = sinf(val);
      for (int pass = 0; pass < 2; pass++) {
        float* v = pass == 0 ? q + t * qd : k + t * kd;
        const int heads = pass == 0 ? cfg_.n_heads : cfg_.n_kv_heads;
        for (int h = 0; h < heads; h++) {
          float* vh = v + (size_t)h * hd;
          const int a = cfg_.rope_style == ROPE_ADJACENT ? 2 * i : i;
          const int b = cfg_.rope_style == ROPE_ADJACENT ? 2 * i + 1 : i + half;
          const float v0 = vh[a], v1 = vh[b];
          vh[a] = v0 * fcr - v1 * fci;
          vh[b] = v0 * fci + v1 * fcr;
        }
      }
    }
  }
}

// Many tokens at once: per head, S = Q_h · K_hᵀ (n × P), causal mask, softmax, O_h = S · V_h, both
// products on the serial GEMM kernel, heads in parallel. (The scalar loop below serves decoding,
// the reference mode, and very short batches.)
void Llama::attention_gemm(int layer, const float* q, size_t n, size_t pos0, float* out) const {
  const int hd = cfg_.head_dim, H = cfg_.n_heads, KV = cfg_.n_kv_heads, group = H / KV;
  const size_t kv_dim = (size_t)KV * hd, qd = (size_t)H * hd, P = pos0 + n;
  const float* kc = kcache_.data() + (size_t)layer * cfg_.seq_len * kv_dim;
  const float* vc = vcache_.data() + (size_t)layer * cfg_.seq_len * kv_dim;
  const float scale = 1.0f / sqrtf((float)hd);
  parallel_for((size_t)H, 1, [&](size_t h0, size_t h1) {
    std::vector<float> Qh(n * hd), Kh(P * hd), VhT(hd * P), S(n * P), Oh(n * hd);
    int loaded_kv = -1;
    for (size_t h = h0; h < h1; h++) {
      const size_t kvh = (h / group) * hd;
      for (size_t t = 0; t < n; t++) std::memcpy(&Qh[t * hd], q + t * qd + h * hd, hd * 4);
      if ((int)(h / group) != loaded_kv) {
        for (size_t p = 0; p < P; p++) {
          std::memcpy(&Kh[p * hd], kc + p * kv_dim + kvh, hd * 4);
          for (int i = 0; i < hd; i++) VhT[(size_t)i * P + p] = vc[p * kv_dim + kvh + i];
        }
        loaded_kv = (int)(h / group);
      }
      gemm_serial(Qh.data(), n, hd, Kh.data(), P, S.data(), false);
      for (size_t t = 0; t < n; t++) {
        causal_softmax_row(&S[t * P], pos0 + t, P, scale);
      }
      gemm_serial(S.data(), n, P, VhT.data(), (size_t)hd, Oh.data(), false);
      for (size_t t = 0; t < n; t++) std::memcpy(out + t * qd + h * hd, &Oh[t * hd], hd * 4);
    }
  });
}

void Llama::attention(int layer, const float* q, size_t n, size_t pos0, float* out, int mode) const {
  if (mode != MODE_REF && n >= 16) {
    attention_gemm(layer, q, n, pos0, out);
    return;
  }
  const int hd = cfg_.head_dim, H = cfg_.n_heads, KV = cfg_.n_kv_heads, group = H / KV;
  const size_t kv_dim = (size_t)KV * hd, qd = (size_t)H * hd;
  const float* kc = kcache_.data() + (size_t)layer * cfg_.seq_len * kv_dim;
  const float* vc = vcache_.data() + (size_t)layer * cfg_.seq_len * kv_dim;
  const float scale = 1.0f / sqrtf((float)hd);
  parallel_for(n * (size_t)H, 4, [&](size_t b, size_t e) {
    std::vector<float> att(pos0 + n);
    for (size_t idx = b; idx < e; idx++) {
      const size_t t = idx / H;
      const int h = (int)(idx % H);
      const size_t last = pos0 + t;  // causal: positions 0 … last
      const float* qh = q + t * qd + (size_t)h * hd;
      const size_t kvh = (size_t)(h / group) * hd;
      float mx = -INFINITY;
      for (size_t p = 0; p <= last; p++) {
        const float* kp = kc + p * kv_dim + kvh;
        float s;
        if (mode == MODE_REF) {
          s = 0.0f;
          for (int i = 0; i < hd; i++) s += qh[i] * kp[i];
        } else {
          s = dot_f32(qh, kp, (size_t)hd);  // vector accumulators: the plain loop is latency-bound
        }
        s *= scale;
        att[p] = s;
        mx = std::max(mx, s);
      }
      float sum = 0.0f;
      for (size_t p = 0; p <= last; p++) {
        att[p] = expf(att[p] - mx);
        sum += att[p];
      }
      float* oh = out + t * qd + (size_t)h * hd;
      std::fill(oh, oh + hd, 0.0f);
      for (size_t p = 0; p <= last; p++) {
        const float a = att[p] / sum;
        const float* vp = vc + p * kv_dim + kvh;
        for (int i = 0; i < hd; i++) oh[i] += a * vp[i];
      }
    }
  });
}

double Llama::kv_bytes_per_token() const {
  if (kvq_) return kvq_->bytes_per_token();
  return (double)cfg_.n_layers * cfg_.n_kv_heads * cfg_.head_dim * 8.0;
}

size_t Llama::kv_fixed_bytes() const { return kvq_ ? kvq_->fixed_bytes() : 0; }

void Llama::block(int l, float* x, size_t n, size_t pos0, int mode, Observer* obs) {
  const LlamaConfig& c = cfg_;
  if (pos0 > (size_t)c.seq_len || n > (size_t)c.seq_len - pos0)
    throw Error("LOWBIT_INVALID_OPTION", "positions " + std::to_string(pos0) + "…" + std::to_string(pos0 + n - 1) + " exceed the context of " +
                                             std::to_string(c.seq_len) + " tokens");
  const size_t dim = c.dim, hd = c.head_dim, qd = (size_t)c.n_heads * hd, kvd = (size_t)c.n_kv_heads * hd, hid = c.hidden_dim;
  std::vector<float> xn(n * dim), q(n * qd), k(n * kvd), v(n * kvd), att(n * qd), h1(n * hid), h3(n * hid);
  std::vector<float> tmp(n * std::max(dim, qd));
  const LayerWeights& L = w_.layers[l];
  rmsnorm(xn.data(), x, L.attn_norm, n, dim, c.rms_eps);
  const LinOut qkv[3] = {{LIN_Q, qd, q.data()}, {LIN_K, kvd, k.data()}, {LIN_V, kvd, v.data()}};
  linears(l, xn.data(), n, dim, qkv, 3, mode, obs);
  rope(q.data(), k.data(), n, pos0);
  if (c.kv.rotate) {
    rotate_rows(rot_head_, q.data(), n * c.n_heads, mode);
    rotate_rows(rot_head_, k.data(), n * c.n_kv_heads, mode);
  }
  if (c.kv.bits) {
    kvq_->attend(l, q.data(), k.data(), v.data(), n, pos0, att.data(), mode);
  } else {
    for (size_t t = 0; t < n; t++) kv_write(l, pos0 + t, &k[t * kvd], &v[t * kvd]);
    attention(l, q.data(), n, pos0, att.data(), mode);
  }
  linear(LIN_O, l, att.data(), n, qd, dim, tmp.data(), mode, obs);
  for (size_t i = 0; i < n * dim; i++) x[i] += tmp[i];
  rmsnorm(xn.data(), x, L.ffn_norm, n, dim, c.rms_eps);
  const LinOut gate_up[2] = {{LIN_GATE, hid, h1.data()}, {LIN_UP, hid, h3.data()}};
  linears(l, xn.data(), n, dim, gate_up, 2, mode, obs);
  for (size_t i = 0; i < n * hid; i++) {
    const float g = h1[i];
    h1[i] = g * (1.0f / (1.0f + expf(-g))) * h3[i];
  }
  if (c.rotate_down) rotate_rows(rot_down_, h1.data(), n, mode);
  linear(LIN_DOWN, l, h1.data(), n, hid, dim, tmp.data(), mode, obs);
  for (size_t i = 0; i < n * dim; i++) x[i] += tmp[i];
}

void Llama::forward(const int32_t* tokens, size_t n, size_t pos0, float* logits, size_t logit_rows, int mode, TaskContext* ctx, Observer* obs) {
  const LlamaConfig& c = cfg_;
  if (n == 0) return;
  if (pos0 > (size_t)c.seq_len || n > (size_t)c.seq_len - pos0)
    throw Error("LOWBIT_INVALID_OPTION", "positions " + std::to_string(pos0) + "…" + std::to_string(pos0 + n - 1) + " exceed the context of " +
                                             std::to_string(c.seq_len) + " tokens");
  const size_t dim = c.dim;
  std::vector<float> x(n * dim), xn;
  for (size_t t = 0; t < n; t++) {
    const int32_t tok = tokens[t];
    if (tok < 0 || tok >= c.vocab)
      throw Error("LOWBIT_INVALID_OPTION", "token id " + std::to_string(tok) + " is outside the vocabulary (" + std::to_string(c.vocab) + ")");
    if (w_.embed16) convert_range(w_.embed16 + (size_t)tok * dim, w_.dtype16, &x[t * dim], DTYPE_F32, dim);
    else std::memcpy(&x[t * dim], w_.embed + (size_t)tok * dim, dim * 4);
  }
  for (int l = 0; l < c.n_layers; l++) {
    if (ctx) ctx->check("forward");
    block(l, x.data(), n, pos0, mode, obs);
    if (ctx) ctx->add_done(1.0);
  }
  if (logits && logit_rows) {
    const size_t r = std::min(logit_rows, n);
    xn.resize(r * dim);
    rmsnorm(xn.data(), x.data() + (n - r) * dim, w_.final_norm, r, dim, c.rms_eps);
    if (w_.classifier_q.q) qdot_linear(w_.classifier_q, xn.data(), r, logits, (size_t)c.vocab, mode);
    else if (w_.classifier16) gemm_w16(xn.data(), r, dim, w_.classifier16, w_.dtype16, (size_t)c.vocab, logits, mode);
    else gemm(xn.data(), r, dim, w_.classifier, (size_t)c.vocab, logits, false, mode);
  }
}

}  // namespace lowbit
