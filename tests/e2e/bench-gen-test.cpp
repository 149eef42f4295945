// `rag bench gen` end to end on a tiny real model (stories260K, imported): every figure of the JSON object
// is present and positive, the table prints, and bad arguments are usage errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/support.h"

namespace rag::test {
namespace {

std::string import_stories(const TempDir& dir) {
  const std::string model = dir / "stories260k.gguf";
  RunResult import = run_rag({"model", "import-llama2c", shared_path("fixtures/stories260k/stories260K.bin"),
                              shared_path("fixtures/stories260k/tok512.bin"), model});
  EXPECT_EQ(import.exit_code, 0) << import.err;
  return model;
}

const std::vector<std::string> kSmall = {"--prompt-tokens", "32", "--decode-tokens", "8", "--ttft-tokens", "100",
                                         "--cached-tokens", "80", "--streams", "1,2,4", "--stream-tokens", "6"};

TEST(E2eBenchGen, JsonHasEveryFigure) {
  TempDir dir;
  const std::string model = import_stories(dir);
  std::vector<std::string> command = {"bench", "gen", "--model", model, "--json", "--threads", "1", "--kv-mem", "4",
                                      "--repetitions", "2"};
  command.insert(command.end(), kSmall.begin(), kSmall.end());
  RunResult run = run_rag(command);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const nlohmann::json j = nlohmann::json::parse(run.out);
  for (const char* key : {"prefill_tok_s", "decode_tok_s", "ttft_cold_ms", "ttft_cached_ms", "long_decode_tok_s",
                          "kv_bytes_per_token", "memory_read_gb_s", "decode_model_gb_s"}) {
    ASSERT_TRUE(j.contains(key)) << key;
    EXPECT_GT(j[key].get<double>(), 0.0) << key;
  }
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["repetitions"], 2);
  // stories260K: 5 layers × K and V × 4 KV heads × 8 values × 4 bytes.
  EXPECT_EQ(j["kv_bytes_per_token"].get<double>(), 5 * 2 * 32 * 4);
  ASSERT_TRUE(j["aggregate_tok_s"].is_object());
  for (const char* streams : {"1", "2", "4"}) {
    ASSERT_TRUE(j["aggregate_tok_s"].contains(streams)) << streams;
    EXPECT_GT(j["aggregate_tok_s"][streams].get<double>(), 0.0) << streams;
  }
  EXPECT_EQ(j["aggregate_tok_s"].size(), 3u);
}

// --kv-type f16 halves the F32 model's bytes per position; an unknown type is a usage error naming them.
TEST(E2eBenchGen, KvTypeSetsTheCachesBytes) {
  TempDir dir;
  const std::string model = import_stories(dir);
  std::vector<std::string> command = {"bench", "gen", "--model", model, "--json", "--threads", "1",
                                      "--repetitions", "1", "--kv-type", "f16"};
  command.insert(command.end(), kSmall.begin(), kSmall.end());
  RunResult run = run_rag(command);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(nlohmann::json::parse(run.out)["kv_bytes_per_token"].get<double>(), 5 * 2 * 32 * 2);
  RunResult bad = run_rag({"bench", "gen", "--model", model, "--kv-type", "q8_0"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("auto, f16 or f32"), std::string::npos) << bad.err;
}

TEST(E2eBenchGen, TablePrintsEachFigure) {
  TempDir dir;
  const std::string model = import_stories(dir);
  std::vector<std::string> command = {"bench", "gen", "--model", model};
  command.insert(command.end(), kSmall.begin(), kSmall.end());
  RunResult run = run_rag(command);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (const char* label : {"prefill", "decode", "ttft cold", "ttft cached", "long decode", "aggregate", "kv cache"})
    EXPECT_NE(run.out.find(label), std::string::npos) << label << " in\n" << run.out;
}

TEST(E2eBenchGen, BadArgumentsAreUsageErrors) {
  TempDir dir;
  EXPECT_EQ(run_rag({"bench", "gen"}).exit_code, 2);
  const std::string model = import_stories(dir);
  // stories260K's context is 512 positions.
  RunResult too_long = run_rag({"bench", "gen", "--model", model, "--ttft-tokens", "2000"});
  EXPECT_EQ(too_long.exit_code, 2);
  EXPECT_NE(too_long.err.find("context"), std::string::npos) << too_long.err;
  EXPECT_EQ(run_rag({"bench", "gen", "--model", model, "--streams", "1,x"}).exit_code, 2);
}

}  // namespace
}  // namespace rag::test
