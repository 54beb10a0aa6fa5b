// The CUDA variant's extra exports (built only with LOWBIT_CUDA), each an async task over the
// host entries of kernels/cuda/cuda_api.h (kernels) and quant/cuda/gptq_cuda.h (GPTQ's steps):
//   cudaInfo()                       device/driver report (sync, microseconds)
//   cudaDequantInt4(job)             GPTQ int4 → f32 W
//   cudaQgemm(job)                   y = x·Wᵀ from GPTQ 4/8-bit words (GEMV or tensor cores)
//   cudaGemmF16(job)                 the fp16 GEMM of the same shape (benchmark baseline)
//   cudaHessian(job)                 H = beta·H + alpha·XᵀX
//   cudaInverseFactor(job)           U with Uᵀ U = H⁻¹
//   cudaGptqLayer(job)               GPTQ of one layer (same job and outputs as gptqLayer)
//   cudaBenchCopy(bytes, repeats)    device-to-device copy times (bandwidth reference)
// Buffer sizes are checked here on the main thread (LOWBIT_INTERNAL: lib/cuda.ts validates user
// input first); the host entries check shapes/options before touching the device, so those
// errors reach JS even on a machine without a GPU, where everything else is LOWBIT_NO_CUDA.
#include <memory>
#include <string>

#include "addon/gptq_js.h"
#include "addon/task.h"
#include "kernels/cuda/cuda_api.h"
#include "quant/cuda/gptq_cuda.h"

namespace lowbit {

namespace {

Napi::Array ms_array(Napi::Env env, const std::vector<float>& ms) {
  Napi::Array a = Napi::Array::New(env, ms.size());
  for (size_t i = 0; i < ms.size(); i++) a.Set((uint32_t)i, (double)ms[i]);
  return a;
}

Napi::Object run_stats(Napi::Env env, const CudaRunStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ms", ms_array(env, s.ms));
  o.Set("deviceBytes", (double)s.device_bytes);
  o.Set("kernel", s.kernel == QGEMM_GEMV ? "gemv" : "mma");
  o.Set("splits", s.splits);
  o.Set("groupSize", s.group_size);
  return o;
}

void need(Napi::Env env, bool ok, const std::string& what) {
  if (!ok) throw_js(env, "LOWBIT_INTERNAL", what);
}

}  // namespace

static Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CudaStatus s = cuda_status();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", true);
  o.Set("runtimeVersion", s.runtime_version);
  o.Set("driverVersion", s.driver_version);
  o.Set("deviceCount", s.device_count);
  Napi::Array devs = Napi::Array::New(env, s.devices.size());
  for (size_t i = 0; i < s.devices.size(); i++) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", s.devices[i].name);
    d.Set("major", s.devices[i].major);
    d.Set("minor", s.devices[i].minor);
    d.Set("totalMemory", (double)s.devices[i].total_memory);
    d.Set("multiProcessors", s.devices[i].multi_processors);
    devs.Set((uint32_t)i, d);
  }
  o.Set("devices", devs);
  o.Set("error", s.error.empty() ? env.Null() : Napi::String::New(env, s.error));
  return o;
}

static Napi::Value CudaDequantInt4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object job = info[0].As<Napi::Object>();
  const int rows = (int)num(job, "rows"), cols = (int)num(job, "cols"), groups = (int)num(job, "groups");
  View q = view_of(job.Get("qweight"), "qweight"), s = view_of(job.Get("scales"), "scales"), z = view_of(job.Get("zeros"), "zeros");
  View g = view_of(job.Get("gIdx"), "gIdx"), out = view_of(job.Get("out"), "out");
  if (cols % 8 || q.bytes < (size_t)cols / 8 * rows * 4 || s.bytes < (size_t)groups * rows * 4 || z.bytes < (size_t)groups * rows ||
      g.bytes < (size_t)cols * 4 || out.bytes < (size_t)rows * cols * 4)
    throw_js(env, "LOWBIT_INTERNAL", "cudaDequantInt4: buffer sizes disagree with rows/cols/groups");
  auto ms = std::make_shared<float>(0.0f);
  return Task::Start(
      env, "lowbit.cudaDequantInt4",
      [=](TaskContext&) {
        *ms = dequant_gptq_int4_cuda(reinterpret_cast<const int32_t*>(q.data), reinterpret_cast<const float*>(s.data), z.data,
                                     reinterpret_cast<const int32_t*>(g.data), rows, cols, groups, reinterpret_cast<float*>(out.data));
      },
      [ms](Napi::Env e) {
        Napi::Object o = Napi::Object::New(e);
        o.Set("kernelMs", *ms);
        return o;
      },
      {job.Get("qweight"), job.Get("scales"), job.Get("zeros"), job.Get("gIdx"), job.Get("out")});
}

