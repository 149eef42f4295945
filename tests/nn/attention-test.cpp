// nn::attention_block (flash attention over KV blocks) against a double-precision softmax(q·kᵀ)·v over each
// row's causal length, at every SIMD level this CPU has, on shapes that hit the edges of its tiles: row
// counts around the 16 lanes of a pass and the 8 of a one-vector pass (1, 7, 8, 15, 16, 17, 24, 100),
// head_dim not a multiple of the column
// groups (13), key counts not a multiple of the 16-key block (5, 40), rows whose causal length ends inside
// a block or before it. Scores are scaled so that softmax is peaked (a wrong key or a missed rescale moves
// the output by the size of a value, far above the tolerance).
//
// Tolerance: outputs are convex combinations of values of magnitude ~1; float rounding of the scores (head_dim
// terms of magnitude ~3) and the exp polynomials (about 2 ulp) leave errors near 1e-6; 2e-5 bounds them.
// With BF16 products (q_pairs) every q, k, v and probability is rounded to 8 significant bits (relative
// error 2^-9): scores move by about 0.01 and outputs by a few 1e-3; 3e-2 bounds them and is still far below
// the size of a value that a wrong key or a missed rescale would add.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "nn/kernels.h"
#include "nn/tensor.h"

namespace rag::nn {
namespace {

std::vector<SimdLevel> available_levels() {
  std::vector<SimdLevel> levels;
  for (SimdLevel level : {SimdLevel::kPortable, SimdLevel::kAvx2, SimdLevel::kAvx512}) {
    if (level <= simd_level_supported()) levels.push_back(level);
  }
  return levels;
}

class AttentionBlockTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = simd_level(); }
  void TearDown() override { set_simd_level(saved_); }
  SimdLevel saved_ = SimdLevel::kPortable;
};

std::vector<float> random_floats(int64_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// One attention problem: rows query rows (row-major, rows × hd), keys K and V rows with a stride wider than
// hd (as a KV row holds every KV head), and per row the number of keys it sees.
struct Problem {
  int64_t rows, hd, keys, stride;
  std::vector<float> q, k, v;
  std::vector<int64_t> length;
};

Problem make_problem(int64_t rows, int64_t hd, int64_t keys, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p{rows, hd, keys, hd + 3, {}, {}, {}, {}};
  p.q = random_floats(rows * hd, rng, 3.0f / std::sqrt(static_cast<float>(hd)));
  p.k = random_floats(keys * p.stride, rng, 1.0f);
  p.v = random_floats(keys * p.stride, rng, 1.0f);
  // Lengths spread over [1, keys], the last row seeing every key (as the last token of a tile does).
  std::uniform_int_distribution<int64_t> length(1, keys);
  for (int64_t r = 0; r < rows; ++r) p.length.push_back(r + 1 == rows ? keys : length(rng));
  return p;
}

// softmax(q_r · k_j for j < length[r]) · v, in double.
std::vector<double> reference(const Problem& p) {
  std::vector<double> out(static_cast<size_t>(p.rows * p.hd), 0.0);
  for (int64_t r = 0; r < p.rows; ++r) {
    std::vector<double> s(static_cast<size_t>(p.length[r]));
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < p.length[r]; ++j) {
      double acc = 0.0;
      for (int64_t d = 0; d < p.hd; ++d) acc += double{p.q[r * p.hd + d]} * p.k[j * p.stride + d];
      s[j] = acc;
      m = std::max(m, acc);
    }
    double total = 0.0;
    for (double& x : s) total += (x = std::exp(x - m));
    for (int64_t j = 0; j < p.length[r]; ++j)
      for (int64_t d = 0; d < p.hd; ++d) out[r * p.hd + d] += s[j] / total * p.v[j * p.stride + d];
  }
  return out;
}

// q_t (head_dim × ld) as the q_pairs of AttentionBlock.
std::vector<uint32_t> bf16_pairs(const std::vector<float>& q_t, int64_t hd, int64_t ld) {
  std::vector<uint32_t> pairs(static_cast<size_t>(hd / 2 * ld));
  for (int64_t i = 0; i < hd / 2; ++i)
    for (int64_t r = 0; r < ld; ++r)
      pairs[i * ld + r] = f32_to_bf16(q_t[2 * i * ld + r]) | static_cast<uint32_t>(f32_to_bf16(q_t[(2 * i + 1) * ld + r])) << 16;
  return pairs;
}

