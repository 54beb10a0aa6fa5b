// convert / convertSync: f32 <-> f16 <-> bf16 over typed arrays (see kernels/convert.h).
#include "addon/task.h"
#include "kernels/convert.h"

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

void register_convert(Napi::Env env, Napi::Object exports) {
  exports.Set("convert", Napi::Function::New(env, ConvertAsync, "convert"));
  exports.Set("convertSync", Napi::Function::New(env, ConvertSync, "convertSync"));
}

}  // namespace lowbit
