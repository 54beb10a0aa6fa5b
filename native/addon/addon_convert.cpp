// convert({src, srcDtype, dst, dstDtype, saturate, mode, threads, onProgress}) -> task,
// convertSync({...the same, no onProgress}) -> {overflow, firstOverflow}: f32 <-> f16 <-> bf16 over
// typed arrays (see kernels/convert.h).
// ggmlEncodeSync({type, x, out, threads}): ggml's Q8_0 / Q4_0 / Q4_1 / Q4_K block encoders (kernels/ggml_encode.h).
#include "addon/task.h"
#include "kernels/convert.h"
#include "kernels/ggml_encode.h"

namespace lowbit {

struct ConvertArgs {
  View src, dst;
  int sdt, ddt;
  bool saturate;
  int mode;
  size_t n;
};

static ConvertArgs parse(const Job& job) {
  ConvertArgs a;
  a.src = job.view("src");
  a.sdt = job.i32("srcDtype");
  a.dst = job.view("dst");
  a.ddt = job.i32("dstDtype");
  a.saturate = job.flag("saturate");
  a.mode = job.mode();
  if (a.sdt < 0 || a.sdt > 2) job.fail("srcDtype", "a dtype id 0 (f32), 1 (f16) or 2 (bf16)");
  if (a.ddt < 0 || a.ddt > 2) job.fail("dstDtype", "a dtype id 0 (f32), 1 (f16) or 2 (bf16)");
  a.n = a.src.bytes / dtype_size(a.sdt);
  if (a.src.bytes % dtype_size(a.sdt) || a.dst.bytes < a.n * dtype_size(a.ddt))
    throw_js(job.env(), "LOWBIT_INTERNAL", std::string(job.fn()) + ": buffer sizes disagree");
  return a;
}

static Napi::Value result(Napi::Env env, const ConvertResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("overflow", (double)r.overflow);
  o.Set("firstOverflow", r.overflow ? (double)r.first_overflow : -1.0);
  return o;
}

static Napi::Value ConvertSync(const Napi::CallbackInfo& info) {
  const Job job(info, "convertSync");
  const ConvertArgs a = parse(job);
  ConvertResult r;
  {
    ScopedThreads st(job.threads());
    convert(a.src.data, a.sdt, a.dst.data, a.ddt, a.n, a.saturate, a.mode, &r, nullptr);
  }
  return result(info.Env(), r);
}

static Napi::Value ConvertAsync(const Napi::CallbackInfo& info) {
  const Job job(info, "convert");
  const ConvertArgs a = parse(job);
  auto r = std::make_shared<ConvertResult>();
  return Task::Start(
      info.Env(), "lowbit.convert",
      [a, r](TaskContext& ctx) { convert(a.src.data, a.sdt, a.dst.data, a.ddt, a.n, a.saturate, a.mode, r.get(), &ctx); },
      [r](Napi::Env env) { return result(env, *r); }, {job.get("src"), job.get("dst")}, job.get("onProgress"), (double)a.n, job.threads());
}

// firstNonFiniteSync({src, dtype, mode, threads}) -> the index of the first NaN/±Inf element of src
// read as dtype (0 f32, 1 f16, 2 bf16), or -1. Synchronous: the scan runs at memory bandwidth
// (a 1 GB tensor is tens of milliseconds), and readers call it as they hand out a tensor's bytes.
static Napi::Value FirstNonFiniteSync(const Napi::CallbackInfo& info) {
  const Job job(info, "firstNonFiniteSync");
  const View src = job.view("src");
  const int dt = job.i32("dtype");
  if (dt < 0 || dt > 2) job.fail("dtype", "a dtype id 0 (f32), 1 (f16) or 2 (bf16)");
  if (src.bytes % dtype_size(dt)) throw_js(info.Env(), "LOWBIT_INTERNAL", "firstNonFiniteSync: byte length is not a multiple of the element size");
  size_t r;
  {
    ScopedThreads st(job.threads());
    r = first_nonfinite(src.data, dt, src.bytes / dtype_size(dt), job.mode());
  }
  return Napi::Number::New(info.Env(), r == SIZE_MAX ? -1.0 : (double)r);
}

// ggmlEncodeSync({type 0|1|2|3 = Q8_0|Q4_0|Q4_1|Q4_K, x: Float32Array, out: Uint8Array, threads}) -> false when a value
// is not finite or a scale overflows fp16 (the caller's reference encoder then reports which).
static Napi::Value GgmlEncodeSync(const Napi::CallbackInfo& info) {
  const Job job(info, "ggmlEncodeSync");
  const int type = job.i32("type");
  const View x = job.view("x"), out = job.view("out");
  const size_t bb = ggml_encode_block_bytes(type), bv = ggml_encode_block_values(type), n = x.bytes / 4;
  if (!bb || x.bytes % (bv * 4) || out.bytes < n / bv * bb) throw_js(info.Env(), "LOWBIT_INTERNAL", "ggmlEncodeSync: type or buffer sizes disagree");
  ScopedThreads st(job.threads());
  return Napi::Boolean::New(info.Env(), ggml_encode(type, reinterpret_cast<const float*>(x.data), n, out.data));
}

void register_convert(Napi::Env env, Napi::Object exports) {
  exports.Set("ggmlEncodeSync", Napi::Function::New(env, GgmlEncodeSync, "ggmlEncodeSync"));
  exports.Set("convert", Napi::Function::New(env, ConvertAsync, "convert"));
  exports.Set("firstNonFiniteSync", Napi::Function::New(env, FirstNonFiniteSync, "firstNonFiniteSync"));
  exports.Set("convertSync", Napi::Function::New(env, ConvertSync, "convertSync"));
}

}  // namespace lowbit
