// Kernels against slow oracles: every weight type at every SIMD level this CPU has, on random inputs of odd
// sizes, compared with double-precision loops over the dequantized weights (and, for the int8 path, the
// dequantized activations); matmul against separate matvecs; helpers against double-precision formulas.
//
// Tolerances. With M = Σ |w_i x_i| (the magnitude the sum is made of, so cancellation cannot hide an error),
// a float dot product of K terms in any summation order is within about K · 2^-24 · M of the exact value;
// the kernels split sums into many partial sums, so 1e-5 · M bounds every size tested here (K ≤ 4128) with a
// margin, while a wrong block or lane moves the result by ~M / (K / 32) or more. The int8 kernels may fold a
// zero offset o out as a separate sum (8 for Q4_0 nibbles, 128 for Q8_0 values made unsigned), so the
// magnitude 2 o Σ |d_w x_i| of the two cancelling parts joins M.
#include "nn/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/error.h"
#include "nn/kernels-impl.h"

namespace rag::nn {
namespace {

constexpr TensorType kAllTypes[] = {TensorType::kF32, TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0,
                                    TensorType::kQ4_0};

bool is_quantized(TensorType type) {
  return type == TensorType::kQ8_0 || type == TensorType::kQ4_0;
}

std::vector<SimdLevel> available_levels() {
  std::vector<SimdLevel> levels;
  for (SimdLevel level : {SimdLevel::kPortable, SimdLevel::kAvx2, SimdLevel::kAvx512}) {
    if (level <= simd_level_supported()) levels.push_back(level);
  }
  return levels;
}

// Restores the process-wide level after each test.
class KernelsTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = simd_level(); }
  void TearDown() override { set_simd_level(saved_); }
  SimdLevel saved_ = SimdLevel::kPortable;
};

std::vector<float> random_floats(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// A rows × cols matrix of `type` from random floats; rows get different magnitudes so block scales vary.
struct TestMatrix {
  TensorType type;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;
  std::vector<float> dequantized;       // what the bytes mean, rows × cols
  std::vector<float> offset_magnitude;  // 2 o |d_w| per element for the quantized types, else 0

  Weights weights() const { return Weights{type, bytes.data(), rows, cols}; }
};

TestMatrix make_matrix(TensorType type, int64_t rows, int64_t cols, uint32_t seed) {
  TestMatrix m{type, rows, cols, {}, {}, {}};
  const float offset = type == TensorType::kQ4_0 ? 8.0f : type == TensorType::kQ8_0 ? 128.0f : 0.0f;
  const size_t stride = row_bytes(type, cols);
  m.bytes.resize(stride * static_cast<size_t>(rows));
  m.dequantized.resize(static_cast<size_t>(rows * cols));
  m.offset_magnitude.assign(static_cast<size_t>(rows * cols), 0.0f);
  std::vector<float> row = random_floats(cols, seed);
  for (int64_t r = 0; r < rows; ++r) {
    const float magnitude = 0.25f + static_cast<float>(r % 5);
    std::vector<float> values = random_floats(cols, seed * 7919 + static_cast<uint32_t>(r), magnitude);
    uint8_t* out = m.bytes.data() + r * stride;
    quantize_row(type, values.data(), out, cols);
    dequantize_row(type, out, m.dequantized.data() + r * cols, cols);
    for (int64_t i = 0; i < cols && offset != 0.0f; ++i) {
      // Both block layouts start with the f16 scale.
      uint16_t d;
      std::memcpy(&d, out + (i / 32) * type_size(type), sizeof(d));
      m.offset_magnitude[r * cols + i] = 2.0f * offset * std::fabs(f16_to_f32(d));
    }
  }
  return m;
}

// The documented int8 form of activations (kernels-impl.h): per block of 32, d = max|x| / 127 and
// q = round_half_even(x * (1 / d)); returns d * q per element.
std::vector<float> quantize_activations(const float* x, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127.0f;
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; ++j) out[b * 32 + j] = d * std::nearbyint(x[b * 32 + j] * inverse);
  }
  return out;
}

struct Expected {
  double value;
  double tolerance;
};

// x as the kernels see it when they multiply m: quantized for quantized types.
std::vector<float> kernel_view(const TestMatrix& m, const float* x) {
  return is_quantized(m.type) ? quantize_activations(x, m.cols) : std::vector<float>(x, x + m.cols);
}

