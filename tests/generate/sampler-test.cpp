// The sampler: greedy picks, the filters (top-k, top-p) and the draw's distribution against the softmax
// it should follow, with seeds reproducing draws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
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

// OpenAI semantics: logit -= frequency × count + presence × (count > 0), before greedy or the draw.
TEST(Sampler, FrequencyAndPresencePenaltiesLowerGeneratedTokens) {
  const std::vector<float> logits = {0.0f, 3.0f, 2.0f, 1.5f};
  struct Case {
    float frequency, presence;
    std::vector<int32_t> generated;
    int32_t expected;
  };
  const Case cases[] = {
      {0.0f, 0.0f, {1, 1, 1}, 1},     // no penalty: the largest logit
      {0.4f, 0.0f, {1, 1}, 1},        // 3 - 0.8 = 2.2 > 2
      {0.4f, 0.0f, {1, 1, 1}, 2},     // 3 - 1.2 = 1.8 < 2
      {0.0f, 0.9f, {1, 1, 1, 1}, 1},  // presence counts once: 3 - 0.9 = 2.1 > 2
      {0.0f, 1.1f, {1}, 2},           // 3 - 1.1 = 1.9 < 2
      {0.3f, 0.5f, {1, 2}, 1},        // 3 - 0.8 = 2.2 still above 1.5 and 2 - 0.8
      {0.6f, 0.5f, {1, 1, 2}, 3},     // 3 - 1.7 = 1.3, 2 - 1.1 = 0.9: token 3 at 1.5 wins
      {-1.0f, 0.0f, {0}, 1},          // a negative penalty favours repeats, but 0 + 1 < 3
      {-2.0f, -2.0f, {0, 0}, 0},      // 0 + 4 + 2 = 6 > 3
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "frequency=" << c.frequency << " presence=" << c.presence
                                      << " generated=" << c.generated.size());
    for (float temperature : {0.0f, 0.01f}) {  // greedy, and a draw cold enough to be the argmax
      SamplingOptions o = sampling(temperature, 0, 1.0f);
      o.frequency_penalty = c.frequency;
      o.presence_penalty = c.presence;
      Sampler sampler(o);
      for (int32_t token : c.generated) sampler.accept(token);
      std::vector<float> penalized = logits;
      for (size_t i = 0; i < penalized.size(); ++i) {
        const auto n = static_cast<float>(std::count(c.generated.begin(), c.generated.end(), static_cast<int32_t>(i)));
        penalized[i] -= c.frequency * n + (n > 0 ? c.presence : 0.0f);
      }
      EXPECT_EQ(sampler.sample(logits), argmax(penalized));
      EXPECT_EQ(sampler.sample(logits), c.expected);
    }
  }
}

// The sampler finds its candidates without sorting the vocabulary. Here is the plain way: sort every logit
// (higher first, lower id on ties), keep the first k, then the same tempered softmax, nucleus and draw from
// the same seed. Both must pick the same tokens, with ties, and vocabularies not made of whole scan blocks.
float ranked(float logit) { return std::isnan(logit) ? -std::numeric_limits<float>::infinity() : logit; }

int32_t argmax_one_by_one(const std::vector<float>& logits) {
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (ranked(logits[i]) > ranked(logits[best])) best = i;
  return static_cast<int32_t>(best);
}

int32_t draw_by_sorting(const std::vector<float>& logits, const SamplingOptions& o, std::mt19937_64& rng) {
  std::vector<std::pair<float, int32_t>> c;
  for (size_t i = 0; i < logits.size(); ++i) c.emplace_back(logits[i], static_cast<int32_t>(i));
  auto better = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  const size_t keep = o.top_k > 0 ? std::min(c.size(), static_cast<size_t>(o.top_k)) : c.size();
  std::partial_sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(keep), c.end(), better);
  c.resize(keep);
  std::vector<double> probs;
  double total = 0.0;
  for (const auto& [logit, id] : c)
    total += probs.emplace_back(std::exp((logit - c[0].first) / o.temperature));
  size_t nucleus = c.size();
  double cumulative = 0.0;
  for (size_t i = 0; i < c.size() && o.top_p < 1.0f; ++i)
    if ((cumulative += probs[i] / total) >= o.top_p) {
      nucleus = i + 1;
      break;
    }
  const auto end = probs.begin() + static_cast<std::ptrdiff_t>(nucleus);
  double r = std::uniform_real_distribution<double>(0.0, std::accumulate(probs.begin(), end, 0.0))(rng);
  for (size_t i = 0; i < nucleus; ++i)
    if ((r -= probs[i]) < 0.0) return c[i].second;
  return c[nucleus - 1].second;
}

