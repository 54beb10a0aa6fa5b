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
  // `threads` > 0 runs the work's parallel regions on that many threads (the job's per-call
  // `threads`); 0 uses the process default.
  static Napi::Object Start(Napi::Env env, const char* name, Work work, Result result, const std::vector<Napi::Value>& keep,
                            Napi::Value on_progress = Napi::Value(), double total = 0.0, int threads = 0);

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
  int threads_ = 0;
};

// Pointer and byte length of a TypedArray/Buffer/DataView argument (honours byteOffset).
struct View {
  uint8_t* data = nullptr;
  size_t bytes = 0;
};
View view_of(const Napi::Value& v, const char* what);

// Throw a JS Error carrying "CODE: message" (turned into LowbitError on the TS side).
[[noreturn]] void throw_js(Napi::Env env, const std::string& code, const std::string& msg);

// The JS type of a value, for messages ("number", "string", "a Float32Array", "undefined", …).
std::string js_type_name(const Napi::Value& v);

// The one convention of every native call that takes more than a value or two: a single plain
// job object (TS types it in lib/native.ts). Each accessor checks its field and names it, with the
// expected and the received type, in a LOWBIT_INTERNAL error: "gemm: job.m: expected a
// non-negative integer, received string" — these are internal errors (the TS layer validated).
// A nested object (a QBlock inside a job, a model's config) is read with its own path:
// Job(obj, "qdotLinear", "job.w[1]") names "qdotLinear: job.w[1].bits".
class Job {
 public:
  Job(const Napi::CallbackInfo& info, const char* fn);
  Job(const Napi::Object& obj, const char* fn, std::string path = "job") : obj_(obj), fn_(fn), path_(std::move(path)) {}
  // The object in field `key` (LOWBIT_INTERNAL naming it when it is not one), read as a Job.
  Job object(const char* key) const;
  double num(const char* key) const;
  int32_t i32(const char* key) const;
  // A non-negative integer that fits size_t (counts, sizes, offsets).
  size_t count(const char* key) const;
  bool flag(const char* key, bool def = false) const;
  std::string str(const char* key) const;
  // A typed array / Buffer / DataView / ArrayBuffer field.
  View view(const char* key) const;
  // As view(), or an empty view when the field is null or undefined.
  View view_or_null(const char* key) const;
  // Whether the field is present (neither undefined nor null).
  bool has(const char* key) const;
  Napi::Value get(const char* key) const { return obj_.Get(key); }
  const Napi::Object& object() const { return obj_; }
  Napi::Env env() const { return obj_.Env(); }
  const char* fn() const { return fn_; }
  const std::string& path() const { return path_; }
  // The per-call compute threads: job.threads (0 or absent = the process default).
  int threads() const;
  // The kernel mode: job.mode (0 fast, 1 reference; absent = fast).
  int mode() const;
  [[noreturn]] void fail(const char* key, const char* expected) const;

 private:
  Napi::Object obj_;
  const char* fn_;
  std::string path_ = "job";
};

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
void register_rtquant(Napi::Env env, Napi::Object exports);
void register_train(Napi::Env env, Napi::Object exports);

}  // namespace lowbit