// Row r of m against xq = kernel_view(m, x), in double.
Expected oracle_dot(const TestMatrix& m, int64_t r, const std::vector<float>& xq) {
  double sum = 0.0, magnitude = 0.0;
  for (int64_t i = 0; i < m.cols; ++i) {
    const double w = m.dequantized[r * m.cols + i];
    sum += w * xq[i];
    magnitude += std::fabs(w * xq[i]) + m.offset_magnitude[r * m.cols + i] * std::fabs(xq[i]);
  }
  return {sum, 1e-5 * magnitude + 1e-30};
}

TEST_F(KernelsTest, MatvecMatchesOracleAtEveryLevel) {
  for (SimdLevel level : available_levels()) {
    for (TensorType type : kAllTypes) {
      std::vector<int64_t> sizes = {32, 64, 96, 4096 + 32};
      if (!is_quantized(type)) sizes.insert(sizes.end(), {1, 7, 33, 100});
      for (int64_t cols : sizes) {
        for (int64_t rows : {1, 3, 17, 257}) {
          SCOPED_TRACE(testing::Message() << simd_level_name(level) << " " << tensor_type_name(type) << " "
                                          << rows << "x" << cols);
          const TestMatrix m = make_matrix(type, rows, cols, static_cast<uint32_t>(rows * 31 + cols));
          const std::vector<float> x = random_floats(cols, static_cast<uint32_t>(cols));
          std::vector<float> y(static_cast<size_t>(rows), NAN), reference(static_cast<size_t>(rows), NAN);
          set_simd_level(SimdLevel::kPortable);
          matvec(m.weights(), x.data(), reference.data());
          set_simd_level(level);
          matvec(m.weights(), x.data(), y.data());
          const std::vector<float> xq = kernel_view(m, x.data());
          for (int64_t r = 0; r < rows; ++r) {
            const Expected e = oracle_dot(m, r, xq);
            ASSERT_NEAR(y[r], e.value, e.tolerance) << "row " << r;
            ASSERT_NEAR(y[r], reference[r], 2 * e.tolerance) << "row " << r << " against portable";
          }
        }
      }
    }
  }
}

// matmul_int8 for the quantized types (matmul may take the F32 route; the next test bounds that).
TEST_F(KernelsTest, MatmulEqualsSeparateMatvecs) {
  for (SimdLevel level : available_levels()) {
    set_simd_level(level);
    for (TensorType type : kAllTypes) {
      // Row counts cross the 16-row tiles of the int8 kernel; n crosses its 8- and 4-token groups. The
      // longest rows go with few rows to keep the sanitizer run short.
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 32}, {3, 96}, {17, 4096 + 32}, {257, 64}}) {
        const TestMatrix m = make_matrix(type, rows, cols, static_cast<uint32_t>(rows + cols));
        for (int64_t n : {1, 2, 5, 33}) {
          SCOPED_TRACE(testing::Message() << simd_level_name(level) << " " << tensor_type_name(type) << " "
                                          << rows << "x" << cols << " n=" << n);
          const std::vector<float> x = random_floats(n * cols, static_cast<uint32_t>(n * 17 + cols));
          std::vector<float> y(static_cast<size_t>(n * rows), NAN);
          if (is_quantized(type)) {
            matmul_int8(m.weights(), x.data(), n, y.data());
          } else {
            matmul(m.weights(), x.data(), n, y.data());
          }
          std::vector<float> column(static_cast<size_t>(rows));
          for (int64_t t = 0; t < n; ++t) {
            matvec(m.weights(), x.data() + t * cols, column.data());
            const std::vector<float> xq = kernel_view(m, x.data() + t * cols);
            for (int64_t r = 0; r < rows; ++r) {
              const Expected e = oracle_dot(m, r, xq);
              ASSERT_NEAR(y[t * rows + r], column[r], 2 * e.tolerance) << "token " << t << " row " << r;
            }
          }
        }
      }
    }
  }
}

