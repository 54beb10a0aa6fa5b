// The training engine from JS (train/ops.h, train/model.h):
//   trainOp({op, mode, …}) -> {…}   one op's forward and backward on small inputs (tests, bench):
//     linear {x, w, b?, dy, n, in, out} -> {y, dx, dw, db}; rmsnorm {x, g, dy, n, d, eps} -> {y, dx, dg};
//     rope {x, n, heads, hd, pos, invFreq, style, inverse} (in place); attention {q, k, v, dout, T, H, KVH, hd}
//     -> {out, dq, dk, dv}; swiglu {a, u, dh} -> {h, da, du}; crossEntropy {logits, targets, n, V, scale}
//     -> {loss, dlogits}; klTeacher {logits, teacher, n, V, scale} -> {loss, dlogits}
//   adamw({p, g, m, v, lr, b1, b2, eps, wd, t, mode})   in place
//   sumSquares({x, mode}) -> number;  scaleInPlace({x, s})
//   createTrainer({shape, params, grads, quant?}) -> {run(job) -> task(loss), dispose()}
//     quant {weights?: {bits, groupSize, sym, codebook, clip, clipGrid, clipMaxShrink, clipNorm, zeroMin, scaleF16, signedMax},
//            weightsMask?: Uint8Array (nLayers × 7), actBits?, kv?: {bits, group, sym}} (train/model.h TrainQuant)
//     shape {dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim, vocabSize, rmsEps, ropeStyle, invFreq};
//     params / grads {embed, finalNorm, head?, layers: [{attnNorm, ffnNorm, q, k, v, o, gate, up, down, qBias?, kBias?, vBias?}]}
//     run {tokens, batch, seqLen, targets? | teacher?, scale, backward, logits?, mode, threads}
#include <cstring>
#include <memory>

#include "addon/quant_spec_js.h"
#include "addon/task.h"
#include "train/model.h"
#include "train/ops.h"

