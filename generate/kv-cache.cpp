#include "generate/kv-cache.h"

#include <algorithm>

#include "nn/kernels.h"

namespace rag::generate {

void KvBlocks::store(int64_t layer, int64_t pos, const float* k, const float* v) const {
  const int64_t hd = layout.head_dim();
  for (int64_t h = 0; h < layout.head_count; ++h) {
    if (layout.type == nn::TensorType::kF16) {
      nn::f32_to_f16_row(k + h * hd, reinterpret_cast<uint16_t*>(key(layer, pos, h)), hd);
      nn::f32_to_f16_row(v + h * hd, reinterpret_cast<uint16_t*>(value(layer, pos, h)), hd);
    } else {
      std::copy_n(k + h * hd, hd, reinterpret_cast<float*>(key(layer, pos, h)));
      std::copy_n(v + h * hd, hd, reinterpret_cast<float*>(value(layer, pos, h)));
    }
  }
}

KvCache::KvCache(KvLayout layout, int64_t capacity) {
  RAG_ASSERT(layout.valid() && capacity > 0);
  const int64_t block_count = (capacity + kKvBlockTokens - 1) / kKvBlockTokens;
  storage_.assign(static_cast<size_t>(block_count * layout.block_bytes()), std::byte{0});
  blocks_.layout = layout;
  blocks_.memory = storage_.data();
  blocks_.memory_blocks = block_count;
  for (int64_t b = 0; b < block_count; ++b) blocks_.blocks.push_back(static_cast<int32_t>(b));
}

void KvCache::truncate(int64_t length) {
  RAG_ASSERT(length >= 0 && length <= blocks_.length);
  blocks_.length = length;
}

}  // namespace rag::generate
