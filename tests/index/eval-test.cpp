#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>

#include "common/error.h"
#include "index/index.h"
#include "tests/support/support.h"

namespace rag::index {
namespace {

using Judged = std::map<std::string, int>;

TEST(EvalMetrics, NdcgWithGradedGainsAgainstHandComputedValues) {
  // Relevant: a (grade 2), b (grade 1). Ranking c, a, b: DCG = 2/log2(3) + 1/log2(4); ideal = 2/1 + 1/log2(3).
  const Judged judged = {{"a", 2}, {"b", 1}, {"z", 0}};
  const double dcg = 2 / std::log2(3.0) + 1 / std::log2(4.0);
  const double ideal = 2 + 1 / std::log2(3.0);
  EXPECT_NEAR(ndcg_at({"c", "a", "b"}, judged, 10), dcg / ideal, 1e-12);
  EXPECT_DOUBLE_EQ(ndcg_at({"a", "b"}, judged, 10), 1.0);
  EXPECT_DOUBLE_EQ(ndcg_at({"z", "c"}, judged, 10), 0.0);  // grade 0 is not relevant
  // Cut at k: b at rank 3 does not count at k = 2, but the ideal is cut at 2 too.
  EXPECT_NEAR(ndcg_at({"c", "a", "b"}, judged, 2), (2 / std::log2(3.0)) / ideal, 1e-12);
  EXPECT_DOUBLE_EQ(ndcg_at({}, judged, 10), 0.0);
}

TEST(EvalMetrics, RecallAndMrrCutAtK) {
  const Judged judged = {{"a", 1}, {"b", 1}, {"c", 1}, {"n", 0}};
  EXPECT_DOUBLE_EQ(recall_at({"x", "a", "n", "b"}, judged, 100), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(recall_at({"x", "a", "n", "b"}, judged, 2), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(mrr_at({"x", "n", "b", "a"}, judged, 10), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(mrr_at({"x", "n", "b", "a"}, judged, 2), 0.0);
  EXPECT_DOUBLE_EQ(mrr_at({"c"}, judged, 10), 1.0);
}

TEST(EvalMetrics, ScoreRankingsAveragesOverQueriesWithARelevantJudgement) {
  const Qrels qrels = {{"q1", {{"a", 1}}}, {"q2", {{"b", 1}}}, {"q3", {{"c", 0}}}};
  // q1 perfect, q2 missed entirely (no ranking at all), q3 has no relevant document and is skipped.
  EvalScores s = score_rankings({{"q1", {"a"}}, {"q3", {"c"}}}, qrels);
  EXPECT_EQ(s.queries, 2);
  EXPECT_DOUBLE_EQ(s.ndcg10, 0.5);
  EXPECT_DOUBLE_EQ(s.recall100, 0.5);
  EXPECT_DOUBLE_EQ(s.mrr10, 0.5);
}

TEST(EvalLoaders, ReadCorpusQueriesAndQrels) {
  test::TempDir dir;
  test::write_file(dir / "corpus.jsonl",
                   "{\"_id\": \"d1\", \"title\": \"T\", \"text\": \"one\"}\n\n{\"_id\": \"d2\", \"text\": \"two\"}\n");
  test::write_file(dir / "queries.jsonl", "{\"_id\": \"q1\", \"text\": \"what\", \"metadata\": {}}\n");
  test::write_file(dir / "qrels.tsv", "query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq1\td2\t0\r\n");
  auto corpus = load_beir_corpus(dir / "corpus.jsonl");
  ASSERT_EQ(corpus.size(), 2u);
  EXPECT_EQ(corpus[0].id, "d1");
  EXPECT_EQ(corpus[0].title, "T");
  EXPECT_EQ(corpus[1].title, "");
  EXPECT_EQ(corpus[1].text, "two");
  auto queries = load_beir_queries(dir / "queries.jsonl");
  ASSERT_EQ(queries.size(), 1u);
  EXPECT_EQ(queries[0].text, "what");
  Qrels qrels = load_qrels(dir / "qrels.tsv");
  EXPECT_EQ(qrels, (Qrels{{"q1", {{"d1", 1}, {"d2", 0}}}}));
}

void expect_error(const std::function<void()>& f, Errc code, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; wanted one mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(EvalLoaders, MalformedLinesNameFileAndLine) {
  test::TempDir dir;
  test::write_file(dir / "bad-json.jsonl", "{\"_id\": \"d1\", \"text\": \"x\"}\n{not json\n");
  test::write_file(dir / "no-text.jsonl", "{\"_id\": \"d1\"}\n");
  test::write_file(dir / "number-id.jsonl", "{\"_id\": 7, \"text\": \"x\"}\n");
  test::write_file(dir / "bad.tsv", "query-id\tcorpus-id\tscore\nq1\td1\n");
  test::write_file(dir / "bad-score.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\thigh\n");
  expect_error([&] { load_beir_corpus(dir / "bad-json.jsonl"); }, Errc::kCorrupt, "bad-json.jsonl: line 2");
  expect_error([&] { load_beir_corpus(dir / "no-text.jsonl"); }, Errc::kCorrupt, "line 1: missing field \"text\"");
  expect_error([&] { load_beir_queries(dir / "number-id.jsonl"); }, Errc::kCorrupt, "\"_id\" is not a string");
  expect_error([&] { load_qrels(dir / "bad.tsv"); }, Errc::kCorrupt, "bad.tsv: line 2");
  expect_error([&] { load_qrels(dir / "bad-score.tsv"); }, Errc::kCorrupt, "line 3: score 'high'");
  expect_error([&] { load_qrels(dir / "missing.tsv"); }, Errc::kNotFound, "missing.tsv");
}

}  // namespace
}  // namespace rag::index
