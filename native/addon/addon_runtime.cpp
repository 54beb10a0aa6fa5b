// createModel(config, weights) -> {forward(job) -> task, calibrateBlock(job) -> task, dispose()}.
// The weights are the caller's Float32Arrays (zero copy), held by persistent references for the
// model's lifetime. One forward at a time per model (the KV cache is shared state): a second
// concurrent call is refused; the TS layer queues calls.
#include <atomic>
#include <cmath>
#include <memory>

#include "addon/qblock_js.h"
#include "addon/task.h"
#include "kernels/convert.h"
#include "kernels/gemm.h"
#include "kernels/qgemm.h"
#include "quant/hessian.h"
#include "runtime/llama.h"

namespace lowbit {

namespace {

struct ModelHolder {
  std::unique_ptr<Llama> model;
  std::vector<Napi::Reference<Napi::Value>> refs;
  std::atomic<bool> busy{false};
  bool disposed = false;
};

const float* f32(const Napi::Object& o, const char* key, ModelHolder* h, bool optional = false) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return nullptr;
    throw Napi::Error::New(o.Env(), std::string("LOWBIT_INTERNAL: createModel: missing weight ") + key);
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::Error::New(o.Env(), std::string("LOWBIT_INTERNAL: createModel: ") + key + " must be a Float32Array");
  h->refs.push_back(Napi::Persistent(v));
  return reinterpret_cast<const float*>(view_of(v, key).data);
}

bool is_u16(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
}

// A 16-bit weight (Uint16Array of f16 or bf16 bits) of exactly `count` elements.
const uint16_t* u16(const Napi::Object& o, const char* key, size_t count, ModelHolder* h) {
  Napi::Value v = o.Get(key);
  const View view = view_of(v, key);
  if (view.bytes != count * 2)
    throw Napi::Error::New(o.Env(), std::string("LOWBIT_INTERNAL: createModel: ") + key + " has " + std::to_string(view.bytes / 2) +
                                        " elements, expected " + std::to_string(count));
  h->refs.push_back(Napi::Persistent(v));
  return reinterpret_cast<const uint16_t*>(view.data);
}

}  // namespace

