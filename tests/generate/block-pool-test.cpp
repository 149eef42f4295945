// The KV block pool: allocation until exhaustion, reference counts, and blocks that never overlap.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "generate/block-pool.h"

namespace rag::generate {
namespace {

const KvLayout kLayout{2, 8};  // 2 layers, 8 F32 values per row: 512 values, 2048 bytes per block

TEST(BlockPool, AllocatesEveryBlockOnceThenNone) {
  BlockPool pool(kLayout, 4);
  EXPECT_EQ(pool.block_count(), 4);
  std::set<int32_t> seen;
  for (int i = 0; i < 4; ++i) {
    const int32_t b = pool.allocate();
    ASSERT_GE(b, 0);
    EXPECT_TRUE(seen.insert(b).second);
    EXPECT_EQ(pool.ref_count(b), 1);
  }
  EXPECT_EQ(pool.free_count(), 0);
  EXPECT_EQ(pool.allocate(), -1);
}

TEST(BlockPool, BlockIsFreeOnlyWhenTheLastReferenceGoes) {
  BlockPool pool(kLayout, 2);
  const int32_t b = pool.allocate();
  pool.retain(b);
  pool.retain(b);
  EXPECT_EQ(pool.ref_count(b), 3);
  pool.release(b);
  pool.release(b);
  EXPECT_EQ(pool.free_count(), 1);
  pool.release(b);
  EXPECT_EQ(pool.ref_count(b), 0);
  EXPECT_EQ(pool.free_count(), 2);
  // The freed block is handed out again.
  EXPECT_EQ(pool.allocate(), b);
}

TEST(BlockPool, BlocksDoNotOverlap) {
  for (nn::TensorType type : {nn::TensorType::kF32, nn::TensorType::kF16}) {
    SCOPED_TRACE(nn::tensor_type_name(type));
    const KvLayout layout{2, 8, type};
    // 2 × 2 × 16 rows of 8 values.
    EXPECT_EQ(layout.block_bytes(), 512 * (type == nn::TensorType::kF16 ? 2 : 4));
    BlockPool pool(layout, 3);
    std::vector<int32_t> blocks = {pool.allocate(), pool.allocate(), pool.allocate()};
    for (size_t i = 0; i < blocks.size(); ++i)
      std::fill_n(pool.data(blocks[i]), layout.block_bytes(), static_cast<std::byte>(i + 1));
    for (size_t i = 0; i < blocks.size(); ++i)
      for (int64_t f = 0; f < layout.block_bytes(); ++f)
        ASSERT_EQ(pool.data(blocks[i])[f], static_cast<std::byte>(i + 1));
    EXPECT_EQ(pool.data(1) - pool.data(0), layout.block_bytes());
  }
}

}  // namespace
}  // namespace rag::generate
