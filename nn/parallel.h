// Row-parallel loops for the kernels: parallel_rows splits a product's rows among the OpenMP threads.
//
// Each thread owns a contiguous share of the rows, so that it streams its own part of the weights, and
// takes it in chunks from the front; a thread that runs out takes chunks from the back of the share with
// the most left. Equal static shares finish apart: on the 2-core VMs we measure on, the two threads' speeds
// differ from region to region (neither is the slow one for long), and over a decode's regions the faster
// thread waited for the other for a fifth of its busy time.
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace rag::nn {

// Every range parallel_rows hands out but a matrix's last starts and ends at a multiple of this, the widest
// row tile of any kernel: a kernel's rows then round as they would in any other split.
inline constexpr int64_t kRowAlign = 16;
// Below this many multiply-adds a product runs on the calling thread: waking the team costs more.
inline constexpr int64_t kParallelMinWork = 1 << 15;
// Chunks per share: enough for the threads to finish together, few enough that each is a long stretch.
inline constexpr int64_t kChunksPerThread = 16;

// A share as chunk indexes [front, back) in one word, so that its owner (from the front) and a thief (from
// the back) agree on every chunk through one compare-and-swap.
struct alignas(64) RowShare {
  std::atomic<uint64_t> range;
};

// The next chunk for thread `self` of a region's `threads` shares: the front of its own share, or once that
// is empty the back of the share with the most left (shares of threads the runtime did not start, under
// OMP_DYNAMIC, are emptied this way too); false when every share is empty.
bool next_chunk(RowShare* shares, int threads, int self, int64_t& chunk);
// This thread's shares for a region of `threads` threads (reused from call to call).
RowShare* row_shares(int threads);

// Calls f(r0, r1) on ranges that cover rows [0, rows) once each, on the OpenMP threads, or once with the
// whole range on this thread for work (multiply-adds) under kParallelMinWork, one thread, or from inside a
// parallel region. f must not throw, and may run several times on one thread.
template <typename F>
void parallel_rows(int64_t rows, int64_t work, F&& f) {
  const int threads = omp_get_max_threads();
  if (work < kParallelMinWork || omp_in_parallel() || threads == 1) {
    f(int64_t{0}, rows);
    return;
  }
  const int64_t per_chunk = rows / (threads * kChunksPerThread) / kRowAlign * kRowAlign;
  const int64_t grain = std::max(kRowAlign, per_chunk);
  const int64_t chunks = (rows + grain - 1) / grain;
  RowShare* const shares = row_shares(threads);
  for (int t = 0; t < threads; ++t) {
    const auto front = static_cast<uint64_t>(chunks * t / threads);
    const auto back = static_cast<uint64_t>(chunks * (t + 1) / threads);
    shares[t].range.store(back << 32 | front, std::memory_order_relaxed);
  }
  auto run = [&](int64_t chunk) { f(chunk * grain, std::min(rows, (chunk + 1) * grain)); };
#pragma omp parallel num_threads(threads)
  {
    int64_t chunk = 0;
    while (next_chunk(shares, threads, omp_get_thread_num(), chunk)) run(chunk);
  }
}

}  // namespace rag::nn