static Napi::Value CreateModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  for (size_t i = 0; i < 2; i++)
    if (info.Length() <= i || !info[i].IsObject() || info[i].IsArray() || info[i].IsTypedArray())
      throw_js(env, "LOWBIT_INTERNAL",
               std::string("createModel: expected (config, weights) objects, received ") + (info.Length() > i ? js_type_name(info[i]) : "nothing"));
  const Job c(info[0].As<Napi::Object>(), "createModel", "config");
  Napi::Object w = info[1].As<Napi::Object>();
  LlamaConfig cfg;
  cfg.dim = c.i32("dim");
  cfg.hidden_dim = c.i32("hiddenDim");
  cfg.n_layers = c.i32("nLayers");
  cfg.n_heads = c.i32("nHeads");
  cfg.n_kv_heads = c.i32("nKvHeads");
  cfg.vocab = c.i32("vocabSize");
  cfg.seq_len = c.i32("seqLen");
  cfg.head_dim = c.i32("headDim");
  cfg.rms_eps = (float)c.num("rmsEps");
  cfg.rope_theta = (float)c.num("ropeTheta");
  cfg.rope_style = c.i32("ropeStyle");
  if (c.has("invFreq")) {
    const View f = c.view("invFreq");
    if (cfg.head_dim <= 0 || f.bytes != (size_t)cfg.head_dim / 2 * 4) c.fail("invFreq", "a Float32Array of headDim / 2 frequencies");
    const float* p = reinterpret_cast<const float*>(f.data);
    cfg.inv_freq.assign(p, p + cfg.head_dim / 2);
  }
  if (c.has("bf16Compute")) cfg.bf16_compute = c.flag("bf16Compute");
  if (c.has("kv")) {
    // kv: {bits, group, sym, kChannel, block, window, rotate, rotateSeed}
    const Job kv = c.object("kv");
    cfg.kv.bits = kv.i32("bits");
    cfg.kv.group = kv.i32("group");
    cfg.kv.sym = kv.flag("sym");
    cfg.kv.k_channel = kv.flag("kChannel");
    if (kv.has("block")) cfg.kv.block = kv.i32("block");
    cfg.kv.window = kv.i32("window");
    cfg.kv.rotate = kv.flag("rotate");
    if (kv.has("rotateSeed")) cfg.kv.rotate_seed = (uint64_t)kv.count("rotateSeed");
  }
  if (c.has("actBits")) {
    // actBits: Int32Array (nLayers × 4), actScale: Float32Array (nLayers × 4; 0 = dynamic per token)
    const View b = c.view("actBits"), sc = c.view("actScale");
    const size_t acts = (size_t)std::max(cfg.n_layers, 0) * ACT_INPUTS;
    if (b.bytes != acts * 4 || sc.bytes != acts * 4) c.fail("actBits", "Int32Array and Float32Array (actScale) of nLayers × 4");
    const int32_t* bp = reinterpret_cast<const int32_t*>(b.data);
    const float* sp = reinterpret_cast<const float*>(sc.data);
    cfg.act_bits.assign(bp, bp + acts);
    cfg.act_scale.assign(sp, sp + acts);
  }
  if (c.has("rotateDownSeed")) {
    cfg.rotate_down = true;
    cfg.rotate_down_seed = (uint64_t)c.count("rotateDownSeed");
  }
  auto* h = new ModelHolder();
  try {
    LlamaWeights lw;
    const size_t vd = (size_t)cfg.vocab * cfg.dim;
    const bool any16 = is_u16(w, "embed") || is_u16(w, "classifier");
    if (w.Has("dtype16")) {
      lw.dtype16 = w.Get("dtype16").ToNumber().Int32Value();
      if (lw.dtype16 != DTYPE_F16 && lw.dtype16 != DTYPE_BF16)
        throw Napi::Error::New(env, "LOWBIT_INTERNAL: createModel: dtype16 must be 1 (F16) or 2 (BF16)");
    } else if (any16) {
      throw Napi::Error::New(env, "LOWBIT_INTERNAL: createModel: 16-bit weights without dtype16");
    }
    if (is_u16(w, "embed")) lw.embed16 = u16(w, "embed", vd, h);
    else lw.embed = f32(w, "embed", h);
    lw.final_norm = f32(w, "finalNorm", h);
    if (is_u16(w, "classifier")) lw.classifier16 = u16(w, "classifier", vd, h);
    else lw.classifier = f32(w, "classifier", h);
    if (w.Has("classifierPacked") && w.Get("classifierPacked").IsObject()) {
      std::vector<Napi::Value> keep;
      qblock_from_js(Job(w.Get("classifierPacked").As<Napi::Object>(), "createModel", "weights.classifierPacked"), lw.classifier_q, keep);
      for (auto& v : keep) h->refs.push_back(Napi::Persistent(v));
    }
    Napi::Array layers = w.Get("layers").As<Napi::Array>();
    if ((int)layers.Length() != cfg.n_layers) throw Napi::Error::New(env, "LOWBIT_INTERNAL: createModel: layer count");
    static const char* names[LIN_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
    static const char* bias_names[LIN_COUNT] = {"qBias", "kBias", "vBias", "oBias", "gateBias", "upBias", "downBias"};
    for (uint32_t i = 0; i < layers.Length(); i++) {
      Napi::Object lo = layers.Get(i).As<Napi::Object>();
      LayerWeights L;
      L.attn_norm = f32(lo, "attnNorm", h);
      L.ffn_norm = f32(lo, "ffnNorm", h);
      Napi::Value packed = lo.Get("packed");
      for (int k = 0; k < LIN_COUNT; k++) {
        Napi::Value pk = packed.IsObject() ? packed.As<Napi::Object>().Get(names[k]) : env.Undefined();
        if (pk.IsObject() && pk.As<Napi::Object>().Has("kb")) {
          // integer-dot layout (see addon_qdot.cpp)
          std::vector<Napi::Value> keep;
          qblock_from_js(Job(pk.As<Napi::Object>(), "createModel", "weights.layers[" + std::to_string(i) + "].packed." + names[k]), L.qblock[k],
                         keep);
          for (auto& v : keep) h->refs.push_back(Napi::Persistent(v));
        } else if (pk.IsObject()) {
          // GPTQ 4-bit: qweight (in/8 × out) i32, scales (G × out) f32, zeros (G × out) u8, gIdx (in) i32
          const Job po(pk.As<Napi::Object>(), "createModel", "weights.layers[" + std::to_string(i) + "].packed." + names[k]);
          PackedLinear& P = L.packed[k];
          P.qweight = reinterpret_cast<const int32_t*>(po.view("qweight").data);
          P.scales = reinterpret_cast<const float*>(po.view("scales").data);
          P.zeros = po.view("zeros").data;
          P.g_idx = reinterpret_cast<const int32_t*>(po.view("gIdx").data);
          P.groups = po.count("groups");
          for (const char* key : {"qweight", "scales", "zeros", "gIdx"}) h->refs.push_back(Napi::Persistent(po.get(key)));
        } else if (is_u16(lo, names[k])) {
          if (!lw.dtype16) throw Napi::Error::New(env, "LOWBIT_INTERNAL: createModel: 16-bit weights without dtype16");
          const size_t qd = (size_t)cfg.n_heads * cfg.head_dim, kvd = (size_t)cfg.n_kv_heads * cfg.head_dim, d = cfg.dim, hd = cfg.hidden_dim;
          const size_t sizes[LIN_COUNT] = {qd * d, kvd * d, kvd * d, d * qd, hd * d, hd * d, d * hd};
          L.w16[k] = u16(lo, names[k], sizes[k], h);
        } else {
          L.w[k] = f32(lo, names[k], h);
        }
        L.bias[k] = f32(lo, bias_names[k], h, true);
      }
      lw.layers.push_back(L);
    }
    h->model = std::make_unique<Llama>(cfg, lw);
  } catch (const Error& e) {
    delete h;
    throw Napi::Error::New(env, e.what());
  } catch (const std::bad_alloc&) {
    delete h;
    const double kv = 8.0 * cfg.n_layers * (double)cfg.seq_len * cfg.n_kv_heads * cfg.head_dim;
    throw_js(env, "LOWBIT_RESOURCE",
             "createModel: out of memory allocating the model's buffers (the KV cache alone is " + std::to_string((long long)(kv / 1048576)) +
                 " MiB for a context of " + std::to_string(cfg.seq_len) + " positions; load it with a smaller maxContext)");
  } catch (...) {
    delete h;
    throw;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("kvBytesPerToken", Napi::Number::New(env, h->model->kv_bytes_per_token()));
  o.Set("kvFixedBytes", Napi::Number::New(env, (double)h->model->kv_fixed_bytes()));
  o.Set("forward", Napi::Function::New(env, [h](const Napi::CallbackInfo& ci) -> Napi::Value {
          Napi::Env e = ci.Env();
          if (h->disposed) throw_js(e, "LOWBIT_DISPOSED", "model is disposed");
          // forward({tokens, pos0, logits, logitRows, mode, threads})
          const Job job(ci, "forward");
          View tok = job.view("tokens");
          const size_t n = tok.bytes / 4;
          const size_t pos0 = job.count("pos0");
          View lg = job.view_or_null("logits");
          size_t rows = 0;
          if (lg.data) {
            rows = job.count("logitRows");
            if (lg.bytes < rows * (size_t)h->model->config().vocab * 4)
              throw_js(e, "LOWBIT_INTERNAL", "forward: job.logits: smaller than logitRows × vocab floats");
          }
          const int mode = job.mode();
          bool expected = false;
          if (!h->busy.compare_exchange_strong(expected, true)) throw_js(e, "LOWBIT_INTERNAL", "forward: model is busy (one call at a time)");
          return Task::Start(
              e, "lowbit.forward",
              [h, tok, n, pos0, lg, rows, mode](TaskContext& ctx) {
                struct Release {
                  ModelHolder* h;
                  ~Release() { h->busy.store(false); }
                } rel{h};
                h->model->forward(reinterpret_cast<const int32_t*>(tok.data), n, pos0, reinterpret_cast<float*>(lg.data), rows, mode, &ctx);
              },
              [](Napi::Env env2) { return env2.Undefined(); }, {job.get("tokens"), job.get("logits")}, Napi::Value(), 0.0, job.threads());
        }));
  // calibrateBlock({layer, hidden (S × T × dim, in place), seqLen T, stats, mode, threads, onProgress})
  // -> task. stats maps 'attn' | 'o' | 'mlp' | 'down' to {H, sumAbs, maxAbs} Float32Arrays (or is
  // missing a key to skip it).
  o.Set("calibrateBlock", Napi::Function::New(env, [h](const Napi::CallbackInfo& ci) -> Napi::Value {
          Napi::Env e = ci.Env();
          if (h->disposed) throw_js(e, "LOWBIT_DISPOSED", "model is disposed");
          const Job job(ci, "calibrateBlock");
          const int layer = job.i32("layer");
          View hid = job.view("hidden");
          const size_t T = job.count("seqLen");
          const Job stats = job.object("stats");
          const int mode = job.mode();
          const LlamaConfig& c = h->model->config();
          const size_t dim = c.dim, qd = (size_t)c.n_heads * c.head_dim;
          if (layer < 0 || layer >= c.n_layers || T == 0 || hid.bytes % (T * dim * 4))
            throw_js(e, "LOWBIT_INTERNAL", "calibrateBlock: bad arguments");
          struct Obs : Observer {
            float* H[LIN_COUNT] = {};
            float* sa[LIN_COUNT] = {};
            float* ma[LIN_COUNT] = {};
            int mode = 0;
            TaskContext* ctx = nullptr;
            void observe(int, int kind, const float* x, size_t n, size_t in) override {
              if (H[kind]) hessian_accumulate(x, n, in, H[kind], sa[kind], ma[kind], mode, ctx);
            }
          };
          auto obs = std::make_shared<Obs>();
          obs->mode = mode;
          std::vector<Napi::Value> keep{job.get("hidden")};
          const char* keys[4] = {"attn", "o", "mlp", "down"};
          const int kinds[4] = {LIN_Q, LIN_O, LIN_GATE, LIN_DOWN};
          const size_t widths[4] = {dim, qd, dim, (size_t)c.hidden_dim};
          for (int i = 0; i < 4; i++) {
            if (!stats.has(keys[i])) continue;
            const Job so = stats.object(keys[i]);
            const View Hv = so.view("H"), sav = so.view("sumAbs"), mav = so.view("maxAbs");
            if (Hv.bytes < widths[i] * widths[i] * 4 || sav.bytes < widths[i] * 4 || mav.bytes < widths[i] * 4)
              throw_js(e, "LOWBIT_INTERNAL", "calibrateBlock: stats sizes");
            obs->H[kinds[i]] = reinterpret_cast<float*>(Hv.data);
            obs->sa[kinds[i]] = reinterpret_cast<float*>(sav.data);
            obs->ma[kinds[i]] = reinterpret_cast<float*>(mav.data);
            keep.push_back(so.get("H"));
            keep.push_back(so.get("sumAbs"));
            keep.push_back(so.get("maxAbs"));
          }
          const size_t S = hid.bytes / (T * dim * 4);
          bool expected = false;
          if (!h->busy.compare_exchange_strong(expected, true)) throw_js(e, "LOWBIT_INTERNAL", "calibrateBlock: model is busy");
          return Task::Start(
              e, "lowbit.calibrateBlock",
              [h, obs, layer, hid, T, S, dim, mode](TaskContext& ctx) {
                struct Release {
                  ModelHolder* h;
                  ~Release() { h->busy.store(false); }
                } rel{h};
                obs->ctx = &ctx;
                float* x = reinterpret_cast<float*>(hid.data);
                for (size_t s = 0; s < S; s++) {
                  ctx.check("calibration");
                  h->model->block(layer, x + s * T * dim, T, 0, mode, obs.get());
                  ctx.add_done(1.0);
                }
              },
              [](Napi::Env env2) { return env2.Undefined(); }, keep, job.get("onProgress"), (double)S, job.threads());
        }));
  o.Set("dispose", Napi::Function::New(env, [h](const Napi::CallbackInfo& ci) {
          if (!h->busy.load()) {
            h->disposed = true;
            h->model.reset();
            for (auto& r : h->refs) r.Reset();
            h->refs.clear();
          }
          return ci.Env().Undefined();
        }));
  o.AddFinalizer([](Napi::Env, ModelHolder* hh) { delete hh; }, h);
  return o;
}

// gemm({x, m, k, w, n, y, accumulate, mode, threads, wDtype?, bf16?}) -> task; wDtype 1 (F16) or 2 (BF16):
// w is 16-bit (gemm_w16, no accumulate); bf16: compute on bf16-rounded operands (gemm_bf16)
static Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "gemm");
  const View x = job.view("x"), w = job.view("w"), y = job.view("y");
  const size_t m = job.count("m"), k = job.count("k"), n = job.count("n");
  const bool acc = job.flag("accumulate");
  const int mode = job.mode();
  const int wdt = job.has("wDtype") ? job.i32("wDtype") : DTYPE_F32;
  if (wdt != DTYPE_F32 && wdt != DTYPE_F16 && wdt != DTYPE_BF16) throw_js(env, "LOWBIT_INTERNAL", "gemm: wDtype must be 0, 1 or 2");
  if (wdt != DTYPE_F32 && acc) throw_js(env, "LOWBIT_INTERNAL", "gemm: 16-bit weights do not accumulate");
  const bool bf16 = job.has("bf16") && job.flag("bf16");
  if (bf16 && (acc || wdt != DTYPE_F32)) throw_js(env, "LOWBIT_INTERNAL", "gemm: bf16 compute takes f32 operands and does not accumulate");
  if (x.bytes < m * k * 4 || w.bytes < n * k * dtype_size(wdt) || y.bytes < m * n * 4)
    throw_js(env, "LOWBIT_INTERNAL", "gemm: buffer sizes disagree");
  return Task::Start(
      env, "lowbit.gemm",
      [=](TaskContext&) {
        if (bf16) {
          gemm_bf16(reinterpret_cast<const float*>(x.data), m, k, reinterpret_cast<const float*>(w.data), n, reinterpret_cast<float*>(y.data), mode);
          return;
        }
        if (wdt != DTYPE_F32) {
          gemm_w16(reinterpret_cast<const float*>(x.data), m, k, reinterpret_cast<const uint16_t*>(w.data), wdt, n, reinterpret_cast<float*>(y.data),
                   mode);
          return;
        }
        gemm(reinterpret_cast<const float*>(x.data), m, k, reinterpret_cast<const float*>(w.data), n, reinterpret_cast<float*>(y.data), acc, mode);
      },
      [](Napi::Env e) { return e.Undefined(); }, {job.get("x"), job.get("w"), job.get("y")}, Napi::Value(), 0.0, job.threads());
}

