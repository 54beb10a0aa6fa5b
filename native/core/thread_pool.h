// lowbit's one thread pool. Every parallel kernel runs through parallel_for on this pool; the
// calling thread (a libuv worker driving an AsyncWorker) participates. Parallel regions are
// serialized by a mutex, so two concurrent AsyncWorkers share the pool instead of stacking two
// pools on the same cores (on a 2-core machine stacked pools turn a 1 ms op into 200 ms).
#pragma once
#include <atomic>
#include <cstddef>
#include <functional>

namespace lowbit {

// Cooperative cancellation and progress for long native operations. Kernels poll cancelled()
// between rows/blocks/layers and call report() (cheap; the addon throttles what reaches JS).
struct TaskContext {
  std::atomic<bool> cancel_flag{false};
  std::atomic<double> done{0.0};
  double total = 0.0;
  // Set by the addon when JS asked for progress; must be cheap and thread-safe (it throttles).
  std::function<void(double)> on_progress;
  bool cancelled() const { return cancel_flag.load(std::memory_order_relaxed); }
  void add_done(double d) {
    double cur = done.load(std::memory_order_relaxed);
    while (!done.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
    }
    if (on_progress) on_progress(cur + d);
  }
  // Throws LOWBIT_ABORTED when cancelled.
  void check(const char* where) const;
};

// Number of physical cores (not SMT siblings), respecting the process's CPU affinity.
int physical_cores();

void set_threads(int n);  // n <= 0: default (physical cores)
int get_threads();

// Runs fn(begin, end) over [0, n) split into chunks of at least `grain` items, on the pool.
// Exceptions thrown by fn are rethrown in the caller (the first one wins).
void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

}  // namespace lowbit
