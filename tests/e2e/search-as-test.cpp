// End-to-end: `rag search --as` over folders with .ragacl files, hybrid search with a tiny random embedder
// recorded by `rag ingest --embed-model`, and reranking with a tiny random cross-encoder (tests/support/tiny-bert.h).
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"

namespace rag::test {
namespace {

using nlohmann::json;

class E2eSearchAs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    TinyBertSpec reranker;
    reranker.reranker = true;
    write_tiny_bert(*dir_ / "embedder.gguf");
    write_tiny_bert(*dir_ / "reranker.gguf", reranker);
    write_file(*dir_ / "docs/eng/.ragacl", "group:eng\n");
    write_file(*dir_ / "docs/eng/deploy.md", "# Deploy policy\n\nThe deploy policy needs two reviews.\n");
    write_file(*dir_ / "docs/hr/.ragacl", "user:ann\n");
    write_file(*dir_ / "docs/hr/salary.md", "# Salary policy\n\nThe salary policy is reviewed each year.\n");
    write_file(*dir_ / "docs/public/travel.md", "# Travel policy\n\nThe travel policy covers trains.\n");
    write_file(*dir_ / "docs/all/.ragacl", "group:everyone\n");
    write_file(*dir_ / "docs/all/holiday.md", "# Holiday policy\n\nThe holiday policy lists days off.\n");
    RunResult r = run_rag({"ingest", *dir_ / "docs", "--data", *dir_ / "data", "--embed-model", *dir_ / "embedder.gguf"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  static json search(std::vector<std::string> extra) {
    std::vector<std::string> args = {"search", "policy", "--data", *dir_ / "data", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    RunResult r = run_rag(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(r.out) : json::object();
  }

  static std::set<std::string> files(const json& out) {
    std::set<std::string> names;
    for (const auto& hit : out["results"]) {
      std::string path = hit["path"];
      names.insert(path.substr(path.rfind('/') + 1));
    }
    return names;
  }

  static TempDir* dir_;
};

TempDir* E2eSearchAs::dir_ = nullptr;

TEST_F(E2eSearchAs, EachPrincipalSeesOnlyWhatItMayRead) {
  using Names = std::set<std::string>;
  struct Case {
    std::vector<std::string> args;
    Names expected;
  } cases[] = {
      {{}, {"deploy.md", "salary.md", "travel.md", "holiday.md"}},            // no --as: local admin, no filter
      {{"--as", "bob:eng"}, {"deploy.md"}},                                    // no default group: no public docs
      {{"--as", "bob:eng,everyone"}, {"deploy.md", "travel.md", "holiday.md"}},
      {{"--as", "ann"}, {"salary.md"}},
      {{"--as", "carl:staff", "--default-group", "staff"}, {"travel.md"}},     // documents without an ACL only
      {{"--as", "dan:ops"}, {}},
  };
  for (const auto& c : cases) {
    std::string what;
    for (const auto& a : c.args) what += a + " ";
    EXPECT_EQ(files(search(c.args)), c.expected) << what;
    std::vector<std::string> bm25 = c.args;
    bm25.insert(bm25.end(), {"--mode", "bm25"});
    EXPECT_EQ(files(search(bm25)), c.expected) << what << "(bm25)";
    std::vector<std::string> dense = c.args;
    dense.insert(dense.end(), {"--mode", "dense"});
    EXPECT_EQ(files(search(dense)), c.expected) << what << "(dense)";
  }
}

TEST_F(E2eSearchAs, DefaultGroupFromTheEnvironment) {
  ::setenv("RAG_DEFAULT_GROUP", "staff", 1);
  json out = search({"--as", "carl:staff"});
  ::unsetenv("RAG_DEFAULT_GROUP");
  EXPECT_EQ(files(out), (std::set<std::string>{"travel.md"}));
}

TEST_F(E2eSearchAs, HybridUsesTheRecordedEmbedderAndReportsModelsAndTimings) {
  json out = search({});
  EXPECT_EQ(out["mode"], "hybrid");
  EXPECT_EQ(out["models"]["embedder"].get<std::string>().rfind("tiny-bert/mean/", 0), 0u) << out["models"];
  EXPECT_EQ(out["models"]["reranker"], "none");
  ASSERT_FALSE(out["results"].empty());
  for (const auto& hit : out["results"]) {
    EXPECT_FALSE(hit["fused"].is_null());
    EXPECT_FALSE(hit["vector"].is_null());  // four chunks, 100 candidates: every chunk is on the vector side
    EXPECT_TRUE(hit["rerank"].is_null());
  }
  for (const char* stage : {"embed", "bm25", "vector", "fuse", "rerank", "hydrate", "total"})
    EXPECT_TRUE(out["timings_ms"][stage].is_number()) << stage;

  json reranked = search({"--rerank-model", *dir_ / "reranker.gguf"});
  EXPECT_EQ(reranked["models"]["reranker"].get<std::string>().rfind("tiny-bert/rank/", 0), 0u);
  EXPECT_EQ(reranked["reranked"], reranked["results"].size());
  EXPECT_FALSE(reranked["results"][0]["rerank"].is_null());
}

TEST_F(E2eSearchAs, BadPrincipalsAndModelsAreClearErrors) {
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    const char* fragment;
  } cases[] = {
      {{"--as", ":eng"}, 2, "empty user"},
      {{"--as", "ann:"}, 2, "no group after ':'"},
      {{"--as", "ann:eng,,ops"}, 2, "empty group"},
      {{"--mode", "vector"}, 2, "want bm25, dense or hybrid"},
      {{"--rerank-model", *dir_ / "embedder.gguf"}, 1, "--embed-model"},
      {{"--embed-model", *dir_ / "reranker.gguf"}, 1, "reranker.gguf"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"search", "policy", "--data", *dir_ / "data"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    RunResult r = run_rag(args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.args[0] << " " << c.args[1] << "\n" << r.err;
    EXPECT_NE(r.err.find(c.fragment), std::string::npos) << r.err;
  }
  RunResult help = run_rag({"search", "--help"});
  EXPECT_NE(help.out.find("Without --as nothing is filtered"), std::string::npos);
}

}  // namespace
}  // namespace rag::test
