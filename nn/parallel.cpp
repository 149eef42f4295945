#include "nn/parallel.h"

#include <memory>

namespace rag::nn {

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