// The decode batch route: every value bit for bit what matvec gives for its token, at every level (the
// AVX-512 kernel shares each 16-row group's transposed weights among up to 8 tokens; the others loop), for
// row counts that leave partial groups, token counts across the groups of 8, and enough rows for the
// parallel split; matmul takes this route up to kMatvecBatchTokens tokens, matmul_multi too.
TEST_F(KernelsTest, MatvecBatchEqualsMatvecsBitForBit) {
  for (SimdLevel level : available_levels()) {
    set_simd_level(level);
    for (TensorType type : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kF16}) {
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{3, 96}, {5, 160}, {257, 128}, {9, 4096 + 32}}) {
        const TestMatrix m = make_matrix(type, rows, cols, static_cast<uint32_t>(rows * 3 + cols));
        for (int64_t n : {1, 2, 3, 4, 5, 7, 8, 9}) {
          SCOPED_TRACE(testing::Message() << simd_level_name(level) << " " << tensor_type_name(type) << " "
                                          << rows << "x" << cols << " n=" << n);
          const std::vector<float> x = random_floats(n * cols, static_cast<uint32_t>(n * 31 + cols));
          std::vector<float> batch(static_cast<size_t>(n * rows), NAN), product(batch.size(), NAN);
          std::vector<float> single(batch.size(), NAN);
          matvec_batch(m.weights(), x.data(), n, batch.data());
          matmul(m.weights(), x.data(), n, product.data());
          for (int64_t t = 0; t < n; ++t) matvec(m.weights(), x.data() + t * cols, single.data() + t * rows);
          ASSERT_EQ(std::memcmp(batch.data(), single.data(), batch.size() * sizeof(float)), 0);
          if (is_quantized(type) && n <= kMatvecBatchTokens) {
            ASSERT_EQ(std::memcmp(product.data(), single.data(), batch.size() * sizeof(float)), 0);
          }
        }
      }
    }
    const int64_t cols = 256, n = 3;
    const TestMatrix a = make_matrix(TensorType::kQ8_0, 40, cols, 1), b = make_matrix(TensorType::kQ4_0, 24, cols, 2);
    const std::vector<float> x = random_floats(n * cols, 11);
    std::vector<float> ya(static_cast<size_t>(n * a.rows)), yb(static_cast<size_t>(n * b.rows));
    std::vector<float> wa(ya.size()), wb(yb.size());
    const Product products[] = {{a.weights(), ya.data()}, {b.weights(), yb.data()}};
    matmul_multi(products, 2, x.data(), n);
    for (int64_t t = 0; t < n; ++t) {
      matvec(a.weights(), x.data() + t * cols, wa.data() + t * a.rows);
      matvec(b.weights(), x.data() + t * cols, wb.data() + t * b.rows);
    }
    EXPECT_EQ(std::memcmp(ya.data(), wa.data(), ya.size() * sizeof(float)), 0) << simd_level_name(level);
    EXPECT_EQ(std::memcmp(yb.data(), wb.data(), yb.size() * sizeof(float)), 0) << simd_level_name(level);
  }
}

// At the x86 levels the matvec kernels compute what the int8 product of many tokens does, in the same
// order, so the prefill route (matmul past kMatvecBatchTokens, or matmul_int8) rounds every token as a
// decode step would: partial row groups (AVX-512: 16 rows) and quads (AVX2: 4 rows), token counts below, at
// and past the tiles' 8 and 4. Until the AVX2 quad kernel, matmul took dequant + sgemm there for n = 33.
TEST_F(KernelsTest, Int8MatmulEqualsMatvecBitForBitAtX86Levels) {
  for (SimdLevel level : available_levels()) {
    if (level == SimdLevel::kPortable) continue;
    set_simd_level(level);
    for (TensorType type : {TensorType::kQ8_0, TensorType::kQ4_0}) {
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{3, 64}, {40, 96}, {17, 4096 + 32}}) {
        const TestMatrix m = make_matrix(type, rows, cols, static_cast<uint32_t>(rows * 5 + cols));
        // 70 tokens cross the AVX2 Q4_0 octets' 64-token groups; 4128 columns their 32-block chunks.
        for (int64_t n : {2, 5, 8, 9, 13, 33, 70}) {
          SCOPED_TRACE(testing::Message() << simd_level_name(level) << " " << tensor_type_name(type) << " " << rows
                                          << "x" << cols << " n=" << n);
          const std::vector<float> x = random_floats(n * cols, static_cast<uint32_t>(n * 7 + cols));
          std::vector<float> int8(static_cast<size_t>(n * rows), NAN), product(int8.size(), NAN);
          std::vector<float> single(int8.size(), NAN);
          matmul_int8(m.weights(), x.data(), n, int8.data());
          matmul(m.weights(), x.data(), n, product.data());
          for (int64_t t = 0; t < n; ++t) matvec(m.weights(), x.data() + t * cols, single.data() + t * rows);
          ASSERT_EQ(std::memcmp(int8.data(), single.data(), int8.size() * sizeof(float)), 0);
          ASSERT_EQ(std::memcmp(product.data(), single.data(), product.size() * sizeof(float)), 0);
        }
      }
    }
  }
}

