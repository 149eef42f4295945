#include "generate/block-pool.h"

#include <cstring>

#include "common/live-count.h"

namespace rag::generate {
namespace {

// Blocks with a reference in the pools alive, process-wide; the test binaries' end-of-run accounting checks
// it is back to its start. A pool destroyed while holding blocks drops them from the count: the engine
// checks its own pool is whole first (engine.cpp, "kv_blocks_leaked").
LiveCount& held_blocks() {
  static LiveCount& count = live_count("kv_blocks");
  return count;
}

}  // namespace

BlockPool::BlockPool(KvLayout layout, int64_t block_count) : layout_(layout) {
  RAG_ASSERT(layout.block_bytes() > 0 && block_count > 0 && block_count <= INT32_MAX);
  // new[] without () leaves the memory untouched, so an idle pool costs address space, not RAM.
  storage_.reset(new std::byte[static_cast<size_t>(block_count * layout.block_bytes())]);
  refs_.assign(static_cast<size_t>(block_count), 0);
  free_.reserve(static_cast<size_t>(block_count));
  for (int64_t b = block_count - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

BlockPool::~BlockPool() { held_blocks().add(free_count() - block_count()); }

int32_t BlockPool::allocate() {
  if (free_.empty()) return -1;
  const int32_t block = free_.back();
  free_.pop_back();
  RAG_ASSERT(refs_[index(block)] == 0);
  refs_[index(block)] = 1;
  held_blocks().add(1);
  return block;
}

void BlockPool::retain(int32_t block) {
  RAG_ASSERT(refs_[index(block)] > 0);
  ++refs_[index(block)];
}

void BlockPool::release(int32_t block) {
  int32_t& ref = refs_[index(block)];
  RAG_ASSERT(ref > 0);
  if (--ref == 0) {
    free_.push_back(block);
    held_blocks().add(-1);
  }
}

void BlockPool::copy_positions(int32_t from, int32_t to, int64_t positions) {
  RAG_ASSERT(from != to && ref_count(from) > 0 && ref_count(to) == 1);
  RAG_ASSERT(positions >= 0 && positions <= kKvBlockTokens);
  // A table of the two blocks: positions [0, 16) are `from`'s, [16, 32) `to`'s. In each layer and head, a
  // block's K rows of consecutive slots follow one another, and so do its V rows.
  KvBlocks both = table();
  both.blocks = {from, to};
  const auto bytes = static_cast<size_t>(positions * layout_.head_row_bytes());
  for (int64_t l = 0; l < layout_.layer_count; ++l)
    for (int64_t h = 0; h < layout_.head_count; ++h) {
      std::memcpy(both.key(l, kKvBlockTokens, h), both.key(l, 0, h), bytes);
      std::memcpy(both.value(l, kKvBlockTokens, h), both.value(l, 0, h), bytes);
    }
}

}  // namespace rag::generate
