#include "generate/kv-cache.h"

namespace rag::generate {

KvCache::KvCache(KvLayout layout, int64_t capacity) {
  RAG_ASSERT(layout.layer_count > 0 && layout.kv_dim > 0 && capacity > 0);
  int64_t block_count = (capacity + kKvBlockTokens - 1) / kKvBlockTokens;
  storage_.assign(static_cast<size_t>(block_count * layout.block_floats()), 0.0f);
  blocks_.layout = layout;
  for (int64_t b = 0; b < block_count; ++b) blocks_.blocks.push_back(storage_.data() + b * layout.block_floats());
}

void KvCache::truncate(int64_t length) {
  RAG_ASSERT(length >= 0 && length <= blocks_.length);
  blocks_.length = length;
}

}  // namespace rag::generate