enum class Precision { kF32, kBf16 };

// The kernel block by block over the rows [r0, r1) of the problem, then O / l, row-major.
std::vector<float> run_blocks(const Problem& p, int64_t r0, int64_t r1, Precision precision = Precision::kF32) {
  const int64_t rows = r1 - r0, ld = rows + 5;  // ld > rows: columns past the rows must stay untouched
  std::vector<float> q_t(static_cast<size_t>(p.hd * ld), 0.0f), out_t(q_t.size(), 0.0f);
  std::vector<float> max(static_cast<size_t>(rows), std::numeric_limits<float>::lowest()),
      sum(static_cast<size_t>(rows), 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < p.hd; ++d) q_t[d * ld + r] = p.q[(r0 + r) * p.hd + d];
  const std::vector<uint32_t> q_pairs = precision == Precision::kBf16 ? bf16_pairs(q_t, p.hd, ld) : std::vector<uint32_t>{};
  std::vector<int32_t> visible(static_cast<size_t>(rows));
  for (int64_t j0 = 0; j0 < p.keys; j0 += kAttentionBlockKeys) {
    const int64_t block = std::min(kAttentionBlockKeys, p.keys - j0);
    for (int64_t r = 0; r < rows; ++r)
      visible[r] = static_cast<int32_t>(std::clamp<int64_t>(p.length[r0 + r] - j0, 0, block));
    AttentionBlock a;
    a.rows = rows;
    a.head_dim = p.hd;
    a.ld = ld;
    a.q_t = q_t.data();
    a.k = p.k.data() + j0 * p.stride;
    a.v = p.v.data() + j0 * p.stride;
    a.kv_stride = p.stride;
    a.keys = block;
    a.visible = visible.data();
    a.max = max.data();
    a.sum = sum.data();
    a.out_t = out_t.data();
    if (precision == Precision::kBf16) a.q_pairs = q_pairs.data();
    attention_block(a);
  }
  for (int64_t d = 0; d < p.hd; ++d)
    for (int64_t r = rows; r < ld; ++r) EXPECT_EQ(out_t[d * ld + r], 0.0f) << "column past the rows was written";
  std::vector<float> out(static_cast<size_t>(rows * p.hd));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < p.hd; ++d) out[r * p.hd + d] = out_t[d * ld + r] / sum[r];
  return out;
}

struct Shape {
  int64_t rows, hd, keys;
};
constexpr Shape kShapes[] = {{1, 8, 1},    {7, 64, 5},   {15, 13, 16}, {16, 64, 17}, {17, 64, 40}, {100, 8, 37},
                             {33, 13, 64}, {16, 64, 2},  {9, 4, 33},   {8, 64, 20},  {24, 16, 33}};

TEST_F(AttentionBlockTest, EqualsSoftmaxOverEachRowsCausalLength) {
  uint32_t seed = 1;
  for (SimdLevel level : available_levels()) {
    set_simd_level(level);
    for (const Shape& shape : kShapes) {
      const Problem p = make_problem(shape.rows, shape.hd, shape.keys, seed++);
      const auto expected = reference(p);
      const auto actual = run_blocks(p, 0, p.rows);
      for (size_t i = 0; i < expected.size(); ++i)
        ASSERT_NEAR(actual[i], expected[i], 2e-5) << simd_level_name(level) << " rows " << shape.rows << " hd "
                                                  << shape.hd << " keys " << shape.keys << " value " << i;
    }
  }
}

