#include "nn/parallel.h"

#include <memory>

namespace rag::nn {

namespace {

// Takes the front (or back) chunk of `share` into `chunk`; false once the share is empty.
bool take_chunk(RowShare& share, bool front, int64_t& chunk) {
  uint64_t r = share.range.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t f = r & 0xffffffff, b = r >> 32;
    if (f >= b) return false;
    const uint64_t next = front ? b << 32 | (f + 1) : (b - 1) << 32 | f;
    if (share.range.compare_exchange_weak(r, next, std::memory_order_relaxed)) {
      chunk = static_cast<int64_t>(front ? f : b - 1);
      return true;
    }
  }
}

uint64_t chunks_left(const RowShare& share) {
  const uint64_t r = share.range.load(std::memory_order_relaxed);
  const uint64_t front = r & 0xffffffff, back = r >> 32;
  return back > front ? back - front : 0;
}

}  // namespace

bool next_chunk(RowShare* shares, int threads, int self, int64_t& chunk) {
  if (take_chunk(shares[self], true, chunk)) return true;
  for (;;) {
    int victim = -1;
    uint64_t most = 0;
    for (int t = 0; t < threads; ++t) {
      const uint64_t left = chunks_left(shares[t]);
      if (left > most) most = left, victim = t;
    }
    if (victim < 0) return false;
    if (take_chunk(shares[victim], false, chunk)) return true;
  }
}

RowShare* row_shares(int threads) {
  thread_local std::unique_ptr<RowShare[]> shares;
  thread_local int capacity = 0;
  if (capacity < threads) {
    shares = std::make_unique<RowShare[]>(static_cast<size_t>(threads));
    capacity = threads;
  }
  return shares.get();
}

}  // namespace rag::nn
