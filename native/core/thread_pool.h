// lowbit's one thread pool. Every parallel kernel runs through parallel_for on this pool; the
// calling thread (a libuv worker driving an AsyncWorker) participates. Parallel regions are
// serialized by a mutex, so two concurrent AsyncWorkers share the pool instead of stacking two
// pools on the same cores (on a 2-core machine stacked pools turn a 1 ms op into 200 ms).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <vector>

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
// The thread count parallel regions started from the calling thread use: its ScopedThreads
// override, else the process default.
int get_threads();

// A per-call thread count: while it lives, parallel regions started from this thread (a libuv
// worker running one task) use n threads instead of the process default (n <= 0: no override).
// Thread-local, so concurrent tasks with different counts never touch shared state.
class ScopedThreads {
 public:
  explicit ScopedThreads(int n);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  int saved_;
};

// Runs fn(begin, end) over [0, n) split into chunks of at least `grain` items, on the pool.
// Exceptions thrown by fn are rethrown in the caller (the first one wins).
void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

// parallel_for over several pieces of work laid end to end (part p has sizes[p] units), so that
// small parts share one region with large ones: fn(p, begin, end) gets part-local unit ranges
// (a chunk that spans a boundary calls fn once per part it touches).
template <class Fn>
void parallel_for_parts(const size_t* sizes, size_t count, size_t grain, Fn fn) {
  std::vector<size_t> first(count + 1, 0);
  for (size_t p = 0; p < count; p++) first[p + 1] = first[p] + sizes[p];
  parallel_for(first[count], grain, [&](size_t b, size_t e) {
    for (size_t p = 0; p < count && b < e; p++) {
      if (b >= first[p + 1]) continue;
      const size_t pe = std::min(e, first[p + 1]);
      fn(p, b - first[p], pe - first[p]);
      b = pe;
    }
  });
}

}  // namespace lowbit
