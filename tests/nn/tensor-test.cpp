// Tensor types: half-precision conversions against hand-checked values and an exhaustive midpoint oracle,
// Q8_0/Q4_0 against hand-computed blocks (ggml's reference rules) and against error bounds on random data.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "nn/tensor.h"

namespace rag::nn {
namespace {

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(Tensor, TypeTable) {
  struct Case {
    TensorType type;
    const char* name;
    size_t block, bytes, row64;
  };
  const Case cases[] = {
      {TensorType::kF32, "F32", 1, 4, 256},     {TensorType::kF16, "F16", 1, 2, 128},
      {TensorType::kBF16, "BF16", 1, 2, 128},   {TensorType::kQ8_0, "Q8_0", 32, 34, 68},
      {TensorType::kQ4_0, "Q4_0", 32, 18, 36},
  };
  for (const auto& c : cases) {
    EXPECT_TRUE(tensor_type_known(static_cast<uint32_t>(c.type))) << c.name;
    EXPECT_EQ(tensor_type_name(c.type), c.name);
    EXPECT_EQ(block_size(c.type), c.block) << c.name;
    EXPECT_EQ(type_size(c.type), c.bytes) << c.name;
    EXPECT_EQ(row_bytes(c.type, 64), c.row64) << c.name;
    EXPECT_EQ(row_bytes(c.type, 0), 0u) << c.name;
  }
  for (uint32_t id : {3u, 6u, 7u, 12u, 29u, 31u, 1000u}) EXPECT_FALSE(tensor_type_known(id)) << id;
}

TEST(Tensor, F16KnownValues) {
  struct Case {
    float f;
    uint16_t h;
  };
  const float inf = std::numeric_limits<float>::infinity();
  const Case cases[] = {
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {1.0f, 0x3c00},
      {-2.0f, 0xc000},
      {0.5f, 0x3800},
      {65504.0f, 0x7bff},                    // largest half
      {65519.99f, 0x7bff},                   // below the midpoint to infinity
      {65520.0f, 0x7c00},                    // the midpoint rounds to even: infinity
      {1e9f, 0x7c00},
      {inf, 0x7c00},
      {-inf, 0xfc00},
      {0.1f, 0x2e66},
      {1.0f / 3.0f, 0x3555},
      {std::ldexp(1.0f, -14), 0x0400},       // smallest normal
      {std::ldexp(1.0f, -24), 0x0001},       // smallest subnormal
      {std::ldexp(1.0f, -25), 0x0000},       // half of it: tie to even (0)
      {std::ldexp(1.5f, -25), 0x0001},       // above the tie
      {std::ldexp(3.0f, -25), 0x0002},       // tie between 1 and 2: even
      {std::ldexp(5.0f, -25), 0x0002},       // tie between 2 and 3: even
      {std::ldexp(1.0f, -26), 0x0000},
      {std::ldexp(1023.5f, -24), 0x0400},    // rounds up out of the subnormals
      {1.0f + std::ldexp(1.0f, -11), 0x3c00},        // tie: stays on the even 1.0
      {1.0f + std::ldexp(3.0f, -11), 0x3c02},        // tie: goes up to the even neighbour
      {1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20), 0x3c01},  // just above the tie
      {2047.0f + 0.5f, 0x6800},              // 2047.5 → 2048 (tie, even)
      {std::numeric_limits<float>::denorm_min(), 0x0000},
  };
  for (const auto& c : cases) EXPECT_EQ(f32_to_f16(c.f), c.h) << c.f;
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_f32(0x7c00), inf);
  EXPECT_EQ(f16_to_f32(0xfc00), -inf);
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  const uint16_t nan = f32_to_f16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x03ff, 0);
  EXPECT_NE(f32_to_f16(bits_float(0x7f800001)) & 0x03ff, 0);  // a signalling NaN with a low payload stays NaN
}

// Every half converts to a float and back to itself, and every float between two neighbouring halves
// rounds to the nearer one, ties to the even one: checked at and around every midpoint.
TEST(Tensor, F16ExhaustiveAgainstMidpoints) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << h;
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), h) << h;
    const uint32_t magnitude = h & 0x7fff;
    if (magnitude >= 0x7bff) continue;  // the largest finite half and Inf have no finite upper neighbour
    const float next = f16_to_f32(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((static_cast<double>(f) + next) / 2);  // exact: 12 significant bits
    const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
    ASSERT_EQ(f32_to_f16(mid), even) << h;
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, f)), h) << h;
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, next)), h + 1) << h;
  }
}

TEST(Tensor, Bf16KnownValues) {
  struct Case {
    uint32_t f;
    uint16_t h;
  };
  const Case cases[] = {
      {0x3f800000, 0x3f80},  // 1.0
      {0x3f808000, 0x3f80},  // tie: stays even
      {0x3f818000, 0x3f82},  // tie: up to even
      {0x3f808001, 0x3f81},  // above the tie
      {0x7f800000, 0x7f80},  // Inf
      {0x7f7fffff, 0x7f80},  // the largest float rounds to Inf
      {0x80000000, 0x8000},  // -0
      {0x00000001, 0x0000},  // subnormal rounds to 0
      {0x00018000, 0x0002},  // subnormals round like normals (ties to even)
  };
  for (const auto& c : cases) EXPECT_EQ(f32_to_bf16(bits_float(c.f)), c.h) << std::hex << c.f;
  EXPECT_EQ(f32_to_bf16(bits_float(0x7f800001)), 0x7fc0);  // NaN forced quiet, never rounded into Inf
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xc040), -3.0f);
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), h) << h;
  }
}

