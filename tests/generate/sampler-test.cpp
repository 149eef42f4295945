// The sampler: greedy picks, the filters (top-k, top-p) and the draw's distribution against the softmax
// it should follow, with seeds reproducing draws.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/error.h"
#include "generate/sampler.h"

namespace rag::generate {
namespace {

SamplingOptions sampling(float temperature, int top_k, float top_p, uint64_t seed = 1) {
  SamplingOptions o;
  o.temperature = temperature;
  o.top_k = top_k;
  o.top_p = top_p;
  o.seed = seed;
  return o;
}

TEST(Sampler, GreedyTakesTheLargestLogitAndTheLowestIdOnTies) {
  Sampler greedy(sampling(0.0f, 40, 0.95f));
  EXPECT_EQ(greedy.sample(std::vector<float>{0.1f, 3.0f, -2.0f, 2.9f}), 1);
  EXPECT_EQ(greedy.sample(std::vector<float>{1.0f, 5.0f, 5.0f, 5.0f}), 1);
  EXPECT_EQ(greedy.sample(std::vector<float>{-7.0f}), 0);
}

TEST(Sampler, TopKOfOneIsGreedyAtAnyTemperature) {
  Sampler sampler(sampling(5.0f, 1, 1.0f));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(sampler.sample(std::vector<float>{0.0f, 0.5f, 0.4f, 0.49f}), 1);
}

TEST(Sampler, DrawsFollowTheTemperedSoftmax) {
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  struct Case {
    float temperature;
    int top_k;
    float top_p;
    std::vector<double> expected;
  };
  const Case cases[] = {
      {1.0f, 0, 1.0f, {0.5, 0.3, 0.15, 0.05}},
      {0.5f, 0, 1.0f, {0.25 / 0.3625, 0.09 / 0.3625, 0.0225 / 0.3625, 0.0025 / 0.3625}},
      {1.0f, 2, 1.0f, {0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0}},
      {1.0f, 0, 0.7f, {0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0}},    // 0.5 < 0.7 ≤ 0.8: the first two
      {1.0f, 0, 0.4f, {1.0, 0.0, 0.0, 0.0}},
  };
  constexpr int kDraws = 40000;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "T=" << c.temperature << " k=" << c.top_k << " p=" << c.top_p);
    Sampler sampler(sampling(c.temperature, c.top_k, c.top_p, 42));
    std::vector<int> counts(logits.size(), 0);
    for (int i = 0; i < kDraws; ++i) ++counts[static_cast<size_t>(sampler.sample(logits))];
    for (size_t i = 0; i < logits.size(); ++i) {
      if (c.expected[i] == 0.0) {
        EXPECT_EQ(counts[i], 0) << "token " << i;
      } else {
        // Five standard deviations of a binomial proportion.
        const double sigma = std::sqrt(c.expected[i] * (1 - c.expected[i]) / kDraws);
        EXPECT_NEAR(counts[i] / double(kDraws), c.expected[i], 5 * sigma + 1e-9) << "token " << i;
      }
    }
  }
}

TEST(Sampler, SameSeedSameDraws) {
  std::vector<float> logits(100);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  Sampler a(sampling(1.0f, 0, 1.0f, 9)), b(sampling(1.0f, 0, 1.0f, 9)), c(sampling(1.0f, 0, 1.0f, 10));
  std::vector<int32_t> da, db, dc;
  for (int i = 0; i < 50; ++i) {
    da.push_back(a.sample(logits));
    db.push_back(b.sample(logits));
    dc.push_back(c.sample(logits));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(Sampler, OptionsOutOfRangeAreInvalidArguments) {
  for (const SamplingOptions& o : {sampling(-1.0f, 0, 1.0f), sampling(NAN, 0, 1.0f), sampling(1.0f, -1, 1.0f),
                                   sampling(1.0f, 0, 0.0f), sampling(1.0f, 0, 1.5f)}) {
    try {
      Sampler s(o);
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kInvalidArgument);
    }
  }
}

}  // namespace
}  // namespace rag::generate