namespace lowbit {

namespace {

float* fview(const Job& j, const char* key, size_t count) {
  const View v = j.view(key);
  if (v.bytes < count * 4) j.fail(key, ("a Float32Array of at least " + std::to_string(count) + " values").c_str());
  return reinterpret_cast<float*>(v.data);
}

Napi::Float32Array farray(Napi::Env env, const std::vector<float>& v) {
  Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * 4);
  return a;
}

Napi::Value TrainOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "trainOp");
  const std::string op = j.str("op");
  const int mode = j.mode();
  Napi::Object o = Napi::Object::New(env);
  try {
    if (op == "linear") {
      const size_t n = j.count("n"), in = j.count("in"), out = j.count("out");
      const float* x = fview(j, "x", n * in);
      const float* w = fview(j, "w", out * in);
      const float* b = j.has("b") ? fview(j, "b", out) : nullptr;
      const float* dy = fview(j, "dy", n * out);
      std::vector<float> y(n * out), dx(n * in), dw(out * in), db(out);
      train::linear_fwd(x, n, in, w, b, out, y.data(), mode);
      train::linear_bwd(x, dy, n, in, w, out, dx.data(), false, dw.data(), db.data(), mode);
      o.Set("y", farray(env, y));
      o.Set("dx", farray(env, dx));
      o.Set("dw", farray(env, dw));
      o.Set("db", farray(env, db));
    } else if (op == "rmsnorm") {
      const size_t n = j.count("n"), d = j.count("d");
      const float* x = fview(j, "x", n * d);
      const float* g = fview(j, "g", d);
      const float* dy = fview(j, "dy", n * d);
      std::vector<float> y(n * d), r(n), dx(n * d), dg(d);
      train::rmsnorm_fwd(x, g, n, d, (float)j.num("eps"), y.data(), r.data(), mode);
      train::rmsnorm_bwd(x, g, r.data(), dy, n, d, dx.data(), false, dg.data(), mode);
      o.Set("y", farray(env, y));
      o.Set("dx", farray(env, dx));
      o.Set("dg", farray(env, dg));
    } else if (op == "rope") {
      const size_t n = j.count("n"), heads = j.count("heads"), hd = j.count("hd");
      if (hd == 0 || hd % 2) j.fail("hd", "an even head size");
      float* x = fview(j, "x", n * heads * hd);
      const View pos = j.view("pos");
      if (pos.bytes < n * 4) j.fail("pos", "an Int32Array of n positions");
      train::rope_apply(x, n, heads, hd, reinterpret_cast<const int32_t*>(pos.data), fview(j, "invFreq", hd / 2), j.i32("style"), j.flag("inverse"),
                        mode);
    } else if (op == "attention") {
      const size_t T = j.count("T"), H = j.count("H"), KVH = j.count("KVH"), hd = j.count("hd");
      if (KVH == 0 || H % KVH) j.fail("KVH", "a divisor of H");
      const float* q = fview(j, "q", T * H * hd);
      const float* k = fview(j, "k", T * KVH * hd);
      const float* v = fview(j, "v", T * KVH * hd);
      const float* dout = fview(j, "dout", T * H * hd);
      std::vector<float> out(T * H * hd), probs(H * T * T), dq(T * H * hd), dk(T * KVH * hd), dv(T * KVH * hd);
      train::attention_fwd(q, k, v, T, H, KVH, hd, out.data(), probs.data(), mode);
      train::attention_bwd(q, k, v, probs.data(), dout, T, H, KVH, hd, dq.data(), dk.data(), dv.data(), mode);
      o.Set("out", farray(env, out));
      o.Set("dq", farray(env, dq));
      o.Set("dk", farray(env, dk));
      o.Set("dv", farray(env, dv));
    } else if (op == "swiglu") {
      const size_t n = j.count("n");
      const float* a = fview(j, "a", n);
      const float* u = fview(j, "u", n);
      const float* dh = fview(j, "dh", n);
      std::vector<float> h(n), da(n), du(n);
      train::swiglu_fwd(a, u, n, h.data(), mode);
      train::swiglu_bwd(a, u, dh, n, da.data(), du.data(), mode);
      o.Set("h", farray(env, h));
      o.Set("da", farray(env, da));
      o.Set("du", farray(env, du));
    } else if (op == "crossEntropy" || op == "klTeacher") {
      const size_t n = j.count("n"), V = j.count("V");
      const float* z = fview(j, "logits", n * V);
      std::vector<float> dl(n * V);
      double loss;
      if (op == "crossEntropy") {
        const View t = j.view("targets");
        if (t.bytes < n * 4) j.fail("targets", "an Int32Array of n targets");
        const int32_t* tp = reinterpret_cast<const int32_t*>(t.data);
        for (size_t i = 0; i < n; i++)
          if (tp[i] >= (int32_t)V) j.fail("targets", "ids below V (negative: ignored)");
        loss = train::cross_entropy(z, tp, n, V, dl.data(), (float)j.num("scale"), mode);
      } else {
        loss = train::kl_teacher(z, fview(j, "teacher", n * V), n, V, dl.data(), (float)j.num("scale"), mode);
      }
      o.Set("loss", loss);
      o.Set("dlogits", farray(env, dl));
    } else {
      j.fail("op", "linear, rmsnorm, rope, attention, swiglu, crossEntropy or klTeacher");
    }
  } catch (const Error& e) {
    throw Napi::Error::New(env, e.what());
  }
  return o;
}

Napi::Value AdamW(const Napi::CallbackInfo& info) {
  const Job j(info, "adamw");
  const View p = j.view("p");
  const size_t n = p.bytes / 4;
  float* g = fview(j, "g", n);
  float* m = fview(j, "m", n);
  float* v = fview(j, "v", n);
  const double t = j.num("t");
  if (!(t >= 1)) j.fail("t", "a step ≥ 1");
  ScopedThreads per_call(j.threads());
  train::adamw(reinterpret_cast<float*>(p.data), g, m, v, n, (float)j.num("lr"), (float)j.num("b1"), (float)j.num("b2"), (float)j.num("eps"),
               (float)j.num("wd"), (int64_t)t, j.mode());
  return info.Env().Undefined();
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  const Job j(info, "sumSquares");
  const View x = j.view("x");
  ScopedThreads per_call(j.threads());
  return Napi::Number::New(info.Env(), train::sum_squares(reinterpret_cast<const float*>(x.data), x.bytes / 4, j.mode()));
}