// The attention's query pairs: scaled, rounded as f32_to_bf16 does, the even element in the low half, one
// pair every `stride` words (the slots between are left alone).
TEST(Tensor, Bf16PairsAreScaledRoundedAndStrided) {
  const std::vector<float> x = {1.0f, -3.0f, 0.1f, 7.5f, bits_float(0x3f808000), 1e-30f};
  std::vector<uint32_t> out(3 * 4, 0xDEADBEEF);
  f32_to_bf16_pairs(x.data(), 0.5f, 3, out.data(), 4);
  for (int64_t i = 0; i < 3; ++i) {
    const uint32_t want = f32_to_bf16(x[2 * i] * 0.5f) | static_cast<uint32_t>(f32_to_bf16(x[2 * i + 1] * 0.5f)) << 16;
    EXPECT_EQ(out[i * 4], want) << i;
    for (int64_t j = 1; j < 4; ++j) EXPECT_EQ(out[i * 4 + j], 0xDEADBEEFu) << i << " " << j;
  }
  EXPECT_EQ(out[0], 0xBFC03F00u);  // (0.5, -1.5)
}

TEST(Tensor, Q8_0HandComputedBlock) {
  // amax is 127, so d = 1 and q = roundf(x): halves round away from zero.
  float x[32] = {127.0f, -127.0f, 0.5f, -0.5f, 1.49f, 2.5f, -2.5f, 0.0f, 3.7f, -100.2f};
  const int8_t expected[32] = {127, -127, 1, -1, 1, 3, -3, 0, 4, -100};
  BlockQ8_0 block;
  quantize_row(TensorType::kQ8_0, x, &block, 32);
  EXPECT_EQ(block.d, 0x3c00);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(block.qs[j], expected[j]) << j;
  float y[32];
  dequantize_row(TensorType::kQ8_0, &block, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], expected[j]) << j;

  // amax 254 → d = 2: 3 → 1.5 → 2; -3 → -2; 1 → 0.5 → 1.
  float z[32] = {254.0f, 3.0f, -3.0f, 1.0f};
  quantize_row(TensorType::kQ8_0, z, &block, 32);
  EXPECT_EQ(block.d, 0x4000);
  EXPECT_EQ(block.qs[0], 127);
  EXPECT_EQ(block.qs[1], 2);
  EXPECT_EQ(block.qs[2], -2);
  EXPECT_EQ(block.qs[3], 1);
}

TEST(Tensor, Q4_0HandComputedBlocks) {
  // The value of largest magnitude is -8: d = -8 / -8 = 1, q = min(15, trunc(x + 8.5)).
  float x[32] = {-8.0f, 7.0f, 7.6f, 0.0f, 0.49f, 0.5f, -0.5f, -0.51f, 3.2f, -7.9f};
  const uint8_t expected[32] = {0, 15, 15, 8, 8, 9, 8, 7, 11, 0, 8, 8, 8, 8, 8, 8,
                                8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
  BlockQ4_0 block;
  quantize_row(TensorType::kQ4_0, x, &block, 32);
  EXPECT_EQ(block.d, 0x3c00);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(block.qs[j] & 0x0f, expected[j]) << j;            // low nibble: element j
    EXPECT_EQ(block.qs[j] >> 4, expected[j + 16]) << j + 16;     // high nibble: element j + 16
  }
  float y[32];
  dequantize_row(TensorType::kQ4_0, &block, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], expected[j] - 8.0f) << j;

  // The largest magnitude is positive (+16 at element 20): d = -2, so +16 maps to q = 0 and signs flip.
  float z[32] = {};
  z[20] = 16.0f;
  z[0] = -14.0f;  // -14 · -0.5 + 8.5 = 15.5 → 15
  z[1] = 3.0f;    // -1.5 + 8.5 = 7
  quantize_row(TensorType::kQ4_0, z, &block, 32);
  EXPECT_EQ(block.d, 0xc000);
  EXPECT_EQ(block.qs[4] >> 4, 0);
  EXPECT_EQ(block.qs[0] & 0x0f, 15);
  EXPECT_EQ(block.qs[1] & 0x0f, 7);
  dequantize_row(TensorType::kQ4_0, &block, y, 32);
  EXPECT_EQ(y[20], 16.0f);
  EXPECT_EQ(y[0], -14.0f);
  EXPECT_EQ(y[1], 2.0f);
}