// Codes at the ends of their ranges against activations at ±127, where int16 partial sums come closest to
// saturating (the AVX2 Q4_0 paths add 8 nibble pairs of a row in an int16 lane): every level gives the
// exact sum. With d = 1 and activations ±1 (so d_x q_x = ±1 up to the rounding of 1/127), a row's value is
// Σ w_i x_i. 10 rows and 17 tokens reach the AVX2 octets of both types and the quads after them.
TEST_F(KernelsTest, Int8ProductsAtTheExtremesOfTheirCodesAreExact) {
  const int64_t cols = 256, rows = 10, n = 17;
  for (TensorType type : {TensorType::kQ8_0, TensorType::kQ4_0}) {
    TestMatrix m{type, rows, cols, std::vector<uint8_t>(row_bytes(type, cols) * rows), {}, {}};
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t b = 0; b < cols / 32; ++b) {
        // Rows alternate the largest positive and the most negative code; rows 5 and 9 mix them per block.
        const bool high = (r == 5 || r == 9 ? b : r) % 2 == 0;
        uint8_t* block = m.bytes.data() + r * row_bytes(type, cols) + b * type_size(type);
        const uint16_t one = 0x3c00;
        std::memcpy(block, &one, sizeof(one));
        const uint8_t code = type == TensorType::kQ4_0 ? (high ? 0xff : 0x00) : static_cast<uint8_t>(high ? 127 : -128);
        std::memset(block + sizeof(one), code, type_size(type) - sizeof(one));
      }
    }
    m.dequantized.resize(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      dequantize_row(type, m.bytes.data() + r * row_bytes(type, cols), m.dequantized.data() + r * cols, cols);
    m.offset_magnitude.assign(m.dequantized.size(), type == TensorType::kQ4_0 ? 16.0f : 256.0f);
    std::vector<float> x(static_cast<size_t>(n * cols));
    // Tokens in turn all +1, all -1, and mixed.
    for (int64_t i = 0; i < n * cols; ++i) {
      const int64_t kind = i / cols % 3;
      x[i] = kind == 0 || (kind == 2 && i % 3 == 0) ? 1.0f : -1.0f;
    }
    for (SimdLevel level : available_levels()) {
      set_simd_level(level);
      SCOPED_TRACE(testing::Message() << simd_level_name(level) << " " << tensor_type_name(type));
      std::vector<float> y(static_cast<size_t>(n * rows), NAN);
      matmul_int8(m.weights(), x.data(), n, y.data());
      for (int64_t t = 0; t < n; ++t) {
        const std::vector<float> xq = kernel_view(m, x.data() + t * cols);
        for (int64_t r = 0; r < rows; ++r) {
          const Expected e = oracle_dot(m, r, xq);
          ASSERT_NEAR(y[t * rows + r], e.value, e.tolerance) << "token " << t << " row " << r;
        }
      }
    }
  }
}

// matmul_multi against one matmul per product: all-quantized and mixed sets, one token and several, with
// enough rows for the parallel split to cut inside and across matrices; a product with other columns is
// refused before anything runs.
TEST_F(KernelsTest, MatmulMultiEqualsSeparateMatmuls) {
  for (SimdLevel level : available_levels()) {
    set_simd_level(level);
    const int64_t cols = 512;
    for (bool mixed : {false, true}) {
      const std::vector<TestMatrix> ms = {
          make_matrix(TensorType::kQ8_0, 40, cols, 1), make_matrix(TensorType::kQ4_0, 24, cols, 2),
          make_matrix(mixed ? TensorType::kF16 : TensorType::kQ8_0, 17, cols, 3)};
      for (int64_t n : {1, 9}) {
        SCOPED_TRACE(testing::Message() << simd_level_name(level) << (mixed ? " mixed" : " quantized") << " n=" << n);
        const std::vector<float> x = random_floats(n * cols, static_cast<uint32_t>(n + 5));
        std::vector<std::vector<float>> got, want;
        std::vector<Product> products;
        for (const TestMatrix& m : ms) {
          got.emplace_back(static_cast<size_t>(n * m.rows), NAN);
          want.emplace_back(static_cast<size_t>(n * m.rows), NAN);
        }
        for (size_t i = 0; i < ms.size(); ++i) {
          products.push_back({ms[i].weights(), got[i].data()});
          matmul(ms[i].weights(), x.data(), n, want[i].data());
        }
        matmul_multi(products.data(), static_cast<int64_t>(products.size()), x.data(), n);
        for (size_t i = 0; i < ms.size(); ++i)
          for (size_t j = 0; j < got[i].size(); ++j)
            ASSERT_NEAR(got[i][j], want[i][j], 1e-5f * (1.0f + std::fabs(want[i][j]))) << "product " << i << " value " << j;
      }
    }
  }
  const TestMatrix a = make_matrix(TensorType::kQ8_0, 4, 64, 1), b = make_matrix(TensorType::kQ8_0, 4, 96, 2);
  std::vector<float> x(96), ya(4), yb(4);
  const Product products[] = {{a.weights(), ya.data()}, {b.weights(), yb.data()}};
  EXPECT_THROW(matmul_multi(products, 2, x.data(), 1), Error);
}

