// benchCopy({bytes, iters, threads}), benchPeak({kind, threads, millis}): the machine's own limits,
// measured in the same process as the kernels (see kernels/bench.h). The job's threads run the
// measurement (Task's per-call ScopedThreads): never the process-wide setting.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "addon/task.h"
#include "kernels/bench.h"

namespace lowbit {

static double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// benchCopy({bytes, iters, threads}) -> task resolving {seconds: number[]}
static Napi::Value BenchCopy(const Napi::CallbackInfo& info) {
  const Job job(info, "benchCopy");
  const size_t bytes = job.count("bytes");
  const int iters = job.i32("iters");
  auto secs = std::make_shared<std::vector<double>>();
  return Task::Start(
      info.Env(), "lowbit.benchCopy",
      [=](TaskContext& ctx) {
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
      {}, Napi::Value(), 0.0, job.threads());
}

// benchPeak({kind: 'fma', threads, millis}) -> task resolving {ops, seconds}
static Napi::Value BenchPeak(const Napi::CallbackInfo& info) {
  const Job job(info, "benchPeak");
  const std::string kind = job.str("kind");
  const double millis = job.num("millis");
  if (kind != "fma") throw_js(info.Env(), "LOWBIT_INVALID_OPTION", "kind: expected \"fma\", received \"" + kind + "\"");
  auto res = std::make_shared<std::pair<double, double>>(0.0, 0.0);
  return Task::Start(
      info.Env(), "lowbit.benchPeak",
      [=](TaskContext&) {
        const int nt = get_threads();  // the job's threads (Task runs the work under them)
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
      {}, Napi::Value(), 0.0, job.threads());
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

// peerSgemm({x, m, k, w, n, y, threads}) -> task: y = x · wᵀ with cblas_sgemm (row-major, B transposed), on
// the job's threads (0: lowbit's process default).
static Napi::Value PeerSgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!blas().sgemm) throw_js(env, "LOWBIT_UNSUPPORTED", blas().error);
  const Job job(info, "peerSgemm");
  const View x = job.view("x"), w = job.view("w"), y = job.view("y");
  const int m = job.i32("m"), k = job.i32("k"), n = job.i32("n");
  if (m < 0 || k < 0 || n < 0 || x.bytes < (size_t)m * k * 4 || w.bytes < (size_t)n * k * 4 || y.bytes < (size_t)m * n * 4)
    throw_js(env, "LOWBIT_INTERNAL", "peerSgemm: sizes");
  return Task::Start(
      env, "lowbit.peerSgemm",
      [=](TaskContext&) {
        // One pool at a time: lowbit's pool is idle while this runs (regions are serialized).
        if (blas().set_threads) blas().set_threads(get_threads());
        const int RowMajor = 101, NoTrans = 111, Trans = 112;
        blas().sgemm(RowMajor, NoTrans, Trans, m, n, k, 1.0f, reinterpret_cast<const float*>(x.data), k, reinterpret_cast<const float*>(w.data), k,
                     0.0f, reinterpret_cast<float*>(y.data), n);
      },
      [](Napi::Env e) { return e.Undefined(); }, {job.get("x"), job.get("w"), job.get("y")}, Napi::Value(), 0.0, job.threads());
}

void register_bench_peer(Napi::Env env, Napi::Object exports) {
  exports.Set("peerSgemmInfo", Napi::Function::New(env, PeerSgemmInfo, "peerSgemmInfo"));
  exports.Set("peerSgemm", Napi::Function::New(env, PeerSgemm, "peerSgemm"));
}

}  // namespace lowbit
