// `rag ingest --embed-model FILE`: the data dir remembers its embedder, refuses another one until --reembed,
// and the vector index kind can be forced.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"

namespace rag::test {
namespace {

using nlohmann::json;

TEST(VectorIngestCli, EmbedderIsRememberedAndAnotherNeedsReembed) {
  TempDir dir;
  std::string docs = dir / "docs", data = dir / "data";
  write_file(docs + "/a.txt", "the cat sat on the mat");
  write_file(docs + "/b.txt", "dogs run in the park");
  TinyBertSpec spec;
  spec.context = 128;
  write_tiny_bert(dir / "embed.gguf", spec);
  spec.seed = 9;
  write_tiny_bert(dir / "other.gguf", spec);

  RunResult first = run_rag({"ingest", docs, "--data", data, "--json", "--embed-model", dir / "embed.gguf"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  json s = json::parse(first.out);
  EXPECT_EQ(s["embedded"], 2);
  EXPECT_EQ(s["vectors"], 2);

  // Later runs use the recorded model: nothing to embed when nothing changed.
  RunResult again = run_rag({"ingest", docs, "--data", data, "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(json::parse(again.out)["embedded"], 0);
  EXPECT_EQ(json::parse(again.out)["vectors"], 2);

  RunResult other = run_rag({"ingest", docs, "--data", data, "--embed-model", dir / "other.gguf"});
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.err.find("--reembed"), std::string::npos) << other.err;

  RunResult reembed =
      run_rag({"ingest", "--data", data, "--json", "--reembed", "--embed-model", dir / "other.gguf", "--vector-index", "hnsw"});
  ASSERT_EQ(reembed.exit_code, 0) << reembed.err;
  EXPECT_EQ(json::parse(reembed.out)["embedded"], 2);
  EXPECT_EQ(json::parse(reembed.out)["generation"], 2);  // a run that changed the index publishes a new one
  json manifest = json::parse(read_file(data + "/gen/2/manifest.json"));
  EXPECT_EQ(manifest["kind"], "hnsw");
  EXPECT_EQ(manifest["vectors"], 2);

  RunResult bad = run_rag({"ingest", docs, "--data", data, "--vector-index", "annoy"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  RunResult no_model = run_rag({"ingest", "--data", data, "--reembed"});
  EXPECT_EQ(no_model.exit_code, 2) << no_model.err;
}

}  // namespace
}  // namespace rag::test
