// Carries an exception out of an OpenMP region (STYLE.md rule 10). An exception that escapes a region's
// body is std::terminate with GCC, so each body runs under run(), which keeps the first exception and makes
// later bodies return at once (the loop cannot be left early); rethrow() after the region throws it.
// FAISS's omp_capture_exception does the same.
//
//   ParallelError error;
//   #pragma omp parallel for
//   for (int64_t i = 0; i < n; ++i) error.run([&] { work(i); });
//   error.rethrow();
#pragma once

#include <atomic>
#include <exception>
#include <mutex>

namespace rag {

class ParallelError {
 public:
  template <typename F>
  void run(F&& body) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      body();
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!first_) first_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }

  // Throws the first exception a body threw, if any; call after the region has joined.
  void rethrow() {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr first_;
};

}  // namespace rag
