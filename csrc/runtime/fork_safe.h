// A mutex a fork() child can still lock.
//
// fork() copies only the calling thread. If another thread was inside
// Plan::run (holding the plan's mutex) at that moment, a plain std::mutex stays
// locked forever in the child and its next run deadlocks. Every ForkSafeMutex is
// registered; a pthread_atfork child handler (the child is single-threaded then)
// re-initialises them all. The kernels' thread pool has its own handler
// (csrc/kernels/common/thread_pool.cpp): the child re-creates it lazily.
#pragma once
#include <mutex>

namespace graphopt::runtime {

class ForkSafeMutex {
 public:
  ForkSafeMutex();
  ~ForkSafeMutex();
  ForkSafeMutex(const ForkSafeMutex&) = delete;
  ForkSafeMutex& operator=(const ForkSafeMutex&) = delete;
  void lock() { mu_.lock(); }
  void unlock() { mu_.unlock(); }
  bool try_lock() { return mu_.try_lock(); }

 private:
  friend struct ForkRegistry;
  std::mutex mu_;
};

}  // namespace graphopt::runtime
