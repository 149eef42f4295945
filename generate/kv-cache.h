// Where attention finds the keys and values of one sequence: a block table.
//
// The forward pass never sees how K/V memory is owned. It reads and writes through KvBlocks, a table of
// fixed-size blocks of kKvBlockTokens positions; position p lives in block p / kKvBlockTokens at slot
// p % kKvBlockTokens. One block holds every layer's K and V rows for its positions:
//
//   block floats = layer_count × 2 × kKvBlockTokens × kv_dim
//   key(l, p)    = block + ((l × 2 + 0) × kKvBlockTokens + slot) × kv_dim
//   value(l, p)  = block + ((l × 2 + 1) × kKvBlockTokens + slot) × kv_dim
//   a row holds kv_dim = head_count_kv × head_dim floats, head h at h × head_dim (RoPE already applied to K).
//
// KvCache owns the blocks of one sequence in a single allocation (generate()). The engine's paged cache
// (block-pool.h: reference-counted blocks from one pool, shared between sequences and the prefix cache)
// hands the forward pass the same KvBlocks, its blocks anywhere in the pool.
#pragma once

#include <cstdint>
#include <vector>

#include "common/error.h"

namespace rag::generate {

constexpr int64_t kKvBlockTokens = 16;

struct KvLayout {
  int64_t layer_count = 0;
  int64_t kv_dim = 0;  // floats per K (or V) row: head_count_kv × head_dim

  int64_t block_floats() const { return layer_count * 2 * kKvBlockTokens * kv_dim; }
};

// The block table of one sequence. Not owning: the blocks belong to a cache.
struct KvBlocks {
  KvLayout layout;
  std::vector<float*> blocks;  // block i covers positions [i × kKvBlockTokens, (i + 1) × kKvBlockTokens)
  int64_t length = 0;          // positions [0, length) hold K/V written by earlier forward passes

  int64_t capacity() const { return static_cast<int64_t>(blocks.size()) * kKvBlockTokens; }
  float* key(int64_t layer, int64_t pos) const { return row(layer, 0, pos); }
  float* value(int64_t layer, int64_t pos) const { return row(layer, 1, pos); }

 private:
  float* row(int64_t layer, int64_t kind, int64_t pos) const {
    RAG_ASSERT(pos >= 0 && pos < capacity() && layer >= 0 && layer < layout.layer_count);
    float* block = blocks[static_cast<size_t>(pos / kKvBlockTokens)];
    return block + ((layer * 2 + kind) * kKvBlockTokens + pos % kKvBlockTokens) * layout.kv_dim;
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
  std::vector<float> storage_;
  KvBlocks blocks_;
};

}  // namespace rag::generate
