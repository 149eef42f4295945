// The KV-block count behind the end-of-run accounting (tests/support/resource-accounting.cpp): "kv_blocks"
// follows blocks with a reference in live pools, and "kv_blocks_leaked" gains what an engine still held
// when it stopped (none, unless a request or the prefix cache lost track of a block).
#include <gtest/gtest.h>

#include "common/live-count.h"
#include "generate/block-pool.h"

namespace rag::generate {
namespace {

TEST(KvAccounting, HeldBlocksAreCountedFromAllocateToTheLastRelease) {
  LiveCount& held = live_count("kv_blocks");
  const int64_t start = held.value();
  {
    BlockPool pool(KvLayout{.layer_count = 1, .kv_dim = 4}, 4);
    const int32_t a = pool.allocate();
    const int32_t b = pool.allocate();
    EXPECT_EQ(held.value(), start + 2);
    pool.retain(a);  // shared: still one block held
    EXPECT_EQ(held.value(), start + 2);
    pool.release(a);
    EXPECT_EQ(held.value(), start + 2);
    pool.release(a);
    EXPECT_EQ(held.value(), start + 1);
    (void)b;  // still held when the pool goes
  }
  EXPECT_EQ(held.value(), start);  // a destroyed pool takes its blocks out of the count
}

}  // namespace
}  // namespace rag::generate