// BF16 products where this CPU has them: the same shapes (head_dim even, as the kernel requires), within
// BF16 rounding of the reference, and measurably not the float kernel's result (the BF16 path ran).
TEST_F(AttentionBlockTest, Bf16EqualsSoftmaxWithinBf16Rounding) {
  if (!attention_bf16_available(64)) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
  uint32_t seed = 1;
  for (const Shape& shape : kShapes) {
    const int64_t hd = shape.hd % 2 == 0 ? shape.hd : shape.hd + 1;
    const Problem p = make_problem(shape.rows, hd, shape.keys, seed++);
    const auto expected = reference(p);
    const auto actual = run_blocks(p, 0, p.rows, Precision::kBf16);
    const auto f32 = run_blocks(p, 0, p.rows, Precision::kF32);
    double largest_gap = 0.0;
    for (size_t i = 0; i < expected.size(); ++i) {
      ASSERT_NEAR(actual[i], expected[i], 3e-2) << "rows " << shape.rows << " hd " << hd << " keys " << shape.keys
                                                << " value " << i;
      largest_gap = std::max(largest_gap, std::fabs(double{actual[i]} - f32[i]));
    }
    EXPECT_GT(largest_gap, 1e-4) << "rows " << shape.rows << ": the BF16 kernel gave the float kernel's result";
  }
}

// The engine relies on it: a row's output is the same bits whichever rows share its call (decode rows
// beside prefill rows, a sequence chunked differently).
TEST_F(AttentionBlockTest, RowsAreIndependentOfTheirNeighbours) {
  for (SimdLevel level : available_levels()) {
    set_simd_level(level);
    for (Precision precision : {Precision::kF32, Precision::kBf16}) {
      if (precision == Precision::kBf16 && !attention_bf16_available(64)) continue;
      const Problem p = make_problem(37, 64, 45, 99);
      const auto all = run_blocks(p, 0, p.rows, precision);
      for (int64_t r0 : {0, 5, 16, 36}) {
        for (int64_t r1 : {r0 + 1, std::min<int64_t>(r0 + 19, p.rows)}) {
          const auto part = run_blocks(p, r0, r1, precision);
          for (int64_t i = 0; i < (r1 - r0) * p.hd; ++i)
            ASSERT_EQ(part[i], all[r0 * p.hd + i]) << simd_level_name(level) << (precision == Precision::kBf16 ? " bf16" : "")
                                                   << " rows [" << r0 << ", " << r1 << ")";
        }
      }
    }
  }
}

TEST_F(AttentionBlockTest, RowsThatSeeNoKeyAreLeftUnchanged) {
  auto check = [](const char* name, Precision precision) {
    const Problem p = make_problem(20, 16, 16, 7);
    const int64_t ld = 24;
    std::vector<float> q_t(static_cast<size_t>(p.hd * ld), 0.5f), out_t(q_t.size(), 1.5f);
    const std::vector<uint32_t> q_pairs = bf16_pairs(q_t, p.hd, ld);
    std::vector<float> max(ld, 2.0f), sum(ld, 3.0f);
    std::vector<int32_t> visible(ld, 0);
    visible[3] = 4;  // one row of the first 16 and none of the last 4 see keys
    AttentionBlock a;
    a.rows = p.rows;
    a.head_dim = p.hd;
    a.ld = ld;
    a.q_t = q_t.data();
    a.k = p.k.data();
    a.v = p.v.data();
    a.kv_stride = p.stride;
    a.keys = 16;
    a.visible = visible.data();
    a.max = max.data();
    a.sum = sum.data();
    a.out_t = out_t.data();
    if (precision == Precision::kBf16) a.q_pairs = q_pairs.data();
    attention_block(a);
    for (int64_t r = 0; r < ld; ++r) {
      if (r == 3) continue;
      EXPECT_EQ(max[r], 2.0f) << name << " row " << r;
      EXPECT_EQ(sum[r], 3.0f) << name << " row " << r;
      for (int64_t d = 0; d < p.hd; ++d) ASSERT_EQ(out_t[d * ld + r], 1.5f) << name << " row " << r;
    }
    EXPECT_NE(sum[3], 3.0f) << name;
  };
  for (SimdLevel level : available_levels()) {
    set_simd_level(level);
    check(simd_level_name(level).data(), Precision::kF32);
    if (attention_bf16_available(16)) check("bf16", Precision::kBf16);
  }
}

}  // namespace
}  // namespace rag::nn
