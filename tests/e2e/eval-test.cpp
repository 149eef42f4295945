// End-to-end: `rag eval beir` on SciFact's train queries (the figure issue 7 holds BM25 to), and every mode on a
// small BEIR folder with tiny random models (tests/support/tiny-bert.h): the plumbing, not the quality.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"

namespace rag::test {
namespace {

using nlohmann::json;

TEST(E2eEval, SciFactTrainBm25ReachesPublishedFigure) {
  TempDir dir;
  RunResult run = run_rag({"eval", "beir", shared_path("data/scifact"), "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  json out = json::parse(run.out);
  EXPECT_EQ(out["mode"], "bm25");
  EXPECT_EQ(out["queries"], 809);  // every train query has a relevant judgement
  // Published BM25 nDCG@10 on SciFact is about 0.665.
  EXPECT_GE(out["ndcg@10"].get<double>(), 0.66);
  EXPECT_GT(out["recall@100"].get<double>(), 0.85);
  EXPECT_GT(out["mrr@10"].get<double>(), 0.6);
}

// Issue 7: fusion must not make results worse than the better input. A random-weight embedder is the weakest
// dense side there is (nDCG@10 about 0 alone); the default hybrid fusion must stay with BM25 (0.686 here).
TEST(E2eEval, SciFactHybridWithARandomEmbedderStaysWithBm25) {
  TempDir dir;
  write_tiny_bert(dir / "embedder.gguf");
  RunResult run = run_rag({"eval", "beir", shared_path("data/scifact"), "--mode", "hybrid", "--embed-model",
                           dir / "embedder.gguf", "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  json out = json::parse(run.out);
  EXPECT_EQ(out["mode"], "hybrid");
  EXPECT_EQ(out["fusion"], "weighted");
  EXPECT_EQ(out["queries"], 809);
  EXPECT_GE(out["ndcg@10"].get<double>(), 0.675);
  EXPECT_GT(out["recall@100"].get<double>(), 0.85);
}

// Ten documents on distinct topics, three queries each with one relevant document that shares its words.
void write_small_beir(const TempDir& dir) {
  const char* topics[][2] = {
      {"Cats", "cats sleep in the sun most of the day"},       {"Dogs", "dogs need a walk twice a day"},
      {"Trains", "trains run on rails between cities"},        {"Bread", "bread rises with yeast in a warm room"},
      {"Rain", "rain falls from clouds when drops grow heavy"}, {"Chess", "chess pieces move on a board of squares"},
      {"Bees", "bees make honey from nectar of flowers"},      {"Salt", "salt keeps food from spoiling"},
      {"Ice", "ice floats because it is lighter than water"},  {"Kites", "kites fly when wind lifts them"},
  };
  std::string corpus;
  for (int i = 0; i < 10; ++i)
    corpus += json({{"_id", "d" + std::to_string(i)}, {"title", topics[i][0]}, {"text", topics[i][1]}}).dump() + "\n";
  write_file(dir / "beir/corpus.jsonl", corpus);
  write_file(dir / "beir/queries.jsonl",
             "{\"_id\": \"q1\", \"text\": \"why do cats sleep\"}\n{\"_id\": \"q2\", \"text\": \"honey from bees\"}\n"
             "{\"_id\": \"q3\", \"text\": \"ice floats on water\"}\n");
  write_file(dir / "beir/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\td6\t1\nq3\td8\t1\n");
}

TEST(E2eEval, EveryModeRunsWithTinyModels) {
  TempDir dir;
  write_small_beir(dir);
  TinyBertSpec reranker;
  reranker.reranker = true;
  write_tiny_bert(dir / "embedder.gguf");
  write_tiny_bert(dir / "reranker.gguf", reranker);
  struct Case {
    std::vector<std::string> args;
    const char* mode;
    bool embedder, reranker;
  } cases[] = {
      {{}, "bm25", false, false},
      {{"--mode", "dense", "--embed-model", dir / "embedder.gguf"}, "dense", true, false},
      {{"--mode", "hybrid", "--embed-model", dir / "embedder.gguf"}, "hybrid", true, false},
      {{"--mode", "hybrid", "--embed-model", dir / "embedder.gguf", "--fusion", "rrf"}, "hybrid", true, false},
      {{"--mode", "hybrid+rerank", "--embed-model", dir / "embedder.gguf", "--rerank-model", dir / "reranker.gguf"},
       "hybrid+rerank", true, true},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"eval", "beir", dir / "beir", "--json"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    RunResult run = run_rag(args);
    ASSERT_EQ(run.exit_code, 0) << c.mode << "\n" << run.err;
    json out = json::parse(run.out);
    EXPECT_EQ(out["mode"], c.mode);
    EXPECT_EQ(out["queries"], 3);
    for (const char* metric : {"ndcg@10", "recall@100", "mrr@10"}) {
      EXPECT_GE(out[metric].get<double>(), 0.0) << c.mode << " " << metric;
      EXPECT_LE(out[metric].get<double>(), 1.0) << c.mode << " " << metric;
    }
    // Ten documents, 100 hits per query: every relevant document is found, in every mode.
    EXPECT_DOUBLE_EQ(out["recall@100"].get<double>(), 1.0) << c.mode;
    EXPECT_EQ(out["models"]["embedder"] != "none", c.embedder) << out["models"];
    EXPECT_EQ(out["models"]["reranker"] != "none", c.reranker) << out["models"];
  }
  // BM25 finds each query's document first here (the words are shared); weighted hybrid keeps that.
  RunResult bm25 = run_rag({"eval", "beir", dir / "beir", "--json"});
  RunResult hybrid = run_rag({"eval", "beir", dir / "beir", "--json", "--mode", "hybrid", "--embed-model", dir / "embedder.gguf"});
  EXPECT_DOUBLE_EQ(json::parse(bm25.out)["ndcg@10"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(json::parse(hybrid.out)["ndcg@10"].get<double>(), 1.0);
}

TEST(E2eEval, UsageErrorsAndMissingModels) {
  EXPECT_EQ(run_rag({"eval"}).exit_code, 2);
  EXPECT_EQ(run_rag({"eval", "trec", "x"}).exit_code, 2);
  struct Case {
    std::vector<std::string> args;
    const char* fragment;
  } cases[] = {
      {{"--mode", "dense"}, "--embed-model"},
      {{"--mode", "hybrid"}, "--embed-model"},
      {{"--mode", "hybrid+rerank", "--embed-model", "x.gguf"}, "--rerank-model"},
      {{"--mode", "sparse"}, "want bm25, dense, hybrid or hybrid+rerank"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"eval", "beir", shared_path("data/scifact")};
    args.insert(args.end(), c.args.begin(), c.args.end());
    RunResult r = run_rag(args);
    EXPECT_EQ(r.exit_code, 2) << c.args[1];
    EXPECT_NE(r.err.find(c.fragment), std::string::npos) << r.err;
  }
  RunResult help = run_rag({"eval", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("nDCG@10"), std::string::npos);
}

}  // namespace
}  // namespace rag::test