// cudaQgemm({x, xDtype, m, inFeatures, outFeatures, bits, groups, qweight, scales, zeros, gIdx, y, kernel, warmup, repeats, cold})
static Napi::Value CudaQgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object job = info[0].As<Napi::Object>();
  QgemmHostArgs a;
  a.x_dtype = (int)num(job, "xDtype");
  a.m = (int)num(job, "m");
  a.in = (int)num(job, "inFeatures");
  a.out = (int)num(job, "outFeatures");
  a.bits = (int)num(job, "bits");
  a.groups = (int)num(job, "groups");
  const int kernel = (int)num(job, "kernel"), warmup = (int)num(job, "warmup"), repeats = (int)num(job, "repeats");
  const bool cold = flag(job, "cold");
  View x = view_of(job.Get("x"), "x"), q = view_of(job.Get("qweight"), "qweight"), s = view_of(job.Get("scales"), "scales");
  View z = view_of(job.Get("zeros"), "zeros"), g = view_of(job.Get("gIdx"), "gIdx"), y = view_of(job.Get("y"), "y");
  need(env, a.m >= 1 && a.in >= 1 && a.out >= 1 && a.groups >= 1, "cudaQgemm: m, inFeatures, outFeatures, groups must be positive");
  // other bit widths and in_features that the word does not divide are the host entry's errors
  // (LOWBIT_UNSUPPORTED / LOWBIT_SHAPE_MISMATCH), raised before qweight is read
  const size_t xb = (size_t)a.m * a.in * (a.x_dtype == CUDA_F16 ? 2 : 4);
  const size_t wb = a.bits == 4 || a.bits == 8 ? (size_t)a.in * a.bits / 32 * a.out * 4 : 0;
  need(env,
       x.bytes >= xb && q.bytes >= wb && s.bytes >= (size_t)a.groups * a.out * 4 && z.bytes >= (size_t)a.groups * a.out &&
           g.bytes >= (size_t)a.in * 4 && y.bytes >= (size_t)a.m * a.out * 4,
       "cudaQgemm: buffer sizes disagree with m/in/out/groups/bits");
  a.x = x.data;
  a.qweight = reinterpret_cast<const int32_t*>(q.data);
  a.scales = reinterpret_cast<const float*>(s.data);
  a.zeros = z.data;
  a.g_idx = reinterpret_cast<const int32_t*>(g.data);
  a.y = reinterpret_cast<float*>(y.data);
  auto st = std::make_shared<CudaRunStats>();
  return Task::Start(
      env, "lowbit.cudaQgemm", [=](TaskContext&) { *st = qgemm_gptq_cuda(a, kernel, warmup, repeats, cold); },
      [st](Napi::Env e) { return run_stats(e, *st); },
      {job.Get("x"), job.Get("qweight"), job.Get("scales"), job.Get("zeros"), job.Get("gIdx"), job.Get("y")});
}

