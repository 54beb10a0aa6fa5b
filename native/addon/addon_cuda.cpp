// The CUDA variant's extra exports (built only with LOWBIT_CUDA), each an async task over the
// host entries of kernels/cuda/cuda_api.h (kernels) and quant/cuda/gptq_cuda.h (GPTQ's steps):
//   cudaInfo()                       device/driver report (sync, microseconds)
//   cudaDequantInt4(job)             GPTQ int4 → f32 W
//   cudaQgemm(job)                   y = x·Wᵀ from GPTQ 4/8-bit words (GEMV or tensor cores)
//   cudaGemmF16(job)                 the fp16 GEMM of the same shape (benchmark baseline)
//   cudaHessian(job)                 H = beta·H + alpha·XᵀX
//   cudaInverseFactor(job)           U with Uᵀ U = H⁻¹
//   cudaGptqLayer(job)               GPTQ of one layer (same job and outputs as gptqLayer)
//   cudaBenchCopy(job)               device-to-device copy times (bandwidth reference)
// Each takes one job object read with Job (addon/task.h: a bad field is LOWBIT_INTERNAL naming it);
// the job's `threads` (0: the process default) covers the host-side work of the call.
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
  const Job job(info, "cudaDequantInt4");
  const int rows = job.i32("rows"), cols = job.i32("cols"), groups = job.i32("groups");
  const View q = job.view("qweight"), s = job.view("scales"), z = job.view("zeros");
  const View g = job.view("gIdx"), out = job.view("out");
  if (rows < 0 || cols < 0 || groups < 0 || cols % 8 || q.bytes < (size_t)cols / 8 * rows * 4 || s.bytes < (size_t)groups * rows * 4 ||
      z.bytes < (size_t)groups * rows || g.bytes < (size_t)cols * 4 || out.bytes < (size_t)rows * cols * 4)
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
      {job.get("qweight"), job.get("scales"), job.get("zeros"), job.get("gIdx"), job.get("out")}, Napi::Value(), 0.0, job.threads());
}

// cudaQgemm({x, xDtype, m, inFeatures, outFeatures, bits, groups, qweight, scales, zeros, gIdx, y, kernel, warmup, repeats, cold})
static Napi::Value CudaQgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "cudaQgemm");
  QgemmHostArgs a;
  a.x_dtype = job.i32("xDtype");
  a.m = job.i32("m");
  a.in = job.i32("inFeatures");
  a.out = job.i32("outFeatures");
  a.bits = job.i32("bits");
  a.groups = job.i32("groups");
  const int kernel = job.i32("kernel"), warmup = job.i32("warmup"), repeats = job.i32("repeats");
  const bool cold = job.flag("cold");
  const View x = job.view("x"), q = job.view("qweight"), s = job.view("scales");
  const View z = job.view("zeros"), g = job.view("gIdx"), y = job.view("y");
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
      {job.get("x"), job.get("qweight"), job.get("scales"), job.get("zeros"), job.get("gIdx"), job.get("y")}, Napi::Value(), 0.0, job.threads());
}

// cudaGemmF16({x, w, m, inFeatures, outFeatures, y, warmup, repeats, cold}); x, w f32 (rounded to f16 on the device)
static Napi::Value CudaGemmF16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "cudaGemmF16");
  const int m = job.i32("m"), in = job.i32("inFeatures"), out = job.i32("outFeatures");
  const int warmup = job.i32("warmup"), repeats = job.i32("repeats");
  const bool cold = job.flag("cold");
  const View x = job.view("x"), w = job.view("w"), y = job.view("y");
  need(env, m >= 1 && in >= 1 && out >= 1 && x.bytes >= (size_t)m * in * 4 && w.bytes >= (size_t)out * in * 4 && y.bytes >= (size_t)m * out * 4,
       "cudaGemmF16: buffer sizes disagree with m/in/out");
  auto st = std::make_shared<CudaRunStats>();
  return Task::Start(
      env, "lowbit.cudaGemmF16",
      [=](TaskContext&) {
        *st = gemm_f16_cuda(reinterpret_cast<const float*>(x.data), reinterpret_cast<const float*>(w.data), m, in, out,
                            reinterpret_cast<float*>(y.data), warmup, repeats, cold);
      },
      [st](Napi::Env e) { return run_stats(e, *st); }, {job.get("x"), job.get("w"), job.get("y")}, Napi::Value(), 0.0, job.threads());
}

// cudaHessian({x, n, cols, H, alpha, beta})
static Napi::Value CudaHessian(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "cudaHessian");
  const size_t n = job.count("n"), cols = job.count("cols");
  const float alpha = (float)job.num("alpha"), beta = (float)job.num("beta");
  const View x = job.view("x"), H = job.view("H");
  need(env, x.bytes >= n * cols * 4 && H.bytes >= cols * cols * 4, "cudaHessian: buffer sizes disagree with n/cols");
  auto st = std::make_shared<CudaRunStats>();
  return Task::Start(
      env, "lowbit.cudaHessian",
      [=](TaskContext&) {
        *st = hessian_accumulate_cuda(reinterpret_cast<const float*>(x.data), n, cols, reinterpret_cast<float*>(H.data), alpha, beta);
      },
      [st](Napi::Env e) { return run_stats(e, *st); }, {job.get("x"), job.get("H")}, Napi::Value(), 0.0, job.threads());
}

// cudaInverseFactor({H, n, U}) -> {ok, ms, deviceBytes}
static Napi::Value CudaInverseFactor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "cudaInverseFactor");
  const size_t n = job.count("n");
  const View H = job.view("H"), U = job.view("U");
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
      {job.get("H"), job.get("U")}, Napi::Value(), 0.0, job.threads());
}

// cudaGptqLayer(job): the job of gptqLayer (addon_gptq.cpp) without `mode`.
static Napi::Value CudaGptqLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "cudaGptqLayer");
  const size_t rows = job.count("rows"), cols = job.count("cols");
  GptqSpec spec = gptq_spec_from_js(job);
  need(env, rows >= 1 && cols >= 1 && spec.q.group_size >= 1, "cudaGptqLayer: rows, cols and groupSize must be positive");
  const size_t gs = std::min((size_t)spec.q.group_size, cols);
  const size_t G = gs < cols ? (cols + gs - 1) / gs : 1;
  const View W = job.view("weight"), H = job.view("hessian"), codes = job.view("codes");
  const View sc = job.view("scales"), ze = job.view("zeros"), gi = job.view("gIdx");
  const View dq = job.view_or_null("dequant");
  const bool has_dq = dq.data != nullptr;
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
      {job.get("weight"), job.get("hessian"), job.get("codes"), job.get("scales"), job.get("zeros"), job.get("gIdx"), job.get("dequant")},
      job.get("onProgress"), (double)cols, job.threads());
}

// cudaBenchCopy({bytes, repeats}) -> {ms}
static Napi::Value CudaBenchCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "cudaBenchCopy");
  const double bytes = (double)job.count("bytes");
  const int repeats = job.i32("repeats");
  need(env, bytes >= 1 && repeats >= 1, "cudaBenchCopy: bytes and repeats must be positive");
  auto ms = std::make_shared<std::vector<float>>();
  return Task::Start(
      env, "lowbit.cudaBenchCopy", [=](TaskContext&) { *ms = copy_bench_cuda((size_t)bytes, repeats); },
      [ms](Napi::Env e) {
        Napi::Object o = Napi::Object::New(e);
        o.Set("ms", ms_array(e, *ms));
        return o;
      },
      {}, Napi::Value(), 0.0, job.threads());
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
