// convert / convertSync: f32 <-> f16 <-> bf16 over typed arrays (see kernels/convert.h).
// ggmlEncodeSync(type, x, out): ggml's Q8_0 / Q4_0 / Q4_1 / Q4_K block encoders (kernels/ggml_encode.h).
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

static ConvertArgs parse(const Napi::CallbackInfo& info) {
  ConvertArgs a;
  a.src = view_of(info[0], "src");
  a.sdt = info[1].As<Napi::Number>().Int32Value();
  a.dst = view_of(info[2], "dst");
  a.ddt = info[3].As<Napi::Number>().Int32Value();
  a.saturate = info[4].ToBoolean().Value();
  a.mode = info[5].As<Napi::Number>().Int32Value();
  if (a.sdt < 0 || a.sdt > 2 || a.ddt < 0 || a.ddt > 2) throw_js(info.Env(), "LOWBIT_INTERNAL", "convert: bad dtype id");
  a.n = a.src.bytes / dtype_size(a.sdt);
  if (a.src.bytes % dtype_size(a.sdt) || a.dst.bytes < a.n * dtype_size(a.ddt))
    throw_js(info.Env(), "LOWBIT_INTERNAL", "convert: buffer sizes disagree");
  return a;
}

static Napi::Value result(Napi::Env env, const ConvertResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("overflow", (double)r.overflow);
  o.Set("firstOverflow", r.overflow ? (double)r.first_overflow : -1.0);
  return o;
}

static Napi::Value ConvertSync(const Napi::CallbackInfo& info) {
  ConvertArgs a = parse(info);
  ConvertResult r;
  convert(a.src.data, a.sdt, a.dst.data, a.ddt, a.n, a.saturate, a.mode, &r, nullptr);
  return result(info.Env(), r);
}

static Napi::Value ConvertAsync(const Napi::CallbackInfo& info) {
  ConvertArgs a = parse(info);
  auto r = std::make_shared<ConvertResult>();
  return Task::Start(
      info.Env(), "lowbit.convert",
      [a, r](TaskContext& ctx) { convert(a.src.data, a.sdt, a.dst.data, a.ddt, a.n, a.saturate, a.mode, r.get(), &ctx); },
      [r](Napi::Env env) { return result(env, *r); }, {info[0], info[2]}, info[6], (double)a.n);
}

// ggmlEncodeSync(type 0|1|2|3 = Q8_0|Q4_0|Q4_1|Q4_K, x: Float32Array, out: Uint8Array) -> false when a value is not finite
// or a scale overflows fp16 (the caller's reference encoder then reports which).
static Napi::Value GgmlEncodeSync(const Napi::CallbackInfo& info) {
  const int type = info[0].As<Napi::Number>().Int32Value();
  View x = view_of(info[1], "x"), out = view_of(info[2], "out");
  const size_t bb = ggml_encode_block_bytes(type), bv = ggml_encode_block_values(type), n = x.bytes / 4;
  if (!bb || x.bytes % (bv * 4) || out.bytes < n / bv * bb) throw_js(info.Env(), "LOWBIT_INTERNAL", "ggmlEncodeSync: type or buffer sizes disagree");
  return Napi::Boolean::New(info.Env(), ggml_encode(type, reinterpret_cast<const float*>(x.data), n, out.data));
}

void register_convert(Napi::Env env, Napi::Object exports) {
  exports.Set("ggmlEncodeSync", Napi::Function::New(env, GgmlEncodeSync, "ggmlEncodeSync"));
  exports.Set("convert", Napi::Function::New(env, ConvertAsync, "convert"));
  exports.Set("convertSync", Napi::Function::New(env, ConvertSync, "convertSync"));
}

}  // namespace lowbit