// cudaGemmF16({x, w, m, inFeatures, outFeatures, y, warmup, repeats, cold}); x, w f32 (rounded to f16 on the device)
static Napi::Value CudaGemmF16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object job = info[0].As<Napi::Object>();
  const int m = (int)num(job, "m"), in = (int)num(job, "inFeatures"), out = (int)num(job, "outFeatures");
  const int warmup = (int)num(job, "warmup"), repeats = (int)num(job, "repeats");
  const bool cold = flag(job, "cold");
  View x = view_of(job.Get("x"), "x"), w = view_of(job.Get("w"), "w"), y = view_of(job.Get("y"), "y");
  need(env, m >= 1 && in >= 1 && out >= 1 && x.bytes >= (size_t)m * in * 4 && w.bytes >= (size_t)out * in * 4 && y.bytes >= (size_t)m * out * 4,
       "cudaGemmF16: buffer sizes disagree with m/in/out");
  auto st = std::make_shared<CudaRunStats>();
  return Task::Start(
      env, "lowbit.cudaGemmF16",
      [=](TaskContext&) {
        *st = gemm_f16_cuda(reinterpret_cast<const float*>(x.data), reinterpret_cast<const float*>(w.data), m, in, out,
                            reinterpret_cast<float*>(y.data), warmup, repeats, cold);
      },
      [st](Napi::Env e) { return run_stats(e, *st); }, {job.Get("x"), job.Get("w"), job.Get("y")});
}

// cudaHessian({x, n, cols, H, alpha, beta})
static Napi::Value CudaHessian(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object job = info[0].As<Napi::Object>();
  const size_t n = (size_t)num(job, "n"), cols = (size_t)num(job, "cols");
  const float alpha = (float)num(job, "alpha"), beta = (float)num(job, "beta");
  View x = view_of(job.Get("x"), "x"), H = view_of(job.Get("H"), "H");
  need(env, x.bytes >= n * cols * 4 && H.bytes >= cols * cols * 4, "cudaHessian: buffer sizes disagree with n/cols");
  auto st = std::make_shared<CudaRunStats>();
  return Task::Start(
      env, "lowbit.cudaHessian",
      [=](TaskContext&) {
        *st = hessian_accumulate_cuda(reinterpret_cast<const float*>(x.data), n, cols, reinterpret_cast<float*>(H.data), alpha, beta);
      },
      [st](Napi::Env e) { return run_stats(e, *st); }, {job.Get("x"), job.Get("H")});
}

// cudaInverseFactor({H, n, U}) -> {ok, ms, deviceBytes}
static Napi::Value CudaInverseFactor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object job = info[0].As<Napi::Object>();
  const size_t n = (size_t)num(job, "n");
  View H = view_of(job.Get("H"), "H"), U = view_of(job.Get("U"), "U");
  need(env, H.bytes >= n * n * 4 && U.bytes >= n * n * 4, "cudaInverseFactor: buffer sizes disagree with n");
  auto st = std::make_shared<CudaRunStats>();
  auto ok = std::make_shared<bool>(false);
  return Task::Start(
      env, "lowbit.cudaInverseFactor",
      [=](TaskContext&) { *ok = gptq_inverse_factor_cuda(reinterpret_cast<const float*>(H.data), n, reinterpret_cast<float*>(U.data), st.get()); },
      [st, ok](Napi::Env e) {
        Napi::Object o = run_stats(e, *st);
        o.Set("ok", *ok);
        return o;
      },
      {job.Get("H"), job.Get("U")});
}

