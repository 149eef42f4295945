// Element types and conversions. The quantizers follow ggml's reference code (ggml-quants.c,
// quantize_row_q8_0_ref and quantize_row_q4_0_ref) operation for operation, so that a file we quantize
// matches one quantized by llama.cpp bit for bit; the half-precision conversions are exact bit manipulations
// (round to nearest even), equal to F16C's _cvtss_sh(x, 0) that ggml uses on x86.
#include "nn/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"

namespace rag::nn {
namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// float → int8 as x86's cvttss2si does for the cast in ggml's code, without C++'s undefined behaviour for
// values out of range: NaN and out-of-range values become the "integer indefinite" 0x80000000, whose low
// byte is 0. Only non-finite inputs ever reach that case.
int8_t truncate_to_int8(float v) {
  if (!(v > -2147483648.0f && v < 2147483648.0f)) return 0;
  return static_cast<int8_t>(static_cast<int32_t>(v));
}

void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t blocks) {
  for (int64_t i = 0; i < blocks; ++i) {
    // ggml's MAX(a, b) is (a > b ? a : b), which differs from std::max only when a NaN is involved.
    float amax = 0.0f;
    for (int j = 0; j < kQuantBlock; ++j) {
      const float v = std::fabs(x[i * kQuantBlock + j]);
      amax = amax > v ? amax : v;
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < kQuantBlock; ++j) y[i].qs[j] = truncate_to_int8(std::round(x[i * kQuantBlock + j] * id));
  }
}

