// The KV block pool: allocation until exhaustion, reference counts, and blocks that never overlap.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <set>

#include "generate/block-pool.h"
#include "nn/kernels.h"

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

// Attention streams a sequence's blocks fastest when their ids are consecutive (kv-cache.h), so a fresh pool
// hands them out in order, and blocks released last first come back in the same order.
TEST(BlockPool, HandsOutConsecutiveBlocksInOrder) {
  BlockPool pool(kLayout, 4);
  for (int32_t b = 0; b < 4; ++b) EXPECT_EQ(pool.allocate(), b);
  for (int32_t b = 3; b >= 0; --b) pool.release(b);
  for (int32_t b = 0; b < 4; ++b) EXPECT_EQ(pool.allocate(), b);
  for (int32_t b = 0; b < 4; ++b) pool.release(b);
}

TEST(BlockPool, BlocksDoNotOverlap) {
  for (nn::TensorType type : {nn::TensorType::kF32, nn::TensorType::kF16}) {
    SCOPED_TRACE(nn::tensor_type_name(type));
    const KvLayout layout{2, 8, type, 2};  // 2 layers, 2 KV heads of 4 values
    // 2 layers × 2 heads × 2 × 16 rows of 4 values.
    EXPECT_EQ(layout.block_bytes(), 512 * (type == nn::TensorType::kF16 ? 2 : 4));
    BlockPool pool(layout, 3);
    KvBlocks kv = pool.table();
    kv.blocks = {pool.allocate(), pool.allocate(), pool.allocate()};
    // Values of their own (and exact in F16) for each layer, position, K or V and column, so that any two
    // rows sharing memory show as one overwriting the other.
    auto value = [](int64_t layer, int64_t pos, int64_t kind, int64_t i) {
      return static_cast<float>(((layer * 48 + pos) * 2 + kind) * 8 + i);
    };
    std::vector<float> k(8), v(8), read(4);
    std::set<const std::byte*> rows;
    for (int64_t l = 0; l < 2; ++l)
      for (int64_t p = 0; p < kv.capacity(); ++p) {
        for (int64_t i = 0; i < 8; ++i) {
          k[static_cast<size_t>(i)] = value(l, p, 0, i);
          v[static_cast<size_t>(i)] = value(l, p, 1, i);
        }
        kv.store(l, p, k.data(), v.data());
      }
    for (int64_t l = 0; l < 2; ++l)
      for (int64_t p = 0; p < kv.capacity(); ++p)
        for (int64_t h = 0; h < 2; ++h)
          for (int64_t kind = 0; kind < 2; ++kind) {
            const std::byte* row = kind == 0 ? kv.key(l, p, h) : kv.value(l, p, h);
            rows.insert(row);
            if (type == nn::TensorType::kF16) {
              nn::f16_to_f32_row(reinterpret_cast<const uint16_t*>(row), read.data(), 4);
            } else {
              std::memcpy(read.data(), row, 4 * sizeof(float));
            }
            for (int64_t i = 0; i < 4; ++i)
              ASSERT_EQ(read[static_cast<size_t>(i)], value(l, p, kind, h * 4 + i)) << l << " " << p << " " << h;
          }
    // Every row in the pool's memory once: 3 blocks of rows, none beyond it.
    EXPECT_EQ(static_cast<int64_t>(rows.size()) * layout.head_row_bytes(), 3 * layout.block_bytes());
    for (const std::byte* row : rows) {
      EXPECT_GE(row, pool.table().memory);
      EXPECT_LE(row + layout.head_row_bytes(), pool.table().memory + 3 * layout.block_bytes());
    }
  }
}

TEST(BlockPool, CopyPositionsCopiesTheLeadingSlotsOfEveryLayerAndHeadOnly) {
  const KvLayout layout{2, 8, nn::TensorType::kF32, 2};
  BlockPool pool(layout, 2);
  KvBlocks kv = pool.table();
  kv.blocks = {pool.allocate(), pool.allocate()};
  std::vector<float> k(8), v(8);
  for (int64_t l = 0; l < 2; ++l)
    for (int64_t p = 0; p < kv.capacity(); ++p) {
      std::iota(k.begin(), k.end(), static_cast<float>(100 * l + p));
      std::iota(v.begin(), v.end(), static_cast<float>(-100 * l - p));
      kv.store(l, p, k.data(), v.data());
    }
  pool.copy_positions(kv.blocks[0], kv.blocks[1], 5);
  for (int64_t l = 0; l < 2; ++l)
    for (int64_t slot = 0; slot < kKvBlockTokens; ++slot)
      for (int64_t h = 0; h < 2; ++h) {
        // Slots below 5 now hold block 0's rows; the rest are as they were.
        const int64_t source = slot < 5 ? slot : kKvBlockTokens + slot;
        const int64_t target = kKvBlockTokens + slot;
        for (int64_t i = 0; i < 4; ++i) {
          EXPECT_EQ(reinterpret_cast<const float*>(kv.key(l, target, h))[i], static_cast<float>(100 * l + source + h * 4 + i));
          EXPECT_EQ(reinterpret_cast<const float*>(kv.value(l, target, h))[i], static_cast<float>(-100 * l - source + h * 4 + i));
        }
      }
}

}  // namespace
}  // namespace rag::generate
