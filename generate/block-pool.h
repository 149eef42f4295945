// The engine's KV memory: a fixed number of blocks (each every layer's K and V of kKvBlockTokens positions,
// in kv-cache.h's layout) in one allocation, handed out by id and reference-counted.
//
// States of a block (ref = its reference count; the prefix cache holds one reference per cached block):
//
//   free ──allocate──▶ owned (ref 1, one sequence writes its positions)
//                        │ the block fills; the sequence enters it in the prefix cache (retain)
//                        ▼
//                      shared (ref ≥ 2: the cache and one or more sequences; nobody writes it again)
//                        │ every sequence releases it
//                        ▼
//                      cached (ref 1, held only by the prefix cache: a hit retains it → shared)
//                        │ evicted by the prefix cache (release)
//                        ▼
//                      free
//
// A block that never fills (the tail of a sequence) goes from owned straight back to free on release.
// Invariants: a block on the free list has ref 0 and only those; a sequence writes only blocks it owns
// alone (positions past its shared prefix), so shared and cached contents never change.
// Not thread-safe: the engine thread alone uses it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "generate/kv-cache.h"

namespace rag::generate {

class BlockPool {
 public:
  // `block_count` blocks of layout.block_bytes() bytes. The memory is reserved, not touched: pages are
  // committed as blocks are first written.
  BlockPool(KvLayout layout, int64_t block_count);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  const KvLayout& layout() const { return layout_; }
  int64_t block_count() const { return static_cast<int64_t>(refs_.size()); }
  int64_t free_count() const { return static_cast<int64_t>(free_.size()); }

  // A free block, now with one reference; -1 when none is free.
  int32_t allocate();
  void retain(int32_t block);
  // Drops one reference; the block is free again when none is left.
  void release(int32_t block);
  // Copies the K/V of slots [0, positions) of every layer from block `from` into block `to`, which the
  // caller owns alone (ref 1): how a sequence reuses the leading positions of a cached block it cannot
  // share whole (prefix-cache.h, "Partial blocks").
  void copy_positions(int32_t from, int32_t to, int64_t positions);
  int32_t ref_count(int32_t block) const { return refs_[index(block)]; }
  // A block table over this pool's memory, with no blocks yet.
  KvBlocks table() const { return KvBlocks{layout_, storage_.get(), block_count(), {}, 0}; }

 private:
  size_t index(int32_t block) const {
    RAG_ASSERT(block >= 0 && block < static_cast<int32_t>(refs_.size()));
    return static_cast<size_t>(block);
  }

  KvLayout layout_;
  std::unique_ptr<std::byte[]> storage_;
  std::vector<int32_t> refs_;
  // A stack: the most recently freed block is reused first (warm in cache). It starts as 0, 1, 2, ... from
  // the top, so that a fresh pool gives a long prompt consecutive blocks: one run of memory per layer and
  // head (kv-cache.h).
  std::vector<int32_t> free_;
};

}  // namespace rag::generate