TEST(Sampler, PicksTheTokensThatSortingEveryLogitPicks) {
  std::mt19937 gen(3);
  for (size_t n : {1, 2, 31, 32, 33, 65, 1000, 151936}) {
    for (int spread : {4, 1000}) {  // logits on a grid of 4 values (ties everywhere) or of 1,000
      std::uniform_int_distribution<int> level(-spread / 2, spread - 1 - spread / 2);
      std::vector<float> logits(n);
      for (size_t i = 0; i < n; ++i) {
        logits[i] = static_cast<float>(level(gen)) * 8.0f / static_cast<float>(spread);
        if (logits[i] == 0.0f && i % 2 == 1) logits[i] = -0.0f;  // equal to +0: ranked by id alone
      }
      if (n > 40) logits[n / 3] = -std::numeric_limits<float>::infinity();
      SCOPED_TRACE(::testing::Message() << "n=" << n << " spread=" << spread);
      ASSERT_EQ(argmax(logits), argmax_one_by_one(logits));
      for (float temperature : {0.05f, 0.8f, 5.0f})
        for (int top_k : {0, 1, 2, 40, static_cast<int>(n) - 1, static_cast<int>(n) + 5})
          for (float top_p : {1.0f, 0.9f, 0.3f}) {
            // Each draw of the plain way sorts 151,936 pairs: slow in the unoptimized ASan build, so the large
            // vocabulary runs one temperature, keeping few tokens (smaller n cover the rest).
            if (top_k < 0 || (n > 1000 && (top_k == 0 || top_k > 40 || temperature != 0.8f))) continue;
            SCOPED_TRACE(::testing::Message() << "T=" << temperature << " k=" << top_k << " p=" << top_p);
            const SamplingOptions o = sampling(temperature, top_k, top_p, 11);
            Sampler sampler(o);
            std::mt19937_64 rng(11);
            for (int draw = 0; draw < 8; ++draw) {
              logits[static_cast<size_t>(draw * 7919) % n] += 0.5f;  // the next step's logits differ a little
              ASSERT_EQ(sampler.sample(logits), draw_by_sorting(logits, o, rng)) << "draw " << draw;
            }
          }
    }
  }
}

TEST(Sampler, NaNLogitsAreNeverPickedBeforeANumber) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (size_t at : {0, 1, 40, 99}) {
    std::vector<float> logits(100, -1.0f);
    logits[at] = nan;
    logits[at == 0 ? 50 : 0] = 2.0f;
    EXPECT_EQ(argmax(logits), at == 0 ? 50 : 0) << "NaN at " << at;
    for (int top_k : {0, 1, 40}) {
      Sampler sampler(sampling(1.0f, top_k, 1.0f, 5));
      for (int draw = 0; draw < 200; ++draw)
        EXPECT_NE(sampler.sample(logits), static_cast<int32_t>(at)) << "top_k " << top_k;
    }
  }
  // Nothing but NaN and -inf: no distribution to draw from, but still a token, the first in rank order.
  std::vector<float> none(64, -std::numeric_limits<float>::infinity());
  none[3] = nan;
  EXPECT_EQ(argmax(none), 0);
  Sampler sampler(sampling(1.0f, 40, 0.9f, 5));
  EXPECT_EQ(sampler.sample(none), 0);
}

TEST(Sampler, RunawayRepetitionIsAShortCycleCoveringTheWindow) {
  auto cycle = [](std::vector<int32_t> unit, size_t length, std::vector<int32_t> before = {}) {
    std::vector<int32_t> tokens = before;
    for (size_t i = 0; i < length; ++i) tokens.push_back(unit[i % unit.size()]);
    return tokens;
  };
  std::vector<int32_t> varied(200);
  for (size_t i = 0; i < varied.size(); ++i) varied[i] = static_cast<int32_t>((i * 7919) % 97);
  struct Case {
    const char* name;
    std::vector<int32_t> tokens;
    int64_t window, max_cycle;
    bool expected;
  };
  std::vector<int32_t> seventeen(17);
  for (size_t i = 0; i < seventeen.size(); ++i) seventeen[i] = static_cast<int32_t>(i);
  const Case cases[] = {
      {"one token 64 times", cycle({5}, 64), 64, 16, true},
      {"one token 63 times", cycle({5}, 63), 64, 16, false},
      {"one token 63 times after others", cycle({5}, 63, {1, 2, 3}), 64, 16, false},
      {"a cycle of 3 over 64 after text", cycle({4, 9, 2}, 64, {1, 2, 3}), 64, 16, true},
      {"a cycle of 16 four times", cycle(std::vector<int32_t>(seventeen.begin(), seventeen.end() - 1), 64), 64, 16, true},
      {"a cycle of 17 is too long", cycle(seventeen, 128), 64, 16, false},
      {"a cycle of 17 with a longer max", cycle(seventeen, 128), 64, 32, true},
      {"varied text", varied, 64, 16, false},
      {"broken by one token", [&] { auto t = cycle({4, 9}, 64); t[40] = 7; return t; }(), 64, 16, false},
      {"window 0 disables", cycle({5}, 200), 0, 16, false},
      {"cycle 0 disables", cycle({5}, 200), 64, 0, false},
      {"a small window", cycle({5}, 8), 8, 16, true},
  };
  for (const Case& c : cases)
    EXPECT_EQ(is_runaway_repetition(c.tokens, c.window, c.max_cycle), c.expected) << c.name;
}

TEST(Sampler, OptionsOutOfRangeAreInvalidArguments) {
  for (const SamplingOptions& o : {sampling(-1.0f, 0, 1.0f), sampling(NAN, 0, 1.0f), sampling(1.0f, -1, 1.0f),
                                   sampling(1.0f, 0, 0.0f), sampling(1.0f, 0, 1.5f),
                                   [] { auto o = sampling(0.0f, 0, 1.0f); o.frequency_penalty = 2.5f; return o; }(),
                                   [] { auto o = sampling(0.0f, 0, 1.0f); o.presence_penalty = -3.0f; return o; }(),
                                   [] { auto o = sampling(0.0f, 0, 1.0f); o.presence_penalty = NAN; return o; }()}) {
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