Napi::Value ScaleInPlace(const Napi::CallbackInfo& info) {
  const Job j(info, "scaleInPlace");
  const View x = j.view("x");
  ScopedThreads per_call(j.threads());
  train::scale_inplace(reinterpret_cast<float*>(x.data), x.bytes / 4, (float)j.num("s"));
  return info.Env().Undefined();
}

struct TrainerHolder {
  std::unique_ptr<train::TrainModel> model;
  std::vector<Napi::Reference<Napi::Value>> refs;
  bool disposed = false;
};

train::TrainParams read_params(const Job& j, const train::TrainShape& s, TrainerHolder* h) {
  const size_t d = s.dim, hid = s.hidden_dim, qd = (size_t)s.n_heads * s.head_dim, kvd = (size_t)s.n_kv_heads * s.head_dim, V = s.vocab;
  auto take = [&](const Job& o, const char* key, size_t count) {
    h->refs.push_back(Napi::Persistent(o.get(key)));
    return fview(o, key, count);
  };
  train::TrainParams p;
  p.embed = take(j, "embed", V * d);
  p.final_norm = take(j, "finalNorm", d);
  if (j.has("head")) p.head = take(j, "head", V * d);
  const Napi::Value lv = j.get("layers");
  if (!lv.IsArray() || (int)lv.As<Napi::Array>().Length() != s.n_layers) j.fail("layers", "an array of nLayers layers");
  const Napi::Array layers = lv.As<Napi::Array>();
  static const char* names[train::TL_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
  const size_t sizes[train::TL_COUNT] = {qd * d, kvd * d, kvd * d, d * qd, hid * d, hid * d, d * hid};
  static const char* bias_names[3] = {"qBias", "kBias", "vBias"};
  const size_t bias_sizes[3] = {qd, kvd, kvd};
  for (uint32_t i = 0; i < layers.Length(); i++) {
    const Job lo(layers.Get(i).As<Napi::Object>(), j.fn(), j.path() + ".layers[" + std::to_string(i) + "]");
    train::TrainLayer L;
    L.attn_norm = take(lo, "attnNorm", d);
    L.ffn_norm = take(lo, "ffnNorm", d);
    for (int k = 0; k < train::TL_COUNT; k++) L.w[k] = take(lo, names[k], sizes[k]);
    for (int k = 0; k < 3; k++)
      if (lo.has(bias_names[k])) L.bias[k] = take(lo, bias_names[k], bias_sizes[k]);
    p.layers.push_back(L);
  }
  return p;
}

Napi::Value CreateTrainer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "createTrainer");
  const Job sj = j.object("shape");
  train::TrainShape s;
  s.dim = sj.i32("dim");
  s.hidden_dim = sj.i32("hiddenDim");
  s.n_layers = sj.i32("nLayers");
  s.n_heads = sj.i32("nHeads");
  s.n_kv_heads = sj.i32("nKvHeads");
  s.head_dim = sj.i32("headDim");
  s.vocab = sj.i32("vocabSize");
  s.rms_eps = (float)sj.num("rmsEps");
  s.rope_style = sj.i32("ropeStyle");
  const float* f = fview(sj, "invFreq", (size_t)std::max(s.head_dim, 0) / 2);
  s.inv_freq.assign(f, f + s.head_dim / 2);
  auto h = std::make_shared<TrainerHolder>();
  train::TrainQuant quant;
  if (j.has("quant")) {
    // quant: {weights?: the quantize job's spec fields, actBits?, kv?: {bits, group, sym}}
    const Job qj = j.object("quant");
    if (qj.has("weights")) {
      const Job w = qj.object("weights");
      quant.weights = true;
      quant.w = quant_spec_from_js(w);
      const QuantSpec& q = quant.w;
      if (q.bits < 2 || q.bits > 8 || q.group_size < 1 || q.clip_grid < 1) w.fail("bits", "a normalized quantizer");
      if (qj.has("weightsMask")) {
        const View m = qj.view("weightsMask");
        if (m.bytes != (size_t)s.n_layers * train::TL_COUNT) qj.fail("weightsMask", "a Uint8Array of nLayers × 7");
        quant.w_mask.assign(m.data, m.data + m.bytes);
      }
    }
    if (qj.has("actBits")) quant.act_bits = qj.i32("actBits");
    if (qj.has("kv")) {
      const Job kv = qj.object("kv");
      quant.kv_bits = kv.i32("bits");
      quant.kv_group = kv.i32("group");
      quant.kv_sym = kv.flag("sym");
    }
  }
  const train::TrainParams p = read_params(j.object("params"), s, h.get());
  const train::TrainParams g = read_params(j.object("grads"), s, h.get());
  if ((p.layers[0].bias[0] == nullptr) != (g.layers[0].bias[0] == nullptr)) j.fail("grads", "the same biases as params");
  try {
    h->model = std::make_unique<train::TrainModel>(s, p, g, quant);
  } catch (const Error& e) {
    throw Napi::Error::New(env, e.what());
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("run", Napi::Function::New(env, [h](const Napi::CallbackInfo& ci) -> Napi::Value {
          Napi::Env e = ci.Env();
          if (h->disposed) throw_js(e, "LOWBIT_DISPOSED", "trainer is disposed");
          const Job r(ci, "trainer.run");
          const train::TrainShape& sh = h->model->shape();
          train::TrainBatch b;
          b.batch = r.count("batch");
          b.seq_len = r.count("seqLen");
          const size_t N = b.batch * b.seq_len;
          const View tok = r.view("tokens");
          if (N == 0 || tok.bytes < N * 4) r.fail("tokens", "an Int32Array of batch × seqLen ids");
          b.tokens = reinterpret_cast<const int32_t*>(tok.data);
          std::vector<Napi::Value> keep{r.get("tokens")};
          if (r.has("targets")) {
            const View t = r.view("targets");
            if (t.bytes < N * 4) r.fail("targets", "an Int32Array of batch × seqLen ids");
            b.targets = reinterpret_cast<const int32_t*>(t.data);
            keep.push_back(r.get("targets"));
          } else {
            b.teacher = fview(r, "teacher", N * sh.vocab);
            keep.push_back(r.get("teacher"));
          }
          if (r.has("logits")) {
            b.logits_out = fview(r, "logits", N * sh.vocab);
            keep.push_back(r.get("logits"));
          }
          b.scale = (float)r.num("scale");
          b.backward = r.flag("backward", true);
          const int mode = r.mode();
          auto loss = std::make_shared<double>(0.0);
          return Task::Start(
              e, "lowbit.train", [h, b, mode, loss](TaskContext& ctx) { *loss = h->model->run(b, mode, &ctx); },
              [loss](Napi::Env env2) { return Napi::Number::New(env2, *loss); }, keep, Napi::Value(), 0.0, r.threads());
        }));
  o.Set("dispose", Napi::Function::New(env, [h](const Napi::CallbackInfo& ci) -> Napi::Value {
          h->disposed = true;
          return ci.Env().Undefined();
        }));
  return o;
}

}  // namespace

void register_train(Napi::Env env, Napi::Object exports) {
  exports.Set("trainOp", Napi::Function::New(env, TrainOp));
  exports.Set("adamw", Napi::Function::New(env, AdamW));
  exports.Set("sumSquares", Napi::Function::New(env, SumSquares));
  exports.Set("scaleInPlace", Napi::Function::New(env, ScaleInPlace));
  exports.Set("createTrainer", Napi::Function::New(env, CreateTrainer));
}

}  // namespace lowbit
