// parallel_rows: every row once, in aligned ranges, and a thread held up has its share taken by the others.
#include "nn/parallel.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

namespace rag::nn {
namespace {

class ParallelRows : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = omp_get_max_threads(); }
  void TearDown() override { omp_set_num_threads(saved_); }

 private:
  int saved_ = 1;
};

TEST_F(ParallelRows, CoversEveryRowOnceInAlignedRanges) {
  for (int threads : {2, 3, 5}) {
    omp_set_num_threads(threads);
    for (int64_t rows : {1, 15, 16, 17, 100, 1000, 4864, 20000}) {
      auto seen = std::make_unique<std::atomic<int>[]>(static_cast<size_t>(rows));
      std::atomic<int> misaligned{0}, calls{0};
      parallel_rows(rows, kParallelMinWork, [&](int64_t r0, int64_t r1) {
        ++calls;
        if (r0 % kRowAlign != 0 || (r1 != rows && r1 % kRowAlign != 0) || r0 >= r1) ++misaligned;
        for (int64_t r = r0; r < r1; ++r) ++seen[r];
      });
      int64_t wrong = 0;
      for (int64_t r = 0; r < rows; ++r) wrong += seen[r] != 1;
      EXPECT_EQ(wrong, 0) << rows << " rows, " << threads << " threads";
      EXPECT_EQ(misaligned, 0) << rows << " rows, " << threads << " threads";
      EXPECT_GE(calls, rows > kRowAlign ? 2 : 1) << rows << " rows, " << threads << " threads";
    }
  }
}

TEST_F(ParallelRows, SmallWorkRunsOnceOnTheCallingThread) {
  omp_set_num_threads(2);
  int calls = 0;
  parallel_rows(1000, kParallelMinWork - 1, [&](int64_t r0, int64_t r1) {
    ++calls;
    EXPECT_EQ(r0, 0);
    EXPECT_EQ(r1, 1000);
    EXPECT_FALSE(omp_in_parallel());
  });
  EXPECT_EQ(calls, 1);
}

// Thread 0 stops in its first chunk until another thread has run rows of thread 0's share: with equal static
// shares that never happens, and the wait ends at its time-out.
TEST_F(ParallelRows, AThreadHeldUpHasItsShareTakenByTheOthers) {
  omp_set_num_threads(2);
  constexpr int64_t kRows = 1024;
  std::atomic<bool> taken{false}, timed_out{false};
  std::atomic<int> first_calls{0};
  parallel_rows(kRows, kParallelMinWork, [&](int64_t r0, int64_t) {
    if (omp_get_thread_num() != 0) {
      if (r0 < kRows / 2) taken = true;
      return;
    }
    if (first_calls++ > 0) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!taken && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    timed_out = !taken;
  });
  EXPECT_TRUE(taken);
  EXPECT_FALSE(timed_out);
}

}  // namespace
}  // namespace rag::nn
