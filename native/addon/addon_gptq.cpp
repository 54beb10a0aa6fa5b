// gptqLayer(job) -> task resolving {loss, dampUsed}; cholesky(A, n, mode) / gptqInverseFactor(H, n, U, mode)
// for tests and benchmarks. See quant/gptq.h and quant/linalg.h.
#include "addon/gptq_js.h"
#include "addon/task.h"
#include "quant/gptq.h"
#include "quant/linalg.h"

namespace lowbit {

static Napi::Value GptqLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object job = info[0].As<Napi::Object>();
  const size_t rows = (size_t)num(job, "rows"), cols = (size_t)num(job, "cols");
  GptqSpec spec = gptq_spec_from_js(job);
  const int mode = (int)num(job, "mode");
  const size_t gs = std::min((size_t)spec.q.group_size, cols);
  const size_t G = gs < cols ? (cols + gs - 1) / gs : 1;
  View W = view_of(job.Get("weight"), "weight"), H = view_of(job.Get("hessian"), "hessian"), codes = view_of(job.Get("codes"), "codes");
  View sc = view_of(job.Get("scales"), "scales"), ze = view_of(job.Get("zeros"), "zeros"), gi = view_of(job.Get("gIdx"), "gIdx");
  View dq = view_of(job.Get("dequant"), "dequant");
  if (W.bytes < rows * cols * 4 || H.bytes < cols * cols * 4 || codes.bytes < rows * cols || sc.bytes < rows * G * 4 || ze.bytes < rows * G ||
      gi.bytes < cols * 4 || dq.bytes < rows * cols * 4 || spec.q.bits < 2 || spec.q.bits > 8)
    throw_js(env, "LOWBIT_INTERNAL", "gptqLayer: buffer sizes disagree");
  auto res = std::make_shared<GptqOutput>();
  res->codes = codes.data;
  res->scales = reinterpret_cast<float*>(sc.data);
  res->zeros = ze.data;
  res->g_idx = reinterpret_cast<int32_t*>(gi.data);
  res->dequant = reinterpret_cast<float*>(dq.data);
  return Task::Start(
      env, "lowbit.gptqLayer",
      [=](TaskContext& ctx) {
        gptq_quantize(reinterpret_cast<const float*>(W.data), reinterpret_cast<const float*>(H.data), rows, cols, spec, *res, mode, &ctx);
      },
      [res](Napi::Env e) {
        Napi::Object o = Napi::Object::New(e);
        o.Set("loss", res->loss);
        o.Set("dampUsed", res->damp_used);
        return o;
      },
      {job.Get("weight"), job.Get("hessian"), job.Get("codes"), job.Get("scales"), job.Get("zeros"), job.Get("gIdx"), job.Get("dequant")},
      job.Get("onProgress"), (double)cols);
}

// gptqInverseFactor(H, n, U, mode) -> task resolving {ok}
static Napi::Value InverseFactor(const Napi::CallbackInfo& info) {
  View H = view_of(info[0], "H"), U = view_of(info[2], "U");
  const size_t n = (size_t)info[1].As<Napi::Number>().DoubleValue();
  const int mode = info[3].As<Napi::Number>().Int32Value();
  if (H.bytes < n * n * 4 || U.bytes < n * n * 4) throw_js(info.Env(), "LOWBIT_INTERNAL", "gptqInverseFactor: sizes");
  auto ok = std::make_shared<bool>(false);
  return Task::Start(
      info.Env(), "lowbit.inverseFactor",
      [=](TaskContext& ctx) { *ok = gptq_inverse_factor(reinterpret_cast<const float*>(H.data), n, reinterpret_cast<float*>(U.data), mode, &ctx); },
      [ok](Napi::Env e) {
        Napi::Object o = Napi::Object::New(e);
        o.Set("ok", *ok);
        return o;
      },
      {info[0], info[2]});
}

void register_gptq(Napi::Env env, Napi::Object exports) {
  exports.Set("gptqLayer", Napi::Function::New(env, GptqLayer, "gptqLayer"));
  exports.Set("gptqInverseFactor", Napi::Function::New(env, InverseFactor, "gptqInverseFactor"));
}

}  // namespace lowbit
