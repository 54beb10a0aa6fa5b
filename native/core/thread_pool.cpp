// A small persistent thread pool. parallel_for hands out chunks through one atomic counter
// (dynamic scheduling: rows of unequal cost balance themselves). Regions are serialized by a
// mutex: lowbit never runs two pools' worth of threads on the same cores.
#include "core/thread_pool.h"

#include <sched.h>

#include <algorithm>
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

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
      gen_++;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  int threads() {
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
    int want = (int)std::min<size_t>((size_t)nthreads_, chunks);
    if (want <= 1) {
      fn(0, n);
      return;
    }
    ensure_workers(want - 1);
    // Aim for ~4 chunks per thread for balance, but never below `grain`.
    size_t chunk = std::max(grain, (n + (size_t)want * 4 - 1) / ((size_t)want * 4));
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &fn;
      n_ = n;
      chunk_ = chunk;
      next_.store(0);
      active_ = want - 1;
      pending_ = want - 1;
      error_ = nullptr;
      gen_++;
    }
    cv_.notify_all();
    work();
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
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
      uint64_t g;
      {
        std::lock_guard<std::mutex> lk(m_);
        g = gen_;  // the worker waits for the next generation after this one
      }
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

  void loop(int id, uint64_t seen) {
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return gen_ != seen; });
        seen = gen_;
        if (stop_) return;
        if (id >= active_) continue;  // not needed for this region
      }
      work();
      std::lock_guard<std::mutex> lk(m_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  std::mutex region_;  // one parallel region at a time
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t n_ = 0, chunk_ = 1;
  std::atomic<size_t> next_{0};
  int active_ = 0, pending_ = 0;
  uint64_t gen_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  int nthreads_ = default_threads();
};

Pool& pool() {
  // Intentionally leaked: joining threads from a static destructor at process exit can deadlock
  // when the exit happens on a worker thread's watch (Node's teardown order is not ours).
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

void set_threads(int n) { pool().set_threads(n); }
int get_threads() { return pool().threads(); }
void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) { pool().run(n, grain, fn); }

}  // namespace lowbit
