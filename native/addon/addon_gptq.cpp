// gptqLayer(job) -> task resolving {loss, dampUsed}; gptqInverseFactor({H, n, U, mode, threads}) for tests
// and benchmarks. See quant/gptq.h and quant/linalg.h.
#include "addon/gptq_js.h"
#include "addon/task.h"
#include "quant/gptq.h"
#include "quant/linalg.h"

namespace lowbit {

static Napi::Value GptqLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "gptqLayer");
  const size_t rows = job.count("rows"), cols = job.count("cols");
  GptqSpec spec = gptq_spec_from_js(job);
  const int mode = job.mode();
  if (spec.q.group_size < 1) job.fail("groupSize", "a positive integer");
  const size_t gs = std::min((size_t)spec.q.group_size, cols);
  const size_t G = gs < cols ? (cols + gs - 1) / gs : 1;
  const View W = job.view("weight"), H = job.view("hessian"), codes = job.view("codes");
  const View sc = job.view("scales"), ze = job.view("zeros"), gi = job.view("gIdx");
  const View dq = job.view("dequant");
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
      {job.get("weight"), job.get("hessian"), job.get("codes"), job.get("scales"), job.get("zeros"), job.get("gIdx"), job.get("dequant")},
      job.get("onProgress"), (double)cols, job.threads());
}

// gptqInverseFactor({H, n, U, mode, threads}) -> task resolving {ok}
static Napi::Value InverseFactor(const Napi::CallbackInfo& info) {
  const Job job(info, "gptqInverseFactor");
  const View H = job.view("H"), U = job.view("U");
  const size_t n = job.count("n");
  const int mode = job.mode();
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
      {job.get("H"), job.get("U")}, Napi::Value(), 0.0, job.threads());
}

void register_gptq(Napi::Env env, Napi::Object exports) {
  exports.Set("gptqLayer", Napi::Function::New(env, GptqLayer, "gptqLayer"));
  exports.Set("gptqInverseFactor", Napi::Function::New(env, InverseFactor, "gptqInverseFactor"));
}

}  // namespace lowbit
