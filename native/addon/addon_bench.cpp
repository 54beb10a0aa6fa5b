// benchCopy(bytes, iters, threads), benchPeak(kind, threads, millis): the machine's own limits,
// measured in the same process as the kernels (see kernels/bench.h).
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "addon/task.h"
#include "kernels/bench.h"

namespace lowbit {

static double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

static Napi::Value BenchCopy(const Napi::CallbackInfo& info) {
  const size_t bytes = (size_t)info[0].As<Napi::Number>().DoubleValue();
  const int iters = info[1].As<Napi::Number>().Int32Value();
  const int threads = info[2].As<Napi::Number>().Int32Value();
  auto secs = std::make_shared<std::vector<double>>();
  return Task::Start(
      info.Env(), "lowbit.benchCopy",
      [=](TaskContext& ctx) {
        ScopedThreads g(threads);  // per call: never the process-wide setting
        uint8_t* a = static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
        uint8_t* b = static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
        if (!a || !b) {
          std::free(a);
          std::free(b);
          throw Error("LOWBIT_INTERNAL", "benchCopy: out of memory");
        }
        const size_t chunk = 1 << 20;
        const size_t nchunks = (bytes + chunk - 1) / chunk;
        // first touch from the threads that will copy
        parallel_for(nchunks, 1, [&](size_t c0, size_t c1) {
          for (size_t c = c0; c < c1; c++) {
            size_t o = c * chunk, n = std::min(chunk, bytes - o);
            std::memset(a + o, 1, n);
            std::memset(b + o, 0, n);
          }
        });
        for (int it = 0; it < iters && !ctx.cancelled(); it++) {
          double t0 = now_s();
          parallel_for(nchunks, 1, [&](size_t c0, size_t c1) {
            for (size_t c = c0; c < c1; c++) {
              size_t o = c * chunk, n = std::min(chunk, bytes - o);
              std::memcpy(b + o, a + o, n);
            }
          });
          secs->push_back(now_s() - t0);
        }
        std::free(a);
        std::free(b);
      },
      [secs](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        Napi::Array arr = Napi::Array::New(env, secs->size());
        for (size_t i = 0; i < secs->size(); i++) arr.Set((uint32_t)i, (*secs)[i]);
        o.Set("seconds", arr);
        return o;
      },
      {});
}

static Napi::Value BenchPeak(const Napi::CallbackInfo& info) {
  std::string kind = info[0].As<Napi::String>().Utf8Value();
  const int threads = info[1].As<Napi::Number>().Int32Value();
  const double millis = info[2].As<Napi::Number>().DoubleValue();
  if (kind != "fma") throw_js(info.Env(), "LOWBIT_INVALID_OPTION", "kind: expected \"fma\", received \"" + kind + "\"");
  auto res = std::make_shared<std::pair<double, double>>(0.0, 0.0);
  return Task::Start(
      info.Env(), "lowbit.benchPeak",
      [=](TaskContext&) {
        ScopedThreads g(threads);  // per call: never the process-wide setting
        const int nt = get_threads();
        // calibrate on one thread, then run every thread for ~millis
        double t0 = now_s();
        peak_fma(1u << 20);
        double per_iter = (now_s() - t0) / (double)(1u << 20);
        uint64_t iters = (uint64_t)(millis / 1000.0 / std::max(per_iter, 1e-12));
        std::vector<double> flops(nt, 0.0);
        double t1 = now_s();
        parallel_for((size_t)nt, 1, [&](size_t b, size_t e) {
          for (size_t i = b; i < e; i++) flops[i] = peak_fma(iters);
        });
        double dt = now_s() - t1;
        double total = 0;
        for (double f : flops) total += f;
        *res = {total, dt};
      },
      [res](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("ops", res->first);
        o.Set("seconds", res->second);
        return o;
      },
      {});
}

void register_bench_peer(Napi::Env env, Napi::Object exports);

void register_bench(Napi::Env env, Napi::Object exports) {
  register_bench_peer(env, exports);
  exports.Set("benchCopy", Napi::Function::New(env, BenchCopy, "benchCopy"));
  exports.Set("benchPeak", Napi::Function::New(env, BenchPeak, "benchPeak"));
}

}  // namespace lowbit

// ---- A peer measured in the same process: OpenBLAS sgemm, when Debian's libopenblas is
// installed. It is found with dlopen at run time, so lowbit never links or needs it.
#include <dlfcn.h>

namespace lowbit {

namespace {
using sgemm_fn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using set_threads_fn = void (*)(int);
struct Blas {
  sgemm_fn sgemm = nullptr;
  set_threads_fn set_threads = nullptr;
  std::string lib, error;
};
const Blas& blas() {
  static Blas b = [] {
    Blas r;
    const char* names[] = {"libopenblas.so.0", "libopenblasp.so.0", "libopenblas.so", "libblas.so.3"};
    for (const char* n : names) {
      void* h = dlopen(n, RTLD_NOW | RTLD_LOCAL);
      if (!h) continue;
      r.sgemm = reinterpret_cast<sgemm_fn>(dlsym(h, "cblas_sgemm"));
      r.set_threads = reinterpret_cast<set_threads_fn>(dlsym(h, "openblas_set_num_threads"));
      if (r.sgemm) {
        r.lib = n;
        return r;
      }
    }
    r.error = "no OpenBLAS found (apt-get install libopenblas0-pthread)";
    return r;
  }();
  return b;
}
}  // namespace

// peerSgemmInfo() -> {lib, error}
static Napi::Value PeerSgemmInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("lib", blas().lib.empty() ? info.Env().Null() : Napi::String::New(info.Env(), blas().lib));
  o.Set("error", blas().error.empty() ? info.Env().Null() : Napi::String::New(info.Env(), blas().error));
  return o;
}

// peerSgemm(x, m, k, w, n, y, threads) -> task: y = x · wᵀ with cblas_sgemm (row-major, B transposed).
static Napi::Value PeerSgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!blas().sgemm) throw_js(env, "LOWBIT_UNSUPPORTED", blas().error);
  View x = view_of(info[0], "x"), w = view_of(info[3], "w"), y = view_of(info[5], "y");
  const int m = info[1].As<Napi::Number>().Int32Value(), k = info[2].As<Napi::Number>().Int32Value();
  const int n = info[4].As<Napi::Number>().Int32Value(), threads = info[6].As<Napi::Number>().Int32Value();
  if (x.bytes < (size_t)m * k * 4 || w.bytes < (size_t)n * k * 4 || y.bytes < (size_t)m * n * 4) throw_js(env, "LOWBIT_INTERNAL", "peerSgemm: sizes");
  return Task::Start(
      env, "lowbit.peerSgemm",
      [=](TaskContext&) {
        // One pool at a time: lowbit's pool is idle while this runs (regions are serialized).
        if (blas().set_threads) blas().set_threads(threads);
        const int RowMajor = 101, NoTrans = 111, Trans = 112;
        blas().sgemm(RowMajor, NoTrans, Trans, m, n, k, 1.0f, reinterpret_cast<const float*>(x.data), k, reinterpret_cast<const float*>(w.data), k,
                     0.0f, reinterpret_cast<float*>(y.data), n);
      },
      [](Napi::Env e) { return e.Undefined(); }, {info[0], info[3], info[5]});
}

void register_bench_peer(Napi::Env env, Napi::Object exports) {
  exports.Set("peerSgemmInfo", Napi::Function::New(env, PeerSgemmInfo, "peerSgemmInfo"));
  exports.Set("peerSgemm", Napi::Function::New(env, PeerSgemm, "peerSgemm"));
}

}  // namespace lowbit
