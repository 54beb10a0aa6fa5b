// Promise-returning native tasks with cancellation and throttled progress.
//
// JS receives {promise, cancel}. The work runs on a libuv worker thread, which drives lowbit's own
// thread pool; cancel() sets an atomic flag that kernels poll between rows/blocks. Progress
// reports ("latest wins") reach an optional JS callback at most every 100 ms. Inputs and outputs
// (typed arrays) are kept alive by persistent references until the task settles.
#pragma once
#include <napi.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"

namespace lowbit {

class Task : public Napi::AsyncProgressWorker<double> {
 public:
  using Work = std::function<void(TaskContext&)>;
  using Result = std::function<Napi::Value(Napi::Env)>;

  // Creates, queues and returns {promise, cancel}. `keep` are JS values to hold until settled.
  static Napi::Object Start(Napi::Env env, const char* name, Work work, Result result, const std::vector<Napi::Value>& keep,
                            Napi::Value on_progress = Napi::Value(), double total = 0.0);

  void Execute(const ExecutionProgress& progress) override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;
  void OnProgress(const double* data, size_t count) override;

 private:
  Task(Napi::Env env, const char* name, Work work, Result result);
  Napi::Promise::Deferred deferred_;
  Work work_;
  Result result_;
  std::shared_ptr<TaskContext> ctx_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
  Napi::FunctionReference progress_;
};

// Pointer and byte length of a TypedArray/Buffer/DataView argument (honours byteOffset).
struct View {
  uint8_t* data = nullptr;
  size_t bytes = 0;
};
View view_of(const Napi::Value& v, const char* what);
inline double num(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().DoubleValue(); }
inline bool flag(const Napi::Object& o, const char* key) { return o.Get(key).ToBoolean().Value(); }

// Throw a JS Error carrying "CODE: message" (turned into LowbitError on the TS side).
[[noreturn]] void throw_js(Napi::Env env, const std::string& code, const std::string& msg);

// Registration of each exported family (one file each).
void register_info(Napi::Env env, Napi::Object exports);
void register_convert(Napi::Env env, Napi::Object exports);
void register_quant(Napi::Env env, Napi::Object exports);
void register_mmap(Napi::Env env, Napi::Object exports);
void register_bench(Napi::Env env, Napi::Object exports);
void register_cuda(Napi::Env env, Napi::Object exports);
void register_runtime(Napi::Env env, Napi::Object exports);
void register_gptq(Napi::Env env, Napi::Object exports);
void register_qdot(Napi::Env env, Napi::Object exports);

}  // namespace lowbit