TEST(Tensor, ZeroBlocksHaveZeroScale) {
  const float x[32] = {};
  BlockQ8_0 q8;
  BlockQ4_0 q4;
  quantize_row(TensorType::kQ8_0, x, &q8, 32);
  quantize_row(TensorType::kQ4_0, x, &q4, 32);
  EXPECT_EQ(q8.d, 0);
  EXPECT_EQ(q4.d, 0x8000);  // 0 / -8 is -0, as in ggml
  for (int j = 0; j < 32; ++j) EXPECT_EQ(q8.qs[j], 0);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(q4.qs[j], 0x88);  // q = 8 means zero
}

TEST(Tensor, NonFiniteInputsDoNotCrash) {
  float x[32] = {};
  x[3] = std::numeric_limits<float>::infinity();
  x[5] = std::numeric_limits<float>::quiet_NaN();
  x[7] = 1.0f;
  BlockQ8_0 q8;
  BlockQ4_0 q4;
  quantize_row(TensorType::kQ8_0, x, &q8, 32);
  quantize_row(TensorType::kQ4_0, x, &q4, 32);
  // The block is useless, but well defined: zeros stay zeros whatever the scale became.
  float y[32];
  dequantize_row(TensorType::kQ8_0, &q8, y, 32);
  EXPECT_EQ(y[0], 0.0f);
  dequantize_row(TensorType::kQ4_0, &q4, y, 32);
  EXPECT_TRUE(y[0] == 0.0f || std::isnan(y[0]));
}

// Quantize → dequantize on random data stays within the rounding bound of each format. d is the exact
// scale (ggml's formula); the stored scale is d rounded to half precision, which adds |q|·|d - d16|.
TEST(Tensor, QuantizationErrorBounds) {
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  constexpr int kBlocks = 2000;
  std::vector<float> x(kBlocks * kQuantBlock);
  for (int b = 0; b < kBlocks; ++b) {
    const float scale = std::ldexp(1.0f, b % 21 - 10);  // magnitudes from 2^-10 to 2^10
    for (int j = 0; j < kQuantBlock; ++j) x[b * kQuantBlock + j] = normal(rng) * scale;
  }
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<BlockQ8_0> q8(kBlocks);
  std::vector<BlockQ4_0> q4(kBlocks);
  std::vector<float> y8(x.size()), y4(x.size());
  quantize_row(TensorType::kQ8_0, x.data(), q8.data(), n);
  quantize_row(TensorType::kQ4_0, x.data(), q4.data(), n);
  dequantize_row(TensorType::kQ8_0, q8.data(), y8.data(), n);
  dequantize_row(TensorType::kQ4_0, q4.data(), y4.data(), n);
  double sq8 = 0, sq4 = 0;
  for (int b = 0; b < kBlocks; ++b) {
    float amax = 0, max = 0;
    for (int j = 0; j < kQuantBlock; ++j) {
      const float v = x[b * kQuantBlock + j];
      if (std::fabs(v) > amax) amax = std::fabs(v), max = v;
    }
    const double d8 = amax / 127.0, d4 = std::fabs(max / -8.0);
    const double bound8 = d8 / 2 + 127 * std::fabs(d8 - std::fabs(f16_to_f32(q8[b].d))) + d8 * 1e-5;
    const double bound4 = d4 + 8 * std::fabs(d4 - std::fabs(f16_to_f32(q4[b].d))) + d4 * 1e-5;
    for (int j = 0; j < kQuantBlock; ++j) {
      const int i = b * kQuantBlock + j;
      ASSERT_LE(std::fabs(x[i] - y8[i]), bound8) << "Q8_0 block " << b << " element " << j;
      ASSERT_LE(std::fabs(x[i] - y4[i]), bound4) << "Q4_0 block " << b << " element " << j;
      sq8 += std::pow((x[i] - y8[i]) / d8, 2);
      sq4 += std::pow((x[i] - y4[i]) / d4, 2);
    }
  }
  // Relative to the scale, rounding error is near-uniform: RMS about 1/sqrt(12) ≈ 0.29 of a step.
  EXPECT_LT(std::sqrt(sq8 / n), 0.35);
  EXPECT_LT(std::sqrt(sq4 / n), 0.35);
}

TEST(Tensor, PlainTypesConvertElementwise) {
  const std::vector<float> x = {1.0f, -0.1f, 65504.0f, 1e-6f, 3.14159f, -0.0f};
  std::vector<uint16_t> h(x.size());
  std::vector<float> y(x.size());
  quantize_row(TensorType::kF16, x.data(), h.data(), 6);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(h[i], f32_to_f16(x[i])) << i;
  dequantize_row(TensorType::kF16, h.data(), y.data(), 6);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], f16_to_f32(h[i])) << i;
  quantize_row(TensorType::kBF16, x.data(), h.data(), 6);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(h[i], f32_to_bf16(x[i])) << i;
  dequantize_row(TensorType::kBF16, h.data(), y.data(), 6);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], bf16_to_f32(h[i])) << i;
  std::vector<float> copy(x.size());
  quantize_row(TensorType::kF32, x.data(), copy.data(), 6);
  EXPECT_EQ(copy, x);
}

}  // namespace
}  // namespace rag::nn
