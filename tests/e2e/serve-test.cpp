// `rag serve` end to end: the binary on the sample corpus (ingested with a tiny embedder), a keys file, a tiny
// random-weight generator; requests over loopback from a plain socket client.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/serve-process.h"
#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"
#include "tests/support/tiny-generator.h"

namespace rag::test {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kHrKey = "hr-key-0123456789abcdef";      // maya.okafor, group hr: may read hr/
const std::string kEngKey = "eng-key-0123456789abcdef";    // sam, groups eng + everyone: not hr/
const std::string kAdminKey = "admin-key-0123456789abcdef";

class E2eServe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One OpenBLAS thread in the children: an ingest with an embedder was once seen spinning for minutes in
    // OpenBLAS's thread hand-off (exec_blas_async) on a loaded machine.
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    dir_ = new TempDir();
    write_tiny_bert(*dir_ / "embedder.gguf");
    write_tiny_generator(*dir_ / "generator.gguf");
    write_file(*dir_ / "keys.json", json{{"keys",
                                          {{{"key", kHrKey}, {"user", "maya.okafor"}, {"groups", {"hr"}}},
                                           {{"key", kEngKey}, {"user", "sam"}, {"groups", {"eng", "everyone"}}},
                                           {{"key", kAdminKey}, {"user", "root"}, {"groups", {"everyone"}}, {"admin", true}}}}}
                                         .dump());
    RunResult ingest = run_rag({"ingest", std::string(RAG_SOURCE_DIR) + "/data/sample", "--data", *dir_ / "data",
                                "--embed-model", *dir_ / "embedder.gguf"});
    ASSERT_EQ(ingest.exit_code, 0) << ingest.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::vector<std::string> serve_args() {
    return {"--data", *dir_ / "data", "--keys", *dir_ / "keys.json", "--generate-model", *dir_ / "generator.gguf",
            "--embed-model", *dir_ / "embedder.gguf", "--kv-mem", "16"};
  }
  static HttpReply post(int port, const std::string& path, const json& body, const std::string& key) {
    return http_request(port, "POST", path, body.dump(), {{"Authorization", "Bearer " + key}});
  }
  static TempDir* dir_;
};

TempDir* E2eServe::dir_ = nullptr;

// The hr/ folder (.ragacl: group:hr, user:maya.okafor) never reaches sam through any route, streaming included;
// maya finds it.
TEST_F(E2eServe, PermissionsHoldOnEveryRoute) {
  ServeProcess serve(serve_args());
  const int port = serve.port();
  EXPECT_EQ(http_request(port, "GET", "/readyz").status, 200);
  const std::string question = "parental leave weeks for the birth parent";
  for (const json& body : {json{{"query", question}, {"k", 50}}}) {
    HttpReply sam = post(port, "/v1/search", body, kEngKey);
    ASSERT_EQ(sam.status, 200) << sam.body;
    EXPECT_EQ(sam.body.find("/hr/"), std::string::npos) << sam.body;
    HttpReply maya = post(port, "/v1/search", body, kHrKey);
    ASSERT_EQ(maya.status, 200) << maya.body;
    EXPECT_NE(maya.body.find("/hr/parental-leave.md"), std::string::npos) << maya.body;
  }
  for (bool stream : {false, true}) {
    HttpReply ask = post(port, "/v1/ask", {{"question", question}, {"stream", stream}, {"temperature", 1.0}}, kEngKey);
    ASSERT_EQ(ask.status, 200) << ask.body;
    EXPECT_EQ(ask.body.find("/hr/"), std::string::npos) << ask.body;
    HttpReply chat = post(port, "/v1/chat/completions",
                          {{"model", "rag"}, {"stream", stream}, {"messages", {{{"role", "user"}, {"content", question}}}}}, kEngKey);
    ASSERT_EQ(chat.status, 200) << chat.body;
    EXPECT_EQ(chat.body.find("/hr/"), std::string::npos) << chat.body;
    if (stream) {
      EXPECT_NE(chat.body.find("data: [DONE]\n\n"), std::string::npos);
    }
  }
  HttpReply maya = post(port, "/v1/ask", {{"question", question}}, kHrKey);
  ASSERT_EQ(maya.status, 200);
  EXPECT_NE(maya.body.find("/hr/parental-leave.md"), std::string::npos) << maya.body;
  // Retrieval was hybrid with the embedder the data dir records; generation by the tiny model.
  json body = json::parse(maya.body);
  EXPECT_EQ(body["models"]["generator"], "generator.gguf");
  EXPECT_EQ(body["models"]["embedder"].get<std::string>().rfind("tiny-bert/mean/", 0), 0u) << body["models"];

  EXPECT_EQ(post(port, "/v1/ask", {{"question", question}}, "no-such-key-000000000").status, 401);
  EXPECT_EQ(http_request(port, "GET", "/v1/nothing", "", {{"Authorization", "Bearer " + kAdminKey}}).status, 404);
  HttpReply emb = post(port, "/v1/embeddings", {{"input", {"travel policy"}}, {"encoding_format", "float"}}, kEngKey);
  ASSERT_EQ(emb.status, 200) << emb.body;
  EXPECT_EQ(json::parse(emb.body)["data"][0]["embedding"].size(), 32u);
  // Keys never reach the log; questions neither.
  const std::string log = serve.log();
  EXPECT_EQ(log.find(kEngKey), std::string::npos);
  EXPECT_EQ(log.find("birth parent"), std::string::npos);
  EXPECT_NE(log.find("/v1/ask 200 user=sam"), std::string::npos) << log;
}

