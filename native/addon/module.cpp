// Module init and the shared Task machinery (see addon/task.h).
#include <napi.h>

#include <cmath>
#include <string>

#include "addon/task.h"

namespace lowbit {

Task::Task(Napi::Env env, const char* name, Work work, Result result)
    : Napi::AsyncProgressWorker<double>(env, name),
      deferred_(Napi::Promise::Deferred::New(env)),
      work_(std::move(work)),
      result_(std::move(result)),
      ctx_(std::make_shared<TaskContext>()) {}

Napi::Object Task::Start(Napi::Env env, const char* name, Work work, Result result, const std::vector<Napi::Value>& keep, Napi::Value on_progress,
                         double total, int threads) {
  Task* t = new Task(env, name, std::move(work), std::move(result));
  t->threads_ = threads;
  for (const auto& v : keep)
    if (!v.IsEmpty() && !v.IsUndefined() && !v.IsNull()) t->refs_.push_back(Napi::Persistent(v));
  if (!on_progress.IsEmpty() && on_progress.IsFunction()) t->progress_ = Napi::Persistent(on_progress.As<Napi::Function>());
  t->ctx_->total = total;
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", t->deferred_.Promise());
  std::shared_ptr<TaskContext> ctx = t->ctx_;
  handle.Set("cancel", Napi::Function::New(env, [ctx](const Napi::CallbackInfo& info) {
               ctx->cancel_flag.store(true);
               return info.Env().Undefined();
             }));
  t->Queue();
  return handle;
}

void Task::Execute(const ExecutionProgress& progress) {
  ScopedThreads per_call(threads_);  // this libuv thread drives the pool with the job's thread count
  try {
    if (!progress_.IsEmpty()) {
      // Throttle: at most one report per 100 ms reaches JS.
      auto last = std::make_shared<std::atomic<int64_t>>(0);
      ctx_->on_progress = [&progress, last](double done) {
        int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
        int64_t prev = last->load();
        if (now - prev >= 100 && last->compare_exchange_strong(prev, now)) progress.Send(&done, 1);
      };
    }
    work_(*ctx_);
  } catch (const Error& e) {
    SetError(e.what());
  } catch (const std::bad_alloc&) {
    SetError("LOWBIT_INTERNAL: out of memory");
  } catch (const std::exception& e) {
    SetError(std::string("LOWBIT_INTERNAL: ") + e.what());
  }
  ctx_->on_progress = nullptr;
}

void Task::OnOK() {
  Napi::HandleScope scope(Env());
  try {
    deferred_.Resolve(result_(Env()));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

void Task::OnError(const Napi::Error& e) { deferred_.Reject(e.Value()); }

void Task::OnProgress(const double* data, size_t count) {
  if (progress_.IsEmpty() || count == 0) return;
  Napi::HandleScope scope(Env());
  progress_.Call({Napi::Number::New(Env(), data[0]), Napi::Number::New(Env(), ctx_->total)});
}

View view_of(const Napi::Value& v, const char* what) {
  View r;
  if (v.IsTypedArray()) {
    Napi::TypedArray t = v.As<Napi::TypedArray>();
    r.data = static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset();
    r.bytes = t.ByteLength();
  } else if (v.IsDataView()) {
    Napi::DataView d = v.As<Napi::DataView>();
    r.data = static_cast<uint8_t*>(d.ArrayBuffer().Data()) + d.ByteOffset();
    r.bytes = d.ByteLength();
  } else if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer a = v.As<Napi::ArrayBuffer>();
    r.data = static_cast<uint8_t*>(a.Data());
    r.bytes = a.ByteLength();
  } else {
    throw Napi::TypeError::New(v.Env(), std::string("LOWBIT_INTERNAL: ") + what + " must be a typed array");
  }
  return r;
}

void throw_js(Napi::Env env, const std::string& code, const std::string& msg) { throw Napi::Error::New(env, code + ": " + msg); }

std::string js_type_name(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return "boolean";
  if (v.IsNumber()) return "number";
  if (v.IsString()) return "string";
  if (v.IsTypedArray()) {
    switch (v.As<Napi::TypedArray>().TypedArrayType()) {
      case napi_int8_array: return "an Int8Array";
      case napi_uint8_array: return "a Uint8Array";
      case napi_uint8_clamped_array: return "a Uint8ClampedArray";
      case napi_int16_array: return "an Int16Array";
      case napi_uint16_array: return "a Uint16Array";
      case napi_int32_array: return "an Int32Array";
      case napi_uint32_array: return "a Uint32Array";
      case napi_float32_array: return "a Float32Array";
      case napi_float64_array: return "a Float64Array";
      default: return "a typed array";
    }
  }
  if (v.IsArray()) return "an array";
  if (v.IsFunction()) return "a function";
  if (v.IsObject()) return "an object";
  return "another type";
}

Job::Job(const Napi::CallbackInfo& info, const char* fn) : fn_(fn) {
  if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray() || info[0].IsTypedArray())
    throw_js(info.Env(), "LOWBIT_INTERNAL",
             std::string(fn) + ": expected one job object, received " + (info.Length() ? js_type_name(info[0]) : std::string("nothing")));
  obj_ = info[0].As<Napi::Object>();
}

void Job::fail(const char* key, const char* expected) const {
  throw_js(obj_.Env(), "LOWBIT_INTERNAL",
           std::string(fn_) + ": " + path_ + "." + key + ": expected " + expected + ", received " + js_type_name(obj_.Get(key)));
}

Job Job::object(const char* key) const {
  Napi::Value v = obj_.Get(key);
  if (!v.IsObject() || v.IsArray() || v.IsTypedArray() || v.IsFunction()) fail(key, "an object");
  return Job(v.As<Napi::Object>(), fn_, path_ + "." + key);
}

std::string Job::str(const char* key) const {
  Napi::Value v = obj_.Get(key);
  if (!v.IsString()) fail(key, "a string");
  return v.As<Napi::String>().Utf8Value();
}

bool Job::has(const char* key) const {
  Napi::Value v = obj_.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

double Job::num(const char* key) const {
  Napi::Value v = obj_.Get(key);
  if (!v.IsNumber()) fail(key, "a number");
  return v.As<Napi::Number>().DoubleValue();
}

int32_t Job::i32(const char* key) const {
  const double d = num(key);
  if (d != std::floor(d) || d < -2147483648.0 || d > 2147483647.0) fail(key, "a 32-bit integer");
  return (int32_t)d;
}

size_t Job::count(const char* key) const {
  Napi::Value v = obj_.Get(key);
  if (!v.IsNumber()) fail(key, "a non-negative integer");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0) fail(key, "a non-negative integer");
  return (size_t)d;
}

bool Job::flag(const char* key, bool def) const {
  Napi::Value v = obj_.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsBoolean()) fail(key, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

View Job::view(const char* key) const {
  Napi::Value v = obj_.Get(key);
  if (!v.IsTypedArray() && !v.IsDataView() && !v.IsArrayBuffer()) fail(key, "a typed array");
  return view_of(v, key);
}

View Job::view_or_null(const char* key) const {
  if (!has(key)) return View{};
  return view(key);
}

int Job::threads() const {
  Napi::Value v = obj_.Get("threads");
  if (v.IsUndefined()) return 0;
  const int32_t n = i32("threads");
  if (n < 0 || n > 1024) fail("threads", "an integer in [0, 1024]");
  return n;
}

int Job::mode() const {
  Napi::Value v = obj_.Get("mode");
  if (v.IsUndefined()) return 0;
  const int32_t m = i32("mode");
  if (m != 0 && m != 1) fail("mode", "0 (fast) or 1 (reference)");
  return m;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  register_info(env, exports);
  register_convert(env, exports);
  register_quant(env, exports);
  register_mmap(env, exports);
  register_bench(env, exports);
  register_runtime(env, exports);
  register_gptq(env, exports);
  register_qdot(env, exports);
  register_rtquant(env, exports);
  register_train(env, exports);
#if defined(LOWBIT_WITH_CUDA)
  register_cuda(env, exports);
#endif
  return exports;
}

NODE_API_MODULE(lowbit, Init)

}  // namespace lowbit
