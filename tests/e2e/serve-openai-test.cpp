// The official OpenAI client (npm `openai`, pinned in tests/e2e/openai/package-lock.json) against `rag serve`:
// chat completion, streaming chat completion, embeddings, typed errors. Skipped when node or npm is absent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "tests/support/serve-process.h"
#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"
#include "tests/support/tiny-generator.h"

namespace rag::test {
namespace {

bool have(const char* tool) { return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0; }

TEST(E2eServeOpenAi, OfficialClientChatStreamingAndEmbeddings) {
  if (!have("node") || !have("npm")) GTEST_SKIP() << "node and npm are needed for the OpenAI client test (apt-get install nodejs npm)";
  const std::string package = std::string(RAG_SOURCE_DIR) + "/tests/e2e/openai";
  // npm ci installs exactly the lock file's versions into node_modules (not committed); once is enough.
  const std::string install = "cd '" + package + "' && (test -d node_modules/openai || npm ci --no-audit --no-fund --loglevel=error) >&2";
  ASSERT_EQ(std::system(install.c_str()), 0) << "npm ci failed in " << package;

  TempDir dir;
  write_tiny_bert(dir / "embedder.gguf");
  write_tiny_generator(dir / "generator.gguf");
  const std::string key = "openai-test-key-0123456789";
  write_file(dir / "keys.json", nlohmann::json{{"keys", {{{"key", key}, {"user", "ann"}, {"groups", {"everyone"}}}}}}.dump());
  RunResult ingest = run_rag({"ingest", std::string(RAG_SOURCE_DIR) + "/data/sample", "--data", dir / "data"});
  ASSERT_EQ(ingest.exit_code, 0) << ingest.err;
  ServeProcess serve({"--data", dir / "data", "--keys", dir / "keys.json", "--generate-model", dir / "generator.gguf",
                      "--embed-model", dir / "embedder.gguf", "--kv-mem", "16", "--max-tokens", "256"});
  const std::string command = "RAG_BASE_URL=http://127.0.0.1:" + std::to_string(serve.port()) + "/v1 RAG_KEY=" + key +
                              " RAG_EMBED_MODEL=embedder.gguf node '" + package + "/test.mjs' > '" + (dir / "node.out") + "' 2>&1";
  const int status = std::system(command.c_str());
  EXPECT_EQ(status, 0) << read_file(dir / "node.out") << "\nserver log:\n" << serve.log();
  EXPECT_NE(read_file(dir / "node.out").find("openai client: chat, streaming chat, embeddings ok"), std::string::npos);
}

}  // namespace
}  // namespace rag::test