// Request threads run the embedder (and reranker) on OpenMP, and libgomp keeps a pool of worker threads
// behind every thread that ran a parallel region: for the server's life, and once pool threads outnumber the
// cores every barrier in the process, the generator engine's included, sleeps instead of spinning. Each
// request hands its pool back, so embedding requests over several connections leave no thread behind.
TEST_F(E2eServe, RequestsLeaveNoOpenMpThreadsBehind) {
  if (omp_get_num_procs() < 2) GTEST_SKIP() << "one core: OpenMP starts no worker threads";
  ServeProcess serve(serve_args());
  const int port = serve.port();
  auto threads = [&] {
    size_t n = 0;
    for ([[maybe_unused]] const auto& task : fs::directory_iterator("/proc/" + std::to_string(serve.pid()) + "/task")) ++n;
    return n;
  };
  // Enough text that the embedder's products split across the team.
  json inputs = json::array();
  for (int i = 0; i < 64; ++i)
    inputs.push_back("travel policy expenses receipts approval manager reimbursement within thirty days " + std::to_string(i));
  // The server's own threads (its HTTP workers among them) all run once it has answered.
  ASSERT_EQ(http_request(port, "GET", "/readyz").status, 200);
  const size_t before = threads();
  for (int i = 0; i < 4; ++i) ASSERT_EQ(post(port, "/v1/embeddings", {{"input", inputs}}, kEngKey).status, 200);
  EXPECT_LE(threads(), before);
}

// SIGTERM while a streamed answer is being generated: the stream still ends with its summary event and the
// server exits 0.
TEST_F(E2eServe, SigtermDrainsRequestsInFlight) {
  ServeProcess serve(serve_args());
  const int port = serve.port();
  HttpReply reply;
  std::thread client([&] {
    reply = post(port, "/v1/ask", {{"question", "expenses"}, {"stream", true}, {"max_tokens", 1000}, {"temperature", 1.0}}, kAdminKey);
  });
  // Wait until the request is running (the metrics say so), then stop the server.
  for (int i = 0; i < 400; ++i) {
    if (http_request(port, "GET", "/metrics").body.find("rag_requests_running 1") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const int status = serve.terminate();
  client.join();
  EXPECT_EQ(status, 0);
  EXPECT_EQ(reply.status, 200);
  EXPECT_NE(reply.body.find("event: done\n"), std::string::npos) << reply.body.substr(0, 500);
}

TEST_F(E2eServe, WithoutKeysOnlyLoopbackAndTheLocalUser) {
  RunResult refused = run_rag({"serve", "--data", *dir_ / "data", "--host", "0.0.0.0", "--port", "0"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("--keys"), std::string::npos) << refused.err;
  ServeProcess serve({"--data", *dir_ / "data"});
  HttpReply res = http_request(serve.port(), "POST", "/v1/ask", json{{"question", "How many days to submit expenses?"}}.dump());
  ASSERT_EQ(res.status, 200) << res.body;
  json body = json::parse(res.body);
  EXPECT_EQ(body["models"]["generator"], "none");
  EXPECT_NE(body["answer"].get<std::string>().find("30 days"), std::string::npos) << body;
}

}  // namespace
}  // namespace rag::test