// hessian({x, n, cols, H, sumAbs|null, maxAbs|null, mode, threads}) -> task (see quant/hessian.h)
static Napi::Value Hessian(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "hessian");
  const View x = job.view("x"), H = job.view("H");
  const size_t n = job.count("n"), cols = job.count("cols");
  const View sa = job.view_or_null("sumAbs"), ma = job.view_or_null("maxAbs");
  const int mode = job.mode();
  if (x.bytes < n * cols * 4 || H.bytes < cols * cols * 4 || (sa.data && sa.bytes < cols * 4) || (ma.data && ma.bytes < cols * 4))
    throw_js(env, "LOWBIT_INTERNAL", "hessian: sizes");
  return Task::Start(
      env, "lowbit.hessian",
      [=](TaskContext& ctx) {
        hessian_accumulate(reinterpret_cast<const float*>(x.data), n, cols, reinterpret_cast<float*>(H.data), reinterpret_cast<float*>(sa.data),
                           reinterpret_cast<float*>(ma.data), mode, &ctx);
      },
      [](Napi::Env e) { return e.Undefined(); }, {job.get("x"), job.get("H"), job.get("sumAbs"), job.get("maxAbs")}, Napi::Value(), 0.0,
      job.threads());
}

// qgemmGptq4(job) -> task: y = x · Wᵀ from GPTQ 4-bit words (see kernels/qgemm.h)
static Napi::Value QGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "qgemmGptq4");
  QGemmArgs a;
  a.m = j.count("m");
  a.in = j.count("inFeatures");
  a.out = j.count("outFeatures");
  a.groups = j.count("groups");
  const int mode = j.mode();
  const View x = j.view("x"), q = j.view("qweight"), s = j.view("scales");
  const View z = j.view("zeros"), g = j.view("gIdx"), y = j.view("y");
  if (a.in % 8 || x.bytes < a.m * a.in * 4 || q.bytes < a.in / 8 * a.out * 4 || s.bytes < a.groups * a.out * 4 || z.bytes < a.groups * a.out ||
      g.bytes < a.in * 4 || y.bytes < a.m * a.out * 4)
    throw_js(env, "LOWBIT_INTERNAL", "qgemmGptq4: buffer sizes disagree");
  const int32_t* gi = reinterpret_cast<const int32_t*>(g.data);
  for (size_t k = 0; k < a.in; k++)
    if (gi[k] < 0 || (size_t)gi[k] >= a.groups)
      throw_js(env, "LOWBIT_BAD_FORMAT", "g_idx[" + std::to_string(k) + "] = " + std::to_string(gi[k]) + " is outside [0, groups)");
  a.x = reinterpret_cast<const float*>(x.data);
  a.qweight = reinterpret_cast<const int32_t*>(q.data);
  a.scales = reinterpret_cast<const float*>(s.data);
  a.zeros = z.data;
  a.g_idx = gi;
  a.y = reinterpret_cast<float*>(y.data);
  return Task::Start(
      env, "lowbit.qgemm", [a, mode](TaskContext&) { qgemm_gptq4(a, mode); }, [](Napi::Env e) { return e.Undefined(); },
      {j.get("x"), j.get("qweight"), j.get("scales"), j.get("zeros"), j.get("gIdx"), j.get("y")}, Napi::Value(), 0.0, j.threads());
}

void register_runtime(Napi::Env env, Napi::Object exports) {
  exports.Set("qgemmGptq4", Napi::Function::New(env, QGemm, "qgemmGptq4"));
  exports.Set("hessian", Napi::Function::New(env, Hessian, "hessian"));
  exports.Set("createModel", Napi::Function::New(env, CreateModel, "createModel"));
  exports.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
}

}  // namespace lowbit