// cudaGptqLayer(job): the job of gptqLayer (addon_gptq.cpp) without `mode`.
static Napi::Value CudaGptqLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object job = info[0].As<Napi::Object>();
  const size_t rows = (size_t)num(job, "rows"), cols = (size_t)num(job, "cols");
  GptqSpec spec = gptq_spec_from_js(job);
  need(env, rows >= 1 && cols >= 1 && spec.q.group_size >= 1, "cudaGptqLayer: rows, cols and groupSize must be positive");
  const size_t gs = std::min((size_t)spec.q.group_size, cols);
  const size_t G = gs < cols ? (cols + gs - 1) / gs : 1;
  View W = view_of(job.Get("weight"), "weight"), H = view_of(job.Get("hessian"), "hessian"), codes = view_of(job.Get("codes"), "codes");
  View sc = view_of(job.Get("scales"), "scales"), ze = view_of(job.Get("zeros"), "zeros"), gi = view_of(job.Get("gIdx"), "gIdx");
  const Napi::Value dqv = job.Get("dequant");
  const bool has_dq = !dqv.IsNull() && !dqv.IsUndefined();
  View dq = has_dq ? view_of(dqv, "dequant") : View{};
  need(env,
       W.bytes >= rows * cols * 4 && H.bytes >= cols * cols * 4 && codes.bytes >= rows * cols && sc.bytes >= rows * G * 4 && ze.bytes >= rows * G &&
           gi.bytes >= cols * 4 && (!has_dq || dq.bytes >= rows * cols * 4),
       "cudaGptqLayer: buffer sizes disagree with rows/cols/groupSize");
  auto res = std::make_shared<GptqOutput>();
  res->codes = codes.data;
  res->scales = reinterpret_cast<float*>(sc.data);
  res->zeros = ze.data;
  res->g_idx = reinterpret_cast<int32_t*>(gi.data);
  res->dequant = has_dq ? reinterpret_cast<float*>(dq.data) : nullptr;
  auto st = std::make_shared<GptqCudaStats>();
  return Task::Start(
      env, "lowbit.cudaGptqLayer",
      [=](TaskContext& ctx) {
        gptq_quantize_cuda(reinterpret_cast<const float*>(W.data), reinterpret_cast<const float*>(H.data), rows, cols, spec, *res, &ctx, st.get());
      },
      [res, st](Napi::Env e) {
        Napi::Object o = Napi::Object::New(e);
        o.Set("loss", res->loss);
        o.Set("dampUsed", res->damp_used);
        o.Set("msTotal", st->ms_total);
        o.Set("msPrepare", st->ms_prepare);
        o.Set("msFactor", st->ms_factor);
        o.Set("msSweep", st->ms_sweep);
        o.Set("msCopy", st->ms_copy);
        o.Set("deviceBytes", (double)st->device_bytes);
        o.Set("factorAttempts", st->factor_attempts);
        return o;
      },
      {job.Get("weight"), job.Get("hessian"), job.Get("codes"), job.Get("scales"), job.Get("zeros"), job.Get("gIdx"), dqv}, job.Get("onProgress"),
      (double)cols);
}

// cudaBenchCopy(bytes, repeats) -> {ms}
static Napi::Value CudaBenchCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double bytes = info[0].As<Napi::Number>().DoubleValue();
  const int repeats = info[1].As<Napi::Number>().Int32Value();
  need(env, bytes >= 1 && repeats >= 1, "cudaBenchCopy: bytes and repeats must be positive");
  auto ms = std::make_shared<std::vector<float>>();
  return Task::Start(
      env, "lowbit.cudaBenchCopy", [=](TaskContext&) { *ms = copy_bench_cuda((size_t)bytes, repeats); },
      [ms](Napi::Env e) {
        Napi::Object o = Napi::Object::New(e);
        o.Set("ms", ms_array(e, *ms));
        return o;
      },
      {});
}

void register_cuda(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo, "cudaInfo"));
  exports.Set("cudaDequantInt4", Napi::Function::New(env, CudaDequantInt4, "cudaDequantInt4"));
  exports.Set("cudaQgemm", Napi::Function::New(env, CudaQgemm, "cudaQgemm"));
  exports.Set("cudaGemmF16", Napi::Function::New(env, CudaGemmF16, "cudaGemmF16"));
  exports.Set("cudaHessian", Napi::Function::New(env, CudaHessian, "cudaHessian"));
  exports.Set("cudaInverseFactor", Napi::Function::New(env, CudaInverseFactor, "cudaInverseFactor"));
  exports.Set("cudaGptqLayer", Napi::Function::New(env, CudaGptqLayer, "cudaGptqLayer"));
  exports.Set("cudaBenchCopy", Napi::Function::New(env, CudaBenchCopy, "cudaBenchCopy"));
}

}  // namespace lowbit
