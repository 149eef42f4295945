// `rag ask` end to end on the sample corpus: extractive answers without a generator, generated ones with a
// tiny random-weight model, and the principal given with --as.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "tests/support/support.h"
#include "tests/support/tiny-generator.h"

namespace rag::test {
namespace {

using json = nlohmann::json;

class E2eAsk : public ::testing::Test {
 protected:
  void SetUp() override {
    RunResult ingest = run_rag({"ingest", std::string(RAG_SOURCE_DIR) + "/data/sample", "--data", dir_ / "data"});
    ASSERT_EQ(ingest.exit_code, 0) << ingest.err;
  }
  TempDir dir_;
};

TEST_F(E2eAsk, ExtractiveAnswerQuotesAndCites) {
  RunResult run = run_rag({"ask", "How many days do I have to submit expenses?", "--data", dir_ / "data"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("within 30 days of the purchase"), std::string::npos) << run.out;
  EXPECT_TRUE(std::regex_search(run.out, std::regex(R"(\n\[\d\] Expense and Travel Policy  \S+handbook/expense-policy\.md\n)"))) << run.out;
  EXPECT_NE(run.out.find("generator: none"), std::string::npos);
}

TEST_F(E2eAsk, PrincipalDecidesWhatCanBeCited) {
  const std::string question = "How many paid weeks of parental leave does the birth parent get?";
  RunResult hr = run_rag({"ask", question, "--data", dir_ / "data", "--as", "maya.okafor", "--json"});
  ASSERT_EQ(hr.exit_code, 0) << hr.err;
  json body = json::parse(hr.out);
  EXPECT_NE(hr.out.find("hr/parental-leave.md"), std::string::npos) << hr.out;
  EXPECT_EQ(body["models"]["generator"], "none");
  RunResult other = run_rag({"ask", question, "--data", dir_ / "data", "--as", "sam:eng", "--json"});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  EXPECT_EQ(other.out.find("hr/"), std::string::npos) << other.out;
  EXPECT_EQ(run_rag({"ask", "x", "--data", dir_ / "data", "--as", ":eng"}).exit_code, 2);
}

TEST_F(E2eAsk, GeneratedAnswerCitesOnlyGivenSources) {
  write_tiny_generator(dir_ / "gen.gguf");
  for (const char* seed : {"1", "2", "3"}) {
    RunResult run = run_rag({"ask", "expenses days", "--data", dir_ / "data", "--generate-model", dir_ / "gen.gguf", "--json",
                             "--temperature", "1", "--seed", seed, "--max-tokens", "64", "--sources", "2", "--kv-mem", "16"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    json body = json::parse(run.out);
    EXPECT_EQ(body["models"]["generator"], "gen.gguf");
    const std::string answer = body["answer"];
    std::regex marker(R"(\[(\d+)\])");
    for (auto it = std::sregex_iterator(answer.begin(), answer.end(), marker); it != std::sregex_iterator(); ++it)
      EXPECT_LE(std::stoi((*it)[1].str()), 2) << answer;
    for (const json& c : body["citations"]) EXPECT_LE(c["n"].get<int>(), 2);
  }
}

}  // namespace
}  // namespace rag::test