void quantize_q4_0(const float* x, BlockQ4_0* y, int64_t blocks) {
  constexpr int kHalf = kQuantBlock / 2;
  for (int64_t i = 0; i < blocks; ++i) {
    // The value of largest magnitude, with its sign: it maps to -8 exactly, using the full range [-8, 7].
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < kQuantBlock; ++j) {
      const float v = x[i * kQuantBlock + j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < kHalf; ++j) {
      const float x0 = x[i * kQuantBlock + j] * id;
      const float x1 = x[i * kQuantBlock + kHalf + j] * id;
      const uint8_t q0 = static_cast<uint8_t>(std::min<int>(15, truncate_to_int8(x0 + 8.5f)));
      const uint8_t q1 = static_cast<uint8_t>(std::min<int>(15, truncate_to_int8(x1 + 8.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

}  // namespace

bool tensor_type_known(uint32_t id) {
  switch (static_cast<TensorType>(id)) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kQ4_0:
    case TensorType::kQ8_0:
    case TensorType::kBF16:
      return true;
  }
  return false;
}

std::string_view tensor_type_name(TensorType type) {
  switch (type) {
    case TensorType::kF32: return "F32";
    case TensorType::kF16: return "F16";
    case TensorType::kQ4_0: return "Q4_0";
    case TensorType::kQ8_0: return "Q8_0";
    case TensorType::kBF16: return "BF16";
  }
  RAG_ASSERT(!"unknown tensor type");
  return "";
}

size_t block_size(TensorType type) {
  switch (type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16:
      return 1;
    case TensorType::kQ4_0:
    case TensorType::kQ8_0:
      return kQuantBlock;
  }
  RAG_ASSERT(!"unknown tensor type");
  return 1;
}

size_t type_size(TensorType type) {
  switch (type) {
    case TensorType::kF32: return 4;
    case TensorType::kF16: return 2;
    case TensorType::kBF16: return 2;
    case TensorType::kQ4_0: return sizeof(BlockQ4_0);
    case TensorType::kQ8_0: return sizeof(BlockQ8_0);
  }
  RAG_ASSERT(!"unknown tensor type");
  return 0;
}

size_t row_bytes(TensorType type, int64_t n) {
  RAG_ASSERT(n >= 0 && static_cast<size_t>(n) % block_size(type) == 0);
  return static_cast<size_t>(n) / block_size(type) * type_size(type);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  if (exponent == 0x1f) return bits_float(sign | 0x7f800000 | (mantissa << 13));  // Inf, NaN keeps payload
  if (exponent != 0) return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_float(sign);
  // Subnormal half: every one is a normal float. Shift the leading one into the implicit position.
  int e = 113;
  while ((mantissa & 0x400) == 0) {
    mantissa <<= 1;
    --e;
  }
  return bits_float(sign | (static_cast<uint32_t>(e) << 23) | ((mantissa & 0x3ff) << 13));
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const uint32_t abs = u & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00 | static_cast<uint16_t>((abs >> 13) & 0x3ff);  // quiet NaN
  if (abs >= 0x47800000) return sign | 0x7c00;  // ≥ 65536: Inf (values rounding up to it are caught below)
  const int exponent = static_cast<int>(abs >> 23) - 127;
  if (exponent >= -14) {
    // Normal half: drop 13 mantissa bits with round to nearest even; a carry may bump the exponent,
    // and 65520 and above carry into the Inf encoding, which is the right answer.
    uint32_t h = ((static_cast<uint32_t>(exponent + 15)) << 10) | ((abs >> 13) & 0x3ff);
    const uint32_t rest = abs & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;
    return sign | static_cast<uint16_t>(h);
  }
  if (exponent < -25) return sign;  // below half the smallest subnormal: rounds to zero
  // Subnormal half: value = m × 2^-24 with the implicit one made explicit.
  const uint32_t mantissa = (abs & 0x7fffff) | 0x800000;
  const int shift = -exponent - 1;  // 14..24: bits of the 24-bit mantissa to drop
  uint32_t h = mantissa >> shift;
  const uint32_t rest = mantissa & ((1u << shift) - 1);
  const uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (h & 1))) ++h;
  return sign | static_cast<uint16_t>(h);
}

float bf16_to_f32(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

uint16_t f32_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 64);  // force quiet NaN
  return static_cast<uint16_t>((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

void f32_to_bf16_pairs(const float* x, float scale, int64_t pairs, uint32_t* out, int64_t stride) {
  for (int64_t i = 0; i < pairs; ++i)
    out[i * stride] = f32_to_bf16(x[2 * i] * scale) | static_cast<uint32_t>(f32_to_bf16(x[2 * i + 1] * scale)) << 16;
}

void quantize_row(TensorType type, const float* x, void* out, int64_t n) {
  RAG_ASSERT(n >= 0 && static_cast<size_t>(n) % block_size(type) == 0);
  switch (type) {
    case TensorType::kF32:
      std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::kF16: {
      auto* y = static_cast<uint16_t*>(out);
      for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(x[i]);
      return;
    }
    case TensorType::kBF16: {
      auto* y = static_cast<uint16_t*>(out);
      for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
      return;
    }
    case TensorType::kQ8_0:
      quantize_q8_0(x, static_cast<BlockQ8_0*>(out), n / kQuantBlock);
      return;
    case TensorType::kQ4_0:
      quantize_q4_0(x, static_cast<BlockQ4_0*>(out), n / kQuantBlock);
      return;
  }
  RAG_ASSERT(!"unknown tensor type");
}

void dequantize_row(TensorType type, const void* in, float* y, int64_t n) {
  RAG_ASSERT(n >= 0 && static_cast<size_t>(n) % block_size(type) == 0);
  switch (type) {
    case TensorType::kF32:
      std::memcpy(y, in, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::kF16: {
      const auto* x = static_cast<const uint16_t*>(in);
      for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(x[i]);
      return;
    }
    case TensorType::kBF16: {
      const auto* x = static_cast<const uint16_t*>(in);
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
      return;
    }
    case TensorType::kQ8_0: {
      const auto* x = static_cast<const BlockQ8_0*>(in);
      for (int64_t i = 0; i < n / kQuantBlock; ++i) {
        const float d = f16_to_f32(x[i].d);
        for (int j = 0; j < kQuantBlock; ++j) y[i * kQuantBlock + j] = d * x[i].qs[j];
      }
      return;
    }
    case TensorType::kQ4_0: {
      constexpr int kHalf = kQuantBlock / 2;
      const auto* x = static_cast<const BlockQ4_0*>(in);
      for (int64_t i = 0; i < n / kQuantBlock; ++i) {
        const float d = f16_to_f32(x[i].d);
        for (int j = 0; j < kHalf; ++j) {
          y[i * kQuantBlock + j] = d * ((x[i].qs[j] & 0x0f) - 8);
          y[i * kQuantBlock + kHalf + j] = d * ((x[i].qs[j] >> 4) - 8);
        }
      }
      return;
    }
  }
  RAG_ASSERT(!"unknown tensor type");
}

}  // namespace rag::nn
