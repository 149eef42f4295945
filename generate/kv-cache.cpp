#include "generate/kv-cache.h"

#include <algorithm>

#include "nn/kernels.h"

namespace rag::generate {

void KvBlocks::store(int64_t layer, int64_t pos, const float* k, const float* v) const {
  RAG_ASSERT(layout.type == nn::TensorType::kF32 || layout.type == nn::TensorType::kF16);
  if (layout.type == nn::TensorType::kF16) {
    nn::f32_to_f16_row(k, reinterpret_cast<uint16_t*>(key(layer, pos)), layout.kv_dim);
    nn::f32_to_f16_row(v, reinterpret_cast<uint16_t*>(value(layer, pos)), layout.kv_dim);
  } else {
    std::copy_n(k, layout.kv_dim, reinterpret_cast<float*>(key(layer, pos)));
    std::copy_n(v, layout.kv_dim, reinterpret_cast<float*>(value(layer, pos)));
  }
}

KvCache::KvCache(KvLayout layout, int64_t capacity) {
  RAG_ASSERT(layout.layer_count > 0 && layout.kv_dim > 0 && capacity > 0);
  int64_t block_count = (capacity + kKvBlockTokens - 1) / kKvBlockTokens;
  storage_.assign(static_cast<size_t>(block_count * layout.block_bytes()), std::byte{0});
  blocks_.layout = layout;
  for (int64_t b = 0; b < block_count; ++b)
    blocks_.blocks.push_back(storage_.data() + b * layout.block_bytes());
}

void KvCache::truncate(int64_t length) {
  RAG_ASSERT(length >= 0 && length <= blocks_.length);
  blocks_.length = length;
}

}  // namespace rag::generate
