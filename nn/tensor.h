// Tensor element types with the exact ggml block layouts, so that files made by llama.cpp's converters
// load as they are, and conversions between them.
//
//   F32   4 bytes per value
//   F16   IEEE half, 2 bytes per value
//   BF16  bfloat16, 2 bytes per value
//   Q8_0  blocks of 32: { f16 d; int8 qs[32]; }            34 bytes; x = d * q
//   Q4_0  blocks of 32: { f16 d; uint8 qs[16]; }           18 bytes; x = d * (q - 8),
//         qs[j] low nibble is element j, high nibble is element j + 16
//
// Rows of quantized tensors hold a whole number of blocks: ne[0] must be a multiple of 32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rag::nn {

// Values are ggml's type ids as stored in GGUF.
enum class TensorType : uint32_t { kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ8_0 = 8, kBF16 = 30 };

constexpr int kQuantBlock = 32;

struct BlockQ8_0 {
  uint16_t d;  // f16 scale
  int8_t qs[kQuantBlock];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ4_0 {
  uint16_t d;  // f16 scale
  uint8_t qs[kQuantBlock / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// False for ids we do not handle (the reader reports them as kUnsupported with the tensor's name).
bool tensor_type_known(uint32_t id);
std::string_view tensor_type_name(TensorType type);   // "F32", "F16", "BF16", "Q8_0", "Q4_0"
size_t block_size(TensorType type);                    // elements per block: 1 or 32
size_t type_size(TensorType type);                     // bytes per block
// Bytes of one row of n elements; n must be a multiple of block_size(type) (checked by callers on input).
size_t row_bytes(TensorType type, int64_t n);

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);     // round to nearest even
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);    // round to nearest even
// out[i * stride] = f32_to_bf16(x[2i] * scale) | f32_to_bf16(x[2i + 1] * scale) << 16 for i < pairs: the
// query pairs of BF16 attention (nn::AttentionBlock::q_pairs), in one call rather than two per pair.
void f32_to_bf16_pairs(const float* x, float scale, int64_t pairs, uint32_t* out, int64_t stride);

// Converts n floats (n a multiple of block_size(type)) into `type`'s layout, as ggml does (same scales,
// same rounding), so files we quantize match llama.cpp's bit for bit.
void quantize_row(TensorType type, const float* x, void* out, int64_t n);
// The inverse, for tests and reference code; real kernels read the blocks in place.
void dequantize_row(TensorType type, const void* in, float* y, int64_t n);

}  // namespace rag::nn
