// A small persistent thread pool. parallel_for hands out chunks through one atomic counter
// (dynamic scheduling: rows of unequal cost balance themselves). Regions are serialized by a
// mutex: lowbit never runs two pools' worth of threads on the same cores.
#include "core/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"

namespace lowbit {

void TaskContext::check(const char* where) const {
  if (cancelled()) throw Error("LOWBIT_ABORTED", std::string("cancelled during ") + where);
}

int physical_cores() {
  static const int n = [] {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
      for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set)) cpus.push_back(i);
    }
    if (cpus.empty()) return std::max(1, (int)std::thread::hardware_concurrency());
    std::set<std::pair<std::string, std::string>> cores;
    for (int c : cpus) {
      std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(c) + "/topology/";
      std::ifstream pk(base + "physical_package_id"), co(base + "core_id");
      std::string p, k;
      if (!(pk >> p) || !(co >> k)) return (int)cpus.size();
      cores.insert({p, k});
    }
    return std::max(1, (int)cores.size());
  }();
  return n;
}

namespace {

// The calling thread's per-call override (ScopedThreads); 0 = the pool's default.
thread_local int tl_threads = 0;

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_.store(true, std::memory_order_release);
      gen_.store(next_gen(gen_.load(std::memory_order_relaxed), 0), std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  int threads() {
    if (tl_threads > 0) return tl_threads;
    std::lock_guard<std::mutex> lk(region_);
    return nthreads_;
  }

  void set_threads(int n) {
    std::lock_guard<std::mutex> lk(region_);
    nthreads_ = n > 0 ? n : default_threads();
  }

  void run(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
    if (n == 0) return;
    std::lock_guard<std::mutex> region(region_);
    grain = std::max<size_t>(grain, 1);
    size_t chunks = (n + grain - 1) / grain;
    const int nthreads = tl_threads > 0 ? tl_threads : nthreads_;
    int want = (int)std::min<size_t>({(size_t)nthreads, chunks, (size_t)kActiveMask});
    if (want <= 1) {
      fn(0, n);
      return;
    }
    ensure_workers(want - 1);
    // Aim for ~4 chunks per thread for balance, but never below `grain`.
    size_t chunk = std::max(grain, (n + (size_t)want * 4 - 1) / ((size_t)want * 4));
    job_ = &fn;
    n_ = n;
    chunk_ = chunk;
    next_.store(0, std::memory_order_relaxed);
    pending_.store(want - 1, std::memory_order_relaxed);
    error_ = nullptr;
    {
      // Under m_ so that a worker about to sleep cannot miss the new generation; the release
      // publishes the job fields above to workers that spin on gen_ without the lock.
      std::lock_guard<std::mutex> lk(m_);
      gen_.store(next_gen(gen_.load(std::memory_order_relaxed), want - 1), std::memory_order_release);
      if (sleepers_ > 0) cv_.notify_all();
    }
    work();
    if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lk(m_);
      done_cv_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static int default_threads() {
    const char* env = std::getenv("LOWBIT_THREADS");
    if (env && std::atoi(env) > 0) return std::atoi(env);
    return physical_cores();
  }

  void ensure_workers(int n) {
    while ((int)workers_.size() < n) {
      int id = (int)workers_.size();
      const uint64_t g = gen_.load(std::memory_order_acquire);  // the worker waits for the next generation after this one
      workers_.emplace_back([this, id, g] { loop(id, g); });
    }
  }

  void work() {
    for (;;) {
      size_t b = next_.fetch_add(chunk_);
      if (b >= n_) break;
      size_t e = std::min(n_, b + chunk_);
      try {
        (*job_)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m_);
        if (!error_) error_ = std::current_exception();
        next_.store(n_);  // stop handing out work
      }
    }
  }

  // Spin for up to spin_us_ microseconds until cond() holds, before sleeping on a condition
  // variable: a decoding step runs ~200 parallel regions of 20–500 µs with short serial gaps, and a
  // futex wake-up on a VM costs tens of µs each way. Off by default (LOWBIT_SPIN_US=0): measured on
  // the 1.1B GPTQ-4 decode (2 cores), 200 µs was 5–10% faster on an otherwise idle machine but ~20%
  // slower beside one niced background process (pure spinning without sched_yield: 3× slower),
  // so it is an opt-in for dedicated machines (docs/PERFORMANCE.md).
  template <class Cond>
  bool spin_until(Cond cond) const {
    if (spin_us_ <= 0) return cond();
    const auto t0 = std::chrono::steady_clock::now();
    for (unsigned i = 1;; i++) {
      if (cond()) return true;
      if (i < 256) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield");
#endif
      } else {
        // past a few µs of pure spinning, yield: free when nothing else wants the core, and it
        // hands the core over when something does (another process, or a pool thread that was
        // preempted — pure spinning there made a step 3× slower under a background load)
        sched_yield();
      }
      if ((i & 15) == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(spin_us_)) return cond();
    }
  }

  void loop(int id, uint64_t seen) {
    for (;;) {
      if (!spin_until([&] { return gen_.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> lk(m_);
        sleepers_++;
        cv_.wait(lk, [&] { return gen_.load(std::memory_order_acquire) != seen; });
        sleepers_--;
      }
      seen = gen_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_acquire)) return;
      if (id >= (int)(seen & kActiveMask)) continue;  // not needed for this region
      work();
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(m_);  // the caller checks pending_ under m_ before it sleeps
        done_cv_.notify_one();
      }
    }
  }

  static int default_spin_us() {
    const char* env = std::getenv("LOWBIT_SPIN_US");
    if (env && *env) return std::max(0, std::atoi(env));
    return 0;
  }

  std::mutex region_;  // one parallel region at a time
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  // Job fields: written by the caller before gen_ is released, read by workers after acquiring it.
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t n_ = 0, chunk_ = 1;
  std::atomic<size_t> next_{0};
  std::atomic<int> pending_{0};
  // The region generation (high bits) and its number of participating workers (low 16 bits) in
  // one atomic, so that a worker reads both from the same store. (They were two fields: a worker
  // that woke for a region it was not needed in could read the next region's worker count beside
  // the old generation, work in that region, then wake for it again and count itself out twice —
  // letting the caller return while another worker still ran its chunk. Found by ThreadSanitizer,
  // scripts/test-tsan.sh.)
  std::atomic<uint64_t> gen_{0};
  static constexpr uint64_t kActiveMask = 0xffff;
  static uint64_t next_gen(uint64_t g, int active) { return (((g >> 16) + 1) << 16) | ((uint64_t)active & kActiveMask); }
  int sleepers_ = 0;  // workers blocked on cv_ (guarded by m_)
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
  int nthreads_ = default_threads();
  const int spin_us_ = default_spin_us();
};

Pool& pool() {
  // Intentionally leaked: joining threads from a static destructor at process exit can deadlock
  // when the exit happens on a worker thread's watch (Node's teardown order is not ours).
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

void set_threads(int n) { pool().set_threads(n); }
ScopedThreads::ScopedThreads(int n) : saved_(tl_threads) {
  if (n > 0) tl_threads = n;
}
ScopedThreads::~ScopedThreads() { tl_threads = saved_; }
int get_threads() { return pool().threads(); }
void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) { pool().run(n, grain, fn); }

}  // namespace lowbit