// The F32 route for quantized weights meets unquantized activations: each x_i is off by at most half a
// step d_x / 2 in the int8 route, which bounds the difference between the two routes; matmul, whichever
// route it takes, stays within that bound of the float oracle.
TEST_F(KernelsTest, DequantizedMatmulMatchesFloatOracle) {
  for (SimdLevel level : available_levels()) {
    set_simd_level(level);
    for (TensorType type : kAllTypes) {
      for (int64_t n : {1, 5, 33}) {
        const int64_t rows = 17, cols = 1024 + 32;
        SCOPED_TRACE(testing::Message()
                     << simd_level_name(level) << " " << tensor_type_name(type) << " n=" << n);
        const TestMatrix m = make_matrix(type, rows, cols, 5);
        const std::vector<float> x = random_floats(n * cols, 6);
        std::vector<float> y(static_cast<size_t>(n * rows), NAN), chosen(static_cast<size_t>(n * rows), NAN);
        matmul_dequantized(m.weights(), x.data(), n, y.data());
        matmul(m.weights(), x.data(), n, chosen.data());
        for (int64_t t = 0; t < n; ++t) {
          const float* xt = x.data() + t * cols;
          for (int64_t r = 0; r < rows; ++r) {
            double sum = 0.0, magnitude = 0.0, quantization = 0.0;
            for (int64_t i = 0; i < cols; ++i) {
              const double w = m.dequantized[r * cols + i];
              sum += w * xt[i];
              magnitude += std::fabs(w * xt[i]) + m.offset_magnitude[r * cols + i] * std::fabs(xt[i]);
            }
            for (int64_t b = 0; b < cols / 32; ++b) {
              float amax = 0.0f;
              double w_abs = 0.0;
              for (int j = 0; j < 32; ++j) {
                amax = std::fmax(amax, std::fabs(xt[b * 32 + j]));
                w_abs += std::fabs(m.dequantized[r * cols + b * 32 + j]);
              }
              quantization += w_abs * amax / 127.0 / 2.0;
            }
            ASSERT_NEAR(y[t * rows + r], sum, 1e-5 * magnitude) << "token " << t << " row " << r;
            if (is_quantized(type)) {
              ASSERT_NEAR(chosen[t * rows + r], sum, quantization + 1e-5 * magnitude)
                  << "token " << t << " row " << r;
            }
          }
        }
      }
    }
  }
}

TEST_F(KernelsTest, DotRowEqualsMatvecOfOneRow) {
  for (TensorType type : kAllTypes) {
    const TestMatrix m = make_matrix(type, 1, 896, 11);
    const std::vector<float> x = random_floats(896, 12);
    float y = NAN;
    matvec(m.weights(), x.data(), &y);
    EXPECT_EQ(dot_row(type, m.bytes.data(), x.data(), 896), y) << tensor_type_name(type);
  }
}

