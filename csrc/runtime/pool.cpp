// Thread pool for the plan executor (see pool.h for why it is not OpenMP).
#include "pool.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace graphopt::runtime {
namespace {

thread_local int t_threads = 1;
thread_local bool t_in_pool = false;  // a chunk that calls parallel_for again runs it serially

class Pool {
 public:
  static Pool& get() {
    static Pool* p = new Pool();  // never destroyed: workers may outlive static destruction order
    return *p;
  }

  void run(int nthreads, index_t n, const std::function<void(index_t)>& fn) {
    std::lock_guard<std::mutex> one(run_mu_);  // one parallel_for at a time (plans hold their own lock)
    ensure_workers(nthreads - 1);
    const std::uint64_t epoch = ++epoch_;
    fn_.store(&fn, std::memory_order_relaxed);
    n_.store(n, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    helpers_.store(nthreads - 1, std::memory_order_relaxed);
    next_.store(epoch << 32, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lk(mu_);
      posted_ = epoch;
    }
    cv_.notify_all();
    work(epoch);
    // Only chunks already claimed are waited for; unclaimed ones were taken by us.
    while (done_.load(std::memory_order_acquire) < n) std::this_thread::yield();
  }

 private:
  std::vector<std::thread> workers_;
  std::mutex run_mu_, mu_;
  std::condition_variable cv_;
  std::atomic<std::uint64_t> next_{0};
  std::atomic<index_t> done_{0};
  std::uint64_t epoch_ = 0, posted_ = 0;
  std::atomic<const std::function<void(index_t)>*> fn_{nullptr};
  std::atomic<index_t> n_{0};
  std::atomic<int> helpers_{0};

  // Claim chunks of job `epoch` until none are left (or a newer job replaced it).
  void work(std::uint64_t epoch) {
    for (;;) {
      std::uint64_t v = next_.load(std::memory_order_acquire);
      if ((v >> 32) != epoch) return;
      const index_t n = n_.load(std::memory_order_acquire);
      const index_t i = static_cast<index_t>(v & 0xffffffffu);
      if (i >= n) return;
      if (!next_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) continue;
      // The CAS succeeded within `epoch`, and that job cannot finish before this chunk does,
      // so fn_ still points at its function.
      (*fn_.load(std::memory_order_acquire))(i);
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  void ensure_workers(int want) {
    while (static_cast<int>(workers_.size()) < want) {
      const int id = static_cast<int>(workers_.size());
      workers_.emplace_back([this, id] { loop(id); });
    }
  }

  void loop(int id) {
    omp_set_num_threads(1);  // kernels inside a chunk stay single-threaded
    std::uint64_t seen = 0;
    for (;;) {
      std::uint64_t job = 0;
      // Short spin (a few tens of microseconds) catches back-to-back steps without a syscall.
      const auto t0 = std::chrono::steady_clock::now();
      for (;;) {
        const std::uint64_t v = next_.load(std::memory_order_acquire) >> 32;
        if (v != seen) { job = v; break; }
        if (std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(50)) break;
      }
      if (!job) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return posted_ != seen; });
        job = posted_;
      }
      seen = job;
      if (id < helpers_.load(std::memory_order_relaxed)) work(job);
    }
  }
};

}  // namespace

int pool_threads() { return t_threads; }
void set_pool_threads(int n) { t_threads = n < 1 ? 1 : n; }

void parallel_for(index_t n, const std::function<void(index_t)>& fn) {
  if (n <= 0) return;
  const int t = pool_threads();
  if (t <= 1 || n == 1 || t_in_pool) {
    for (index_t i = 0; i < n; ++i) fn(i);
    return;
  }
  t_in_pool = true;
  Pool::get().run(t, n, fn);
  t_in_pool = false;
}

void parallel_ranges(index_t total, index_t parts, index_t min_size, index_t align,
                     const std::function<void(index_t, index_t)>& fn) {
  if (total <= 0) return;
  align = std::max<index_t>(align, 1);
  index_t size = (total + std::max<index_t>(parts, 1) - 1) / std::max<index_t>(parts, 1);
  size = std::max(size, min_size);
  size = (size + align - 1) / align * align;
  const index_t n = (total + size - 1) / size;
  parallel_for(n, [&](index_t i) { fn(i * size, std::min(total, (i + 1) * size)); });
}

}  // namespace graphopt::runtime
