// End-to-end: `rag eval beir` on SciFact's train queries, the figure issue 7 holds BM25 to.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/support.h"

namespace rag::test {
namespace {

TEST(E2eEval, SciFactTrainBm25ReachesPublishedFigure) {
  TempDir dir;
  RunResult run = run_rag({"eval", "beir", shared_path("data/scifact"), "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  nlohmann::json out = nlohmann::json::parse(run.out);
  EXPECT_EQ(out["mode"], "bm25");
  EXPECT_EQ(out["queries"], 809);  // every train query has a relevant judgement
  // Published BM25 nDCG@10 on SciFact is about 0.665.
  EXPECT_GE(out["ndcg@10"].get<double>(), 0.66);
  EXPECT_GT(out["recall@100"].get<double>(), 0.85);
  EXPECT_GT(out["mrr@10"].get<double>(), 0.6);
}

TEST(E2eEval, UsageErrorsAndMissingModels) {
  EXPECT_EQ(run_rag({"eval"}).exit_code, 2);
  EXPECT_EQ(run_rag({"eval", "trec", "x"}).exit_code, 2);
  RunResult dense = run_rag({"eval", "beir", shared_path("data/scifact"), "--mode", "dense"});
  EXPECT_NE(dense.exit_code, 0);
  EXPECT_NE(dense.err.find("use --mode bm25"), std::string::npos) << dense.err;
  RunResult help = run_rag({"eval", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("nDCG@10"), std::string::npos);
}

}  // namespace
}  // namespace rag::test