// The quantized scan's sums are exact integers, so every level must give the oracle's value exactly; the
// extreme codes and weights (15 against ±127) check that no level overflows its int16 intermediates.
TEST_F(KernelsTest, ScanU4SumsEqualTheOracleAtEveryLevel) {
  for (int64_t dim : {8, 16, 384, 1024}) {
    const int64_t groups = 5, rows = groups * kScanGroupRows;
    std::mt19937 rng(static_cast<uint32_t>(dim));
    std::vector<uint8_t> codes(static_cast<size_t>(rows * dim));
    std::vector<int8_t> q(static_cast<size_t>(dim));
    for (auto& c : codes) c = static_cast<uint8_t>(rng() % 16);
    for (auto& w : q) w = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
    for (int64_t i = 0; i < dim; ++i) codes[static_cast<size_t>(i)] = 15;  // row 0: the largest sums
    for (int64_t i = 0; i < dim; ++i) q[static_cast<size_t>(i)] = i % 3 ? 127 : -127;
    std::vector<uint8_t> packed(static_cast<size_t>(groups * 8 * dim), 0xFF);
    for (int64_t r = 0; r < rows; ++r)
      pack_u4_row(codes.data() + r * dim, dim, r % kScanGroupRows, packed.data() + r / kScanGroupRows * 8 * dim);
    std::vector<int32_t> expected(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < dim; ++i)
        expected[static_cast<size_t>(r)] += q[static_cast<size_t>(i)] * codes[static_cast<size_t>(r * dim + i)];
    for (SimdLevel level : available_levels()) {
      SCOPED_TRACE(testing::Message() << simd_level_name(level) << " dim " << dim);
      set_simd_level(level);
      std::vector<int32_t> sums(static_cast<size_t>(rows), -1);
      scan_u4(packed.data(), groups, q.data(), dim, sums.data());
      EXPECT_EQ(sums, expected);
    }
  }
}

TEST_F(KernelsTest, RejectsRowsThatAreNotWholeBlocks) {
  std::vector<uint8_t> bytes(1024);
  const float x[48] = {};
  float y[2];
  try {
    matvec(Weights{TensorType::kQ8_0, bytes.data(), 2, 48}, x, y);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kInvalidArgument);
  }
  EXPECT_THROW(matmul(Weights{TensorType::kQ4_0, bytes.data(), 2, 40}, x, 1, y), Error);
  EXPECT_THROW(matmul_int8(Weights{TensorType::kF16, bytes.data(), 2, 32}, x, 1, y), Error);
}

TEST_F(KernelsTest, LevelNamesAndCaps) {
  EXPECT_EQ(simd_level_name(SimdLevel::kPortable), "portable");
  EXPECT_EQ(simd_level_name(SimdLevel::kAvx2), "avx2");
  EXPECT_EQ(simd_level_name(SimdLevel::kAvx512), "avx512");
  EXPECT_LE(simd_level(), simd_level_supported());
  if (simd_level_supported() < SimdLevel::kAvx512) {
    EXPECT_THROW(set_simd_level(SimdLevel::kAvx512), Error);
  }
}

// Helpers: double-precision formulas, relative 1e-5 plus a small absolute term for results near zero.
void expect_close(const std::vector<float>& got, const std::vector<double>& want, double abs_tolerance,
                  const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5 * std::fabs(want[i]) + abs_tolerance) << what << " at " << i;
  }
}

// Activations in int8 form are the same bytes, scales and sums at every level (the matvec kernels of one
// level then agree with another's up to their summation order): blocks of random magnitudes, an all-zero
// block, exact ties (amax 127 makes the scale 1, so 2.5 and -3.5 round to even), and extremes.
TEST_F(KernelsTest, ActivationQuantizationIsThePortableBytesAtEveryLevel) {
  std::vector<float> x = random_floats(32 * 40, 5, 3.0f);
  for (int64_t b = 0; b < 40; ++b)
    for (int64_t i = 0; i < 32; ++i) x[b * 32 + i] *= std::pow(10.0f, static_cast<float>(b % 9) - 4.0f);
  std::fill(x.begin() + 32, x.begin() + 64, 0.0f);
  x[64] = 127.0f, x[65] = 2.5f, x[66] = -3.5f, x[67] = 0.5f, x[68] = -0.0f;
  x[96] = 1e30f, x[97] = -1e30f, x[98] = 1e-30f;
  x[128] = 1e-38f, x[129] = -2e-38f;  // subnormal scale
  const int64_t n = static_cast<int64_t>(x.size()), blocks = n / 32;
  auto quantize = [&](const KernelTable& k) {
    std::vector<int8_t> qs(x.size());
    std::vector<float> d(static_cast<size_t>(blocks)), ds(static_cast<size_t>(blocks));
    k.quantize_q8(x.data(), n, qs.data(), d.data(), ds.data());
    return std::make_tuple(qs, d, ds);
  };
  const auto [qs, d, ds] = quantize(kPortableKernels);
  EXPECT_EQ(qs[64], 127);
  EXPECT_EQ(qs[65], 2);
  EXPECT_EQ(qs[66], -4);
  EXPECT_EQ(qs[67], 0);
  EXPECT_EQ(d[1], 0.0f);
  std::vector<const KernelTable*> tables;
  if (simd_level_supported() >= SimdLevel::kAvx2) tables.push_back(&kAvx2Kernels);
  if (simd_level_supported() >= SimdLevel::kAvx512) tables.push_back(&kAvx512Kernels);
  for (const KernelTable* k : tables) {
    const auto [q2, d2, ds2] = quantize(*k);
    EXPECT_EQ(q2, qs) << k->name;
    EXPECT_EQ(std::memcmp(d2.data(), d.data(), d.size() * sizeof(float)), 0) << k->name;
    EXPECT_EQ(std::memcmp(ds2.data(), ds.data(), ds.size() * sizeof(float)), 0) << k->name;
  }
}

