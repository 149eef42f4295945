// Where attention finds the keys and values of one sequence: a block table.
//
// The forward pass never sees how K/V memory is owned. It reads and writes through KvBlocks, a table of
// fixed-size blocks of kKvBlockTokens positions; position p lives in block p / kKvBlockTokens at slot
// p % kKvBlockTokens. One block holds every layer's K and V rows for its positions, each row kv_dim values
// of the layout's type (F32, or F16: half the memory, so twice the positions in the same --kv-mem):
//
//   block values = layer_count × 2 × kKvBlockTokens × kv_dim
//   key(l, p)    = block + ((l × 2 + 0) × kKvBlockTokens + slot) × kv_dim values
//   value(l, p)  = block + ((l × 2 + 1) × kKvBlockTokens + slot) × kv_dim values
//   a row holds kv_dim = head_count_kv × head_dim values, head h at h × head_dim (RoPE already applied to K).
//
// KvCache owns the blocks of one sequence in a single allocation (generate()). The engine's paged cache
// (block-pool.h: reference-counted blocks from one pool, shared between sequences and the prefix cache)
// hands the forward pass the same KvBlocks, its blocks anywhere in the pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/error.h"
#include "nn/tensor.h"

namespace rag::generate {

constexpr int64_t kKvBlockTokens = 16;

struct KvLayout {
  int64_t layer_count = 0;
  int64_t kv_dim = 0;  // values per K (or V) row: head_count_kv × head_dim
  nn::TensorType type = nn::TensorType::kF32;  // kF32 or kF16

  int64_t row_bytes() const { return static_cast<int64_t>(nn::row_bytes(type, kv_dim)); }
  int64_t block_bytes() const { return layer_count * 2 * kKvBlockTokens * row_bytes(); }
};

// The block table of one sequence. Not owning: the blocks belong to a cache.
struct KvBlocks {
  KvLayout layout;
  std::vector<std::byte*> blocks;  // block i covers positions [i × kKvBlockTokens, (i + 1) × kKvBlockTokens)
  int64_t length = 0;              // positions [0, length) hold K/V written by earlier forward passes

  int64_t capacity() const { return static_cast<int64_t>(blocks.size()) * kKvBlockTokens; }
  // Row starts, kv_dim values of layout.type each; a position's rows are consecutive within its block's
  // run of kKvBlockTokens slots (so one head's keys of a block are kKvBlockTokens rows, row_bytes apart).
  std::byte* key(int64_t layer, int64_t pos) const { return row(layer, 0, pos); }
  std::byte* value(int64_t layer, int64_t pos) const { return row(layer, 1, pos); }
  // Writes position pos's K and V rows of `layer` (kv_dim floats each), converted to layout.type.
  void store(int64_t layer, int64_t pos, const float* k, const float* v) const;

 private:
  std::byte* row(int64_t layer, int64_t kind, int64_t pos) const {
    RAG_ASSERT(pos >= 0 && pos < capacity() && layer >= 0 && layer < layout.layer_count);
    std::byte* block = blocks[static_cast<size_t>(pos / kKvBlockTokens)];
    return block + ((layer * 2 + kind) * kKvBlockTokens + pos % kKvBlockTokens) * layout.row_bytes();
  }
};

// K/V memory for one sequence of up to `capacity` positions (rounded up to whole blocks), allocated once.
class KvCache {
 public:
  KvCache(KvLayout layout, int64_t capacity);
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  KvBlocks& blocks() { return blocks_; }
  const KvBlocks& blocks() const { return blocks_; }
  int64_t length() const { return blocks_.length; }
  int64_t capacity() const { return blocks_.capacity(); }
  // Forgets positions [length, ...): the next forward pass continues at `length`.
  void truncate(int64_t length);

 private:
  std::vector<std::byte> storage_;
  KvBlocks blocks_;
};

}  // namespace rag::generate
