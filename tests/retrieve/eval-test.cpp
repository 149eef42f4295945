// retrieve::eval_beir, the driver of `rag eval beir` (loaders and metrics are tested in tests/index).
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "common/error.h"
#include "retrieve/retrieve.h"
#include "tests/support/support.h"

namespace rag::retrieve {
namespace {

void expect_error(const std::function<void()>& f, Errc code, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; wanted one mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// A corpus where each query has exactly one document that shares its rare words: BM25 must rank it first.
TEST(EvalBeir, IndexesCorpusAndScoresJudgedQueries) {
  test::TempDir dir;
  test::write_file(dir / "beir/corpus.jsonl",
                   "{\"_id\": \"d1\", \"title\": \"Zebras\", \"text\": \"Stripes confuse biting flies.\"}\n"
                   "{\"_id\": \"d2\", \"title\": \"Volcanoes\", \"text\": \"Basalt lava flows cool into columns.\"}\n"
                   "{\"_id\": \"d3\", \"title\": \"Bread\", \"text\": \"Sourdough rises with wild yeast.\"}\n");
  test::write_file(dir / "beir/queries.jsonl",
                   "{\"_id\": \"q1\", \"text\": \"why do zebras have stripes\"}\n"
                   "{\"_id\": \"q2\", \"text\": \"basalt columns\"}\n"
                   "{\"_id\": \"q3\", \"text\": \"sourdough yeast\"}\n"
                   "{\"_id\": \"q4\", \"text\": \"unjudged query\"}\n");
  // q2 is judged against the wrong document on purpose: its score is 0, so the means are 2/3.
  test::write_file(dir / "beir/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\nq3\td3\t1\n");
  BeirEvalOptions options;
  options.work_dir = dir.path();
  BeirEvalResult r = eval_beir(dir / "beir", options);
  EXPECT_EQ(r.mode, "bm25");
  EXPECT_EQ(r.scores.queries, 3);
  EXPECT_NEAR(r.scores.mrr10, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(r.scores.ndcg10, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(r.scores.recall100, 2.0 / 3.0, 1e-12);
  // The scratch data dir is gone afterwards: only the BEIR folder remains.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) entries += e.path().filename() != "beir";
  EXPECT_EQ(entries, 0);
}

TEST(EvalBeir, ModesWithoutModelsAndBadOptionsSayWhatToDo) {
  test::TempDir dir;
  BeirEvalOptions options;
  options.mode = "dense";
  expect_error([&] { eval_beir(dir.path(), options); }, Errc::kInvalidArgument, "give --embed-model FILE");
  options.mode = "hybrid+rerank";
  options.embed_model = dir / "embedder.gguf";
  expect_error([&] { eval_beir(dir.path(), options); }, Errc::kInvalidArgument, "give --rerank-model FILE");
  options.mode = "magic";
  options.embed_model.clear();
  expect_error([&] { eval_beir(dir.path(), options); }, Errc::kInvalidArgument, "want bm25, dense");
  options.mode = "bm25";
  expect_error([&] { eval_beir(dir.path(), options); }, Errc::kNotFound, "corpus.jsonl");
}

}  // namespace
}  // namespace rag::retrieve