// The KV cache's F16 rows: to half as f32_to_f16 rounds (ties to even, subnormals, the vector body and the
// scalar tail alike), except that the values past the half range saturate; back exactly.
TEST_F(KernelsTest, F16RowsRoundAsTheScalarConversionAndSaturate) {
  std::vector<float> x = random_floats(1000, 5, 8.0f);
  const float edge[] = {0.0f, -0.0f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 65504.0f, 65519.0f, -65504.0f,
                        6.0e-8f, -3.0e-8f, 1.0e-5f, 2.9802322e-8f, 1.0e-30f, std::nanf("")};
  x.insert(x.begin() + 3, std::begin(edge), std::end(edge));  // some in the vector body, some in the tail
  const auto saturated_from = static_cast<int64_t>(x.size());
  for (float big : {65520.0f, -65520.0f, 1.0e30f, -std::numeric_limits<float>::infinity()}) x.push_back(big);
  x.push_back(1.5f);  // 1018 values: a tail of 2 after the last 8-wide step
  const auto n = static_cast<int64_t>(x.size());
  for (SimdLevel level : available_levels()) {
    set_simd_level(level);
    SCOPED_TRACE(simd_level_name(level));
    std::vector<uint16_t> h(x.size());
    f32_to_f16_row(x.data(), h.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const auto u = static_cast<size_t>(i);
      if (std::isnan(x[u])) {
        EXPECT_TRUE(std::isnan(f16_to_f32(h[u]))) << i;
      } else if (i >= saturated_from && i + 1 < n) {
        EXPECT_EQ(h[u], x[u] > 0 ? 0x7bff : 0xfbff) << "value " << x[u] << " saturates to ±65504";
      } else {
        EXPECT_EQ(h[u], f32_to_f16(x[u])) << "value " << x[u];
      }
    }
    std::vector<float> back(x.size());
    f16_to_f32_row(h.data(), back.data(), n);
    for (size_t i = 0; i < x.size(); ++i)
      if (!std::isnan(x[i])) {
        EXPECT_EQ(back[i], f16_to_f32(h[i])) << i;
      }
  }
}

