// Where attention finds the keys and values of one sequence: a block table.
//
// The forward pass never sees how K/V memory is owned. It reads and writes through KvBlocks, a table of
// fixed-size blocks of kKvBlockTokens positions; position p lives in block p / kKvBlockTokens at slot
// p % kKvBlockTokens. Blocks are ids into a memory of N blocks, laid out as layer_count × head_count planes
// (one per layer and KV head) of N pieces; piece b of a plane holds that layer and head of block b: its
// kKvBlockTokens K rows, then its kKvBlockTokens V rows, head_dim values each of the layout's type (F32, or
// F16: half the memory, so twice the positions in the same --kv-mem):
//
//   piece(l, h, b) = memory + ((l × head_count + h) × N + b) × piece_bytes
//   key(l, p, h)   = piece(l, h, block of p) + slot × head_row_bytes     (RoPE already applied)
//   value(l, p, h) = key(l, p, h) + kKvBlockTokens × head_row_bytes
//
// So a block is not one run of memory, by design: attention reads a sequence one layer and KV head at a
// time, and in this order that is a single run when the sequence's blocks are consecutive ids (as a fresh
// pool and KvCache hand them out). Two cores stream that from DRAM at 2.5 times the rate they read the
// former layout, a run per block with the heads' rows interleaved (docs/benchmarks.md).
//
// KvCache owns the blocks of one sequence in a single allocation (generate()). The engine's paged cache
// (block-pool.h: reference-counted blocks from one pool, shared between sequences and the prefix cache)
// hands the forward pass the same KvBlocks, with ids of its pool.
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
  int64_t kv_dim = 0;  // values of one position's K (or V) in a layer: head_count × head_dim
  nn::TensorType type = nn::TensorType::kF32;  // kF32 or kF16
  int64_t head_count = 1;                      // KV heads

  bool operator==(const KvLayout&) const = default;
  bool valid() const {
    return layer_count > 0 && head_count > 0 && kv_dim > 0 && kv_dim % head_count == 0 &&
           (type == nn::TensorType::kF32 || type == nn::TensorType::kF16);
  }
  int64_t head_dim() const { return kv_dim / head_count; }
  int64_t head_row_bytes() const { return static_cast<int64_t>(nn::row_bytes(type, head_dim())); }
  int64_t piece_bytes() const { return 2 * kKvBlockTokens * head_row_bytes(); }
  int64_t block_bytes() const { return layer_count * head_count * piece_bytes(); }
};

// The block table of one sequence. Not owning: the blocks belong to a cache.
struct KvBlocks {
  KvLayout layout;
  std::byte* memory = nullptr;     // memory_blocks blocks' worth, laid out as above
  int64_t memory_blocks = 0;
  std::vector<int32_t> blocks;     // block i covers positions [i × kKvBlockTokens, (i + 1) × kKvBlockTokens)
  int64_t length = 0;              // positions [0, length) hold K/V written by earlier forward passes

  int64_t capacity() const { return static_cast<int64_t>(blocks.size()) * kKvBlockTokens; }
  // One head's row of head_dim values; the rows of a block's positions follow one another, head_row_bytes
  // apart.
  std::byte* key(int64_t layer, int64_t pos, int64_t head) const {
    return piece(layer, head, pos / kKvBlockTokens) + pos % kKvBlockTokens * layout.head_row_bytes();
  }
  std::byte* value(int64_t layer, int64_t pos, int64_t head) const {
    return key(layer, pos, head) + kKvBlockTokens * layout.head_row_bytes();
  }
  // Writes position pos's K and V of `layer` (kv_dim floats each, head after head), converted to layout.type.
  void store(int64_t layer, int64_t pos, const float* k, const float* v) const;

 private:
  std::byte* piece(int64_t layer, int64_t head, int64_t index) const {
    RAG_ASSERT(index >= 0 && index < static_cast<int64_t>(blocks.size()) && layer >= 0 &&
               layer < layout.layer_count && head >= 0 && head < layout.head_count);
    const int32_t block = blocks[static_cast<size_t>(index)];
    RAG_ASSERT(block >= 0 && block < memory_blocks);
    return memory + ((layer * layout.head_count + head) * memory_blocks + block) * layout.piece_bytes();
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
