// info(), setThreads(n): what the addon is and what it runs on.
#include <string>
#include <thread>

#include "addon/task.h"
#include "core/cpu_features.h"
#include "core/dispatch.h"

#ifndef LOWBIT_VERSION
#define LOWBIT_VERSION "0.1.0"
#endif

namespace lowbit {

static const char* variant() {
#if defined(LOWBIT_WITH_CUDA)
  return "cuda";
#else
  return "cpu";
#endif
}

static Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures& f = cpu_features();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", LOWBIT_VERSION);
  o.Set("variant", variant());
#if defined(__clang__)
  o.Set("compiler", std::string("clang ") + __clang_version__);
#elif defined(__GNUC__)
  o.Set("compiler", std::string("gcc ") + __VERSION__);
#else
  o.Set("compiler", "unknown");
#endif
#if defined(__x86_64__)
  o.Set("arch", "x86_64");
#elif defined(__aarch64__)
  o.Set("arch", "arm64");
#else
  o.Set("arch", "other");
#endif
  o.Set("isa", isa_name(active_isa()));
  Napi::Array isas = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& s : compiled_isas()) isas.Set(i++, s);
  o.Set("compiledIsas", isas);
  Napi::Object feats = Napi::Object::New(env);
  for (const auto& kv : f.list()) feats.Set(kv.first, kv.second);
  o.Set("features", feats);
  o.Set("cpuModel", f.model);
  o.Set("physicalCores", physical_cores());
  o.Set("logicalCores", (double)std::thread::hardware_concurrency());
  o.Set("threads", get_threads());
#if defined(LOWBIT_WITH_CUDA)
  o.Set("cuda", true);
#else
  o.Set("cuda", false);
#endif
  return o;
}

static Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  set_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

static Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  std::string name = info[0].As<Napi::String>().Utf8Value();
  Isa want = name == "avx512" ? ISA_AVX512 : name == "avx2" ? ISA_AVX2 : name == "neon" ? ISA_NEON : ISA_GENERIC;
  if (name != "generic" && name != "avx2" && name != "avx512" && name != "neon")
    throw_js(info.Env(), "LOWBIT_INVALID_OPTION", "isa: expected one of generic, avx2, avx512, neon, received \"" + name + "\"");
  return Napi::Boolean::New(info.Env(), set_isa(want));
}

void register_info(Napi::Env env, Napi::Object exports) {
  exports.Set("version", LOWBIT_VERSION);
  exports.Set("variant", variant());
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa, "setIsa"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
}

}  // namespace lowbit
