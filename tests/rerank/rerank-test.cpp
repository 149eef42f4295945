// The reranker: the cross-encoder over a tiny random-weight model, and rerank()'s batches, passage cuts and
// time budget with a fake reranker on a fake clock (deterministic; nothing here measures real time).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "common/error.h"
#include "rerank/rerank.h"
#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"

namespace rag::rerank {
namespace {

using Clock = std::chrono::steady_clock;

// Scores passage i by its length, records each call's batch and advances the fake clock by `step_ms` per call.
class FakeReranker : public Reranker {
 public:
  explicit FakeReranker(Clock::time_point* now = nullptr, int step_ms = 0) : now_(now), step_ms_(step_ms) {}
  std::string name() const override { return "fake"; }
  std::vector<float> score(std::string_view, const std::vector<std::string>& passages) const override {
    batches.push_back(passages);
    if (now_) *now_ += std::chrono::milliseconds(step_ms_);
    std::vector<float> out;
    for (const auto& p : passages) out.push_back(static_cast<float>(p.size()));
    if (short_by > 0) out.resize(out.size() - std::min<size_t>(out.size(), short_by));
    return out;
  }
  mutable std::vector<std::vector<std::string>> batches;
  size_t short_by = 0;

 private:
  Clock::time_point* now_;
  int step_ms_;
};

std::vector<std::string> passages(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(std::string(static_cast<size_t>(i + 1), 'x'));
  return out;
}

TEST(Rerank, ScoresEveryPassageInOrderInBatches) {
  FakeReranker fake;
  RerankOptions options;
  options.batch = 16;
  RerankResult r = rerank(fake, "q", passages(40), options);
  ASSERT_EQ(r.scores.size(), 40u);
  for (size_t i = 0; i < 40; ++i) EXPECT_EQ(r.scores[i], static_cast<float>(i + 1));
  ASSERT_EQ(fake.batches.size(), 3u);
  EXPECT_EQ(fake.batches[0].size(), 16u);
  EXPECT_EQ(fake.batches[2].size(), 8u);
  EXPECT_FALSE(r.cut);
}

TEST(Rerank, EmptyListCallsNothing) {
  FakeReranker fake;
  RerankResult r = rerank(fake, "q", {});
  EXPECT_TRUE(r.scores.empty());
  EXPECT_TRUE(fake.batches.empty());
  EXPECT_FALSE(r.cut);
}

TEST(Rerank, PassagesArePreCutAtUtf8Boundaries) {
  FakeReranker fake;
  RerankOptions options;
  options.max_passage_bytes = 4;
  // "aé€" is 1 + 2 + 3 bytes: a 4-byte cut may not split the euro sign, so 3 bytes remain.
  RerankResult r = rerank(fake, "q", {"ab", "a\xC3\xA9\xE2\x82\xAC", std::string(100, 'z')}, options);
  ASSERT_EQ(fake.batches.size(), 1u);
  EXPECT_EQ(fake.batches[0][0], "ab");
  EXPECT_EQ(fake.batches[0][1], "a\xC3\xA9");
  EXPECT_EQ(fake.batches[0][2], "zzzz");
  EXPECT_EQ(cut_utf8("abc", 0), "abc");
}

TEST(Rerank, BudgetStopsStartingBatchesAndSaysSo) {
  // Each call takes 10 ms on the fake clock; with a 15 ms budget batches start at 0 and 10 ms, not at 20 ms.
  Clock::time_point now{};
  FakeReranker fake(&now, 10);
  RerankOptions options;
  options.batch = 4;
  options.budget_ms = 15;
  options.clock = [&now] { return now; };
  RerankResult r = rerank(fake, "q", passages(20), options);
  EXPECT_EQ(fake.batches.size(), 2u);
  ASSERT_EQ(r.scores.size(), 8u);
  EXPECT_EQ(r.scores[7], 8.0f);
  EXPECT_TRUE(r.cut);
  EXPECT_DOUBLE_EQ(r.ms, 20.0);
}

TEST(Rerank, FirstBatchRunsEvenWhenTheBudgetIsTiny) {
  Clock::time_point now{};
  FakeReranker fake(&now, 50);
  RerankOptions options;
  options.batch = 4;
  options.budget_ms = 1;
  options.clock = [&now] { return now; };
  RerankResult r = rerank(fake, "q", passages(10), options);
  EXPECT_EQ(r.scores.size(), 4u);
  EXPECT_TRUE(r.cut);
}

TEST(Rerank, NoBudgetMeansEverything) {
  Clock::time_point now{};
  FakeReranker fake(&now, 1000);
  RerankOptions options;
  options.batch = 2;
  options.clock = [&now] { return now; };
  EXPECT_EQ(rerank(fake, "q", passages(9), options).scores.size(), 9u);
}

TEST(Rerank, WrongNumberOfScoresIsAnError) {
  FakeReranker fake;
  fake.short_by = 1;
  try {
    rerank(fake, "q", passages(3));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kInternal);
  }
}

class CrossEncoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::TinyBertSpec reranker_spec;
    reranker_spec.reranker = true;
    test::write_tiny_bert(dir_ / "reranker.gguf", reranker_spec);
    test::write_tiny_bert(dir_ / "embedder.gguf");
  }
  test::TempDir dir_;
};

TEST_F(CrossEncoderTest, ScoresPairsDeterministically) {
  std::unique_ptr<Reranker> reranker = open_reranker(dir_ / "reranker.gguf");
  EXPECT_EQ(reranker->name().rfind("tiny-bert/rank/d32/", 0), 0u) << reranker->name();
  std::vector<std::string> texts = {"the cat sat on the mat", "vacation days per year", "", "the cat sat on the mat"};
  std::vector<float> a = reranker->score("how many vacation days", texts);
  ASSERT_EQ(a.size(), 4u);
  for (float s : a) EXPECT_TRUE(std::isfinite(s));
  EXPECT_NE(a[0], a[1]);
  EXPECT_NEAR(a[0], a[3], 1e-5);
  // Batched through rerank() the scores are the same as one call (within GEMM rounding).
  RerankOptions options;
  options.batch = 1;
  RerankResult r = rerank(*reranker, "how many vacation days", texts, options);
  ASSERT_EQ(r.scores.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(r.scores[i], a[i], 1e-4);
}

TEST_F(CrossEncoderTest, AnEmbeddingModelIsRefusedNamingTheRightFlag) {
  try {
    open_reranker(dir_ / "embedder.gguf");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("--embed-model"), std::string::npos) << e.what();
  }
}

TEST_F(CrossEncoderTest, MissingFileIsNotFound) {
  try {
    open_reranker(dir_ / "nope.gguf");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kNotFound);
  }
}

}  // namespace
}  // namespace rag::rerank
