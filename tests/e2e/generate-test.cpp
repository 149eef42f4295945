// `rag model import-llama2c` and `rag generate` end to end, on real weights: Karpathy's stories260K imported
// from llama2.c's format must generate, greedily from BOS, exactly the text llama2.c's fp32 run.c prints.
#include <gtest/gtest.h>

#include <string>

#include "tests/support/support.h"

namespace rag::test {
namespace {

const std::string kCheckpoint = "fixtures/stories260k/stories260K.bin";
const std::string kTokenizer = "fixtures/stories260k/tok512.bin";

TEST(E2eGenerate, Stories260kGreedyMatchesLlama2c) {
  TempDir dir;
  const std::string model = dir / "stories260k.gguf";
  RunResult import = run_rag({"model", "import-llama2c", shared_path(kCheckpoint), shared_path(kTokenizer), model});
  ASSERT_EQ(import.exit_code, 0) << import.err;

  RunResult run = run_rag({"generate", "--model", model, "--temperature", "0", "--max-tokens", "200"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string expected = read_file(shared_path("fixtures/stories260k/expected_greedy_200.txt"));
  // The command ends its output with a newline, as llama2.c does; the fixture holds the text alone.
  EXPECT_EQ(run.out, expected + "\n");
  // All 200 tokens: the default runaway-repetition check does not fire on this text.
  EXPECT_NE(run.err.find("finish reason length"), std::string::npos) << run.err;
}

// --stop cuts the text before the first stop string (never printing it); penalties change a greedy run.
TEST(E2eGenerate, StopStringsAndPenalties) {
  TempDir dir;
  const std::string model = dir / "stories260k.gguf";
  ASSERT_EQ(run_rag({"model", "import-llama2c", shared_path(kCheckpoint), shared_path(kTokenizer), model}).exit_code, 0);
  const std::string expected = read_file(shared_path("fixtures/stories260k/expected_greedy_200.txt"));
  const std::string stop = expected.substr(40, 6);
  RunResult run = run_rag({"generate", "--model", model, "--max-tokens", "200", "--stop", "no such text", "--stop", stop});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, expected.substr(0, expected.find(stop)) + "\n");
  EXPECT_NE(run.err.find("finish reason stop"), std::string::npos) << run.err;

  for (const char* flag : {"--frequency-penalty", "--presence-penalty"}) {
    SCOPED_TRACE(flag);
    RunResult penalized = run_rag({"generate", "--model", model, "--max-tokens", "200", flag, "1.5"});
    ASSERT_EQ(penalized.exit_code, 0) << penalized.err;
    EXPECT_NE(penalized.out, expected + "\n");
    EXPECT_EQ(run_rag({"generate", "--model", model, "--max-tokens", "200", flag, "1.5"}).out, penalized.out);
    EXPECT_NE(run_rag({"generate", "--model", model, flag, "3"}).exit_code, 0);
  }
}

TEST(E2eGenerate, PromptIsContinued) {
  TempDir dir;
  const std::string model = dir / "stories260k.gguf";
  ASSERT_EQ(run_rag({"model", "import-llama2c", shared_path(kCheckpoint), shared_path(kTokenizer), model}).exit_code, 0);
  // The greedy text from BOS starts "Once upon a time, there was a little girl named Lily."; prompting with
  // its first words must continue it the same way (prefill in one pass, then decode).
  RunResult run = run_rag({"generate", "--model", model, "--max-tokens", "12", "Once upon a time,"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out.rfind(" there was a little girl named Lily", 0), 0u) << run.out;
}

TEST(E2eGenerate, SampledRunsRepeatWithTheirSeed) {
  TempDir dir;
  const std::string model = dir / "stories260k.gguf";
  ASSERT_EQ(run_rag({"model", "import-llama2c", shared_path(kCheckpoint), shared_path(kTokenizer), model}).exit_code, 0);
  auto sample = [&](const char* seed) {
    return run_rag({"generate", "--model", model, "--temperature", "1", "--seed", seed, "--max-tokens", "40"});
  };
  RunResult a = sample("3"), b = sample("3"), c = sample("4");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
}

// A checkpoint whose classifier is stored apart (vocab_size negative, wcls after the RoPE tables) imports
// to a model with output.weight; with wcls a copy of the embedding it must generate the same text.
TEST(E2eGenerate, SeparateClassifierImportsAsOutputWeight) {
  TempDir dir;
  std::string bytes = read_file(shared_path(kCheckpoint));
  const int32_t negative_vocab = -512;
  bytes.replace(20, 4, reinterpret_cast<const char*>(&negative_vocab), 4);  // header field 6: vocab_size
  bytes += bytes.substr(28, 512 * 64 * sizeof(float));                       // wcls = token_embedding_table
  write_file(dir / "separate.bin", bytes);
  RunResult import = run_rag({"model", "import-llama2c", dir / "separate.bin", shared_path(kTokenizer), dir / "m.gguf"});
  ASSERT_EQ(import.exit_code, 0) << import.err;
  RunResult run = run_rag({"generate", "--model", dir / "m.gguf", "--max-tokens", "200"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, read_file(shared_path("fixtures/stories260k/expected_greedy_200.txt")) + "\n");
  // Without its wcls the same header describes a truncated file.
  write_file(dir / "separate.bin", bytes.substr(0, bytes.size() - 4));
  RunResult cut = run_rag({"model", "import-llama2c", dir / "separate.bin", shared_path(kTokenizer), dir / "m.gguf"});
  EXPECT_EQ(cut.exit_code, 1);
  EXPECT_NE(cut.err.find("wcls"), std::string::npos) << cut.err;
}

// A checkpoint cut short, or with a header that does not describe it, is refused naming the file.
TEST(E2eGenerate, ImportRejectsBrokenCheckpoints) {
  TempDir dir;
  const std::string good = read_file(shared_path(kCheckpoint));
  struct Case {
    const char* name;
    std::string bytes;
    const char* fragment;
  };
  std::string bad_layers = good;
  bad_layers[8] = 0, bad_layers[9] = 0, bad_layers[10] = 0, bad_layers[11] = 0;  // n_layers = 0
  const Case cases[] = {
      {"truncated in the weights", good.substr(0, good.size() / 2), "truncated"},
      {"truncated in the header", good.substr(0, 10), "header field"},
      {"trailing bytes", good + "xxxx", "follow the last tensor"},
      {"zero layers", bad_layers, "n_layers"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    write_file(dir / "bad.bin", c.bytes);
    RunResult run = run_rag({"model", "import-llama2c", dir / "bad.bin", shared_path(kTokenizer), dir / "out.gguf"});
    EXPECT_EQ(run.exit_code, 1);
    EXPECT_NE(run.err.find("bad.bin"), std::string::npos) << run.err;
    EXPECT_NE(run.err.find(c.fragment), std::string::npos) << run.err;
  }
  const std::string tokenizer = read_file(shared_path(kTokenizer));
  write_file(dir / "tok.bin", tokenizer.substr(0, tokenizer.size() - 3));
  RunResult run = run_rag({"model", "import-llama2c", shared_path(kCheckpoint), dir / "tok.bin", dir / "out.gguf"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("tok.bin"), std::string::npos) << run.err;
}

TEST(E2eGenerate, MissingModelIsAnError) {
  RunResult run = run_rag({"generate", "--model", "/nonexistent/model.gguf"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("/nonexistent/model.gguf"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace rag::test
