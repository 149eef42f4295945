#include <gtest/gtest.h>

#include <sstream>

#include "tests/support/support.h"

namespace rag {
namespace {

// The expected ids of `input` in a vocab fixture (.inp/.out pair, see shared/README.md).
std::string expected_line(const std::string& vocab, const std::string& input) {
  const std::string raw = test::read_file(vocab + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::istringstream out(test::read_file(vocab + ".out"));
  std::string line;
  for (size_t pos = 0; pos < raw.size() && std::getline(out, line);) {
    size_t next = raw.find(sep, pos);
    std::string current = raw.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (current == input) return line.substr(line.find_first_not_of(' '));
    if (next == std::string::npos) break;
    pos = next + sep.size();
  }
  ADD_FAILURE() << input << " is not in " << vocab;
  return {};
}

TEST(ModelTokenize, PrintsTheIdsOfTheFixture) {
  const std::string vocab = test::shared_path("fixtures/vocab/ggml-vocab-gpt-2.gguf");
  const std::string input = "Hello, world!";
  test::RunResult r = test::run_rag({"model", "tokenize", vocab, input});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, expected_line(vocab, input) + "\n");
}

TEST(ModelTokenize, SpecialAddsBosAndPiecesShowTokenText) {
  const std::string vocab = test::shared_path("fixtures/vocab/ggml-vocab-llama-spm.gguf");
  test::RunResult r = test::run_rag({"model", "tokenize", vocab, "Hello", "--special"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1 " + expected_line(vocab, "Hello") + "\n");

  r = test::run_rag({"model", "tokenize", vocab, "Hello", "--pieces"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, expected_line(vocab, "Hello") + " \xE2\x96\x81Hello\n");
}

TEST(ModelTokenize, MissingFileAndMissingTextFailClearly) {
  test::RunResult r = test::run_rag({"model", "tokenize", "/nonexistent/model.gguf", "text"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent/model.gguf"), std::string::npos) << r.err;
  r = test::run_rag({"model", "tokenize", "only-a-file.gguf"});
  EXPECT_EQ(r.exit_code, 2);
}

}  // namespace
}  // namespace rag
