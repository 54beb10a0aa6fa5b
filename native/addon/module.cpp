// Module init and the shared Task machinery (see addon/task.h).
#include <napi.h>

#include "addon/task.h"

namespace lowbit {

Task::Task(Napi::Env env, const char* name, Work work, Result result)
    : Napi::AsyncProgressWorker<double>(env, name),
      deferred_(Napi::Promise::Deferred::New(env)),
      work_(std::move(work)),
      result_(std::move(result)),
      ctx_(std::make_shared<TaskContext>()) {}

Napi::Object Task::Start(Napi::Env env, const char* name, Work work, Result result, const std::vector<Napi::Value>& keep, Napi::Value on_progress,
                         double total) {
  Task* t = new Task(env, name, std::move(work), std::move(result));
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

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  register_info(env, exports);
  register_convert(env, exports);
  register_quant(env, exports);
  register_mmap(env, exports);
  register_bench(env, exports);
  register_runtime(env, exports);
  register_gptq(env, exports);
  register_qdot(env, exports);
#if defined(LOWBIT_WITH_CUDA)
  register_cuda(env, exports);
#endif
  return exports;
}

NODE_API_MODULE(lowbit, Init)

}  // namespace lowbit