TEST_F(KernelsTest, HelpersMatchDoublePrecision) {
  for (SimdLevel level : available_levels()) {
    set_simd_level(level);
    for (int64_t n : {1, 7, 8, 33, 896, 4864}) {
      SCOPED_TRACE(testing::Message() << simd_level_name(level) << " n=" << n);
      const auto count = static_cast<size_t>(n);
      const std::vector<float> x = random_floats(n, static_cast<uint32_t>(n), 3.0f);
      const std::vector<float> w = random_floats(n, static_cast<uint32_t>(n + 1));
      const std::vector<float> b = random_floats(n, static_cast<uint32_t>(n + 2));
      std::vector<float> y(count);
      std::vector<double> want(count);

      double sum_sq = 0.0, sum = 0.0;
      for (float v : x) sum_sq += double(v) * v, sum += v;
      const double rms = 1.0 / std::sqrt(sum_sq / n + 1e-6);
      for (size_t i = 0; i < count; ++i) want[i] = x[i] * rms * w[i];
      rms_norm(x.data(), w.data(), y.data(), n, 1e-6f);
      expect_close(y, want, 1e-6, "rms_norm");

      const double mean = sum / n;
      double var = 0.0;
      for (float v : x) var += (v - mean) * (v - mean);
      const double inv = 1.0 / std::sqrt(var / n + 1e-12);
      for (size_t i = 0; i < count; ++i) want[i] = (x[i] - mean) * inv * w[i] + b[i];
      layer_norm(x.data(), w.data(), b.data(), y.data(), n, 1e-12f);
      // var can be 0 for n = 1: then (x - mean) is exactly 0 in both.
      expect_close(y, want, 1e-5, "layer_norm");

      std::vector<float> s = x;
      if (n > 3) {
        s[1] = -INFINITY;  // a masked score
        s[2] = 80.0f;
      }
      double max = -INFINITY, total = 0.0;
      for (float v : s) max = std::fmax(max, v);
      for (size_t i = 0; i < count; ++i) total += std::exp(double(s[i]) - max);
      for (size_t i = 0; i < count; ++i) want[i] = std::exp(double(s[i]) - max) / total;
      softmax(s.data(), n);
      expect_close(s, want, 1e-7, "softmax");
      if (n > 3) {
        EXPECT_EQ(s[1], 0.0f);
      }

      for (size_t i = 0; i < count; ++i) want[i] = x[i] / (1.0 + std::exp(-double(x[i])));
      silu(x.data(), y.data(), n);
      expect_close(y, want, 1e-6, "silu");

      for (size_t i = 0; i < count; ++i) want[i] = x[i] / (1.0 + std::exp(-double(x[i]))) * w[i];
      swiglu(x.data(), w.data(), y.data(), n);
      expect_close(y, want, 1e-6, "swiglu");

      for (size_t i = 0; i < count; ++i) want[i] = 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0)));
      gelu(x.data(), y.data(), n);
      expect_close(y, want, 2e-6, "gelu");

      for (size_t i = 0; i < count; ++i) {
        const double v = x[i];
        want[i] = 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
      }
      gelu_tanh(x.data(), y.data(), n);
      expect_close(y, want, 1e-6, "gelu_tanh");

      for (size_t i = 0; i < count; ++i) want[i] = double(x[i]) + w[i];
      add(x.data(), w.data(), y.data(), n);
      expect_close(y, want, 0.0, "add");
      for (size_t i = 0; i < count; ++i) want[i] = double(x[i]) * w[i];
      mul(x.data(), w.data(), y.data(), n);
      expect_close(y, want, 0.0, "mul");
      for (size_t i = 0; i < count; ++i) want[i] = double(x[i]) * 0.125;
      scale(x.data(), 0.125f, y.data(), n);
      expect_close(y, want, 0.0, "scale");

      y = b;
      for (size_t i = 0; i < count; ++i) want[i] = double(b[i]) + 0.75 * x[i];
      axpy(0.75f, x.data(), y.data(), n);
      expect_close(y, want, 1e-6, "axpy");

      double xw = 0.0, xw_magnitude = 0.0;
      for (size_t i = 0; i < count; ++i)
        xw += double(x[i]) * w[i], xw_magnitude += std::fabs(double(x[i]) * w[i]);
      EXPECT_NEAR(dot_f32(x.data(), w.data(), n), xw, 1e-5 * xw_magnitude) << "dot_f32";

      // In place: outputs may alias inputs.
      std::vector<float> z = x;
      silu(z.data(), z.data(), n);
      silu(x.data(), y.data(), n);
      EXPECT_EQ(z, y);
    }
  }
}

TEST_F(KernelsTest, SiluAndGeluAtExtremes) {
  for (SimdLevel level : available_levels()) {
    set_simd_level(level);
    const std::vector<float> x = {-200.0f, -90.0f, -20.0f, 0.0f, 20.0f, 90.0f, 200.0f, 1e-30f, -1e-30f};
    const auto n = static_cast<int64_t>(x.size());
    std::vector<float> y(x.size());
    silu(x.data(), y.data(), n);
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_TRUE(std::isfinite(y[i])) << simd_level_name(level) << " silu(" << x[i] << ")";
      EXPECT_NEAR(y[i], x[i] / (1.0 + std::exp(-double(x[i]))), 1e-6 * std::fabs(x[i]) + 1e-7);
    }
    gelu(x.data(), y.data(), n);
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_NEAR(y[i], 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0))), 1e-6 * std::fabs(x[i]) + 1e-7);
    }
  }
}

}  // namespace
}  // namespace rag::nn
