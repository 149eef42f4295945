// Fault loops over queries (issue 6, docs/reliability.md promise 3): the embedder's or the reranker's Nth
// call fails (fault points "encoder.embed", "encoder.score"), or the encoder's Nth worker body inside an
// OpenMP region ("encoder.parallel"), or the generator's Nth forward pass ("engine.forward"), for N = 1, 2,
// ... until the request succeeds.
//  - retrieve::Retriever: a failed query is a typed rag::Error; the next query returns what an unfaulted one
//    returns.
//  - The service over HTTP (/v1/search, /v1/ask as JSON and as SSE): a failed request is a 5xx JSON error
//    (SSE: an `error` event); /healthz is 200 afterwards and the same request then succeeds.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/fault.h"
#include "index/index.h"
#include "rerank/rerank.h"
#include "retrieve/retrieve.h"
#include "tests/faults-calls/fault-loop.h"
#include "tests/support/in-process-server.h"
#include "tests/support/raw-http.h"
#include "tests/support/tiny-generator.h"

namespace rag {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

using QueryFaults = test::CorpusWithModels<10>;

// Runs `attempt` with `point` armed at N = 1, 2, ... (every N up to `dense`, then strided) until it
// succeeds. `attempt` returns true when it succeeded, false when it failed as it should (it checks the
// failure itself); after each failure `after_failure` runs unfaulted. Returns the failures seen.
template <typename Attempt, typename AfterFailure>
int64_t loop_over_point(const std::string& point, Attempt&& attempt, AfterFailure&& after_failure, int64_t dense,
                        int64_t sparse) {
  fault::arm(point, INT64_MAX);
  EXPECT_TRUE(attempt());
  const int64_t total = fault::hits();
  fault::disarm();
  EXPECT_GT(total, 0) << point << " is never hit";
  int64_t failures = 0;
  for (int64_t n = 1; total > 0; n = test::next_fault(n, total, dense, sparse)) {
    SCOPED_TRACE(point + " hit " + std::to_string(n) + " of " + std::to_string(total));
    fault::arm(point, n);
    const bool ok = attempt();
    const bool fired = fault::disarm();
    EXPECT_EQ(ok, !fired);
    if (!fired) {
      EXPECT_GT(n, total) << "the request succeeded before its last hit";
      break;
    }
    ++failures;
    after_failure();
    if (n > 100 * total) {
      ADD_FAILURE() << "the loop does not end";
      break;
    }
  }
  return failures;
}

TEST_F(QueryFaults, RetrieverFailsTypedWhenTheEmbedderOrRerankerFailsAndTheNextQueryIsWhole) {
  const test::TempDir& d = *dir_;
  retrieve::Retriever retriever({d / "data", index::open_embedder(d / "embed.gguf"),
                                 rerank::open_reranker(d / "rerank.gguf")});
  retrieve::RetrieveOptions options;
  options.k = 8;
  const auto ids = [](const retrieve::Retrieval& r) {
    std::vector<int64_t> out;
    for (const auto& c : r.candidates) out.push_back(c.chunk_id);
    return out;
  };
  const retrieve::Retrieval expected = retriever.retrieve("cat protein risk", options);
  ASSERT_GT(expected.reranked, 16);  // more than one reranker call (batches of 16)
  for (const char* point : {"encoder.embed", "encoder.score", "encoder.parallel"}) {
    const int64_t failures = loop_over_point(
        point,
        [&] {
          try {
            const retrieve::Retrieval got = retriever.retrieve("cat protein risk", options);
            EXPECT_EQ(ids(got), ids(expected));
            return true;
          } catch (const Error& e) {
            EXPECT_EQ(e.code(), Errc::kInternal) << e.what();
            EXPECT_NE(std::string(e.what()).find("fault injected at " + std::string(point)), std::string::npos)
                << e.what();
            return false;
          }
        },
        [&] { EXPECT_EQ(ids(retriever.retrieve("cat protein risk", options)), ids(expected)); }, 12, 8);
    EXPECT_GT(failures, 0) << point;
  }
}

struct Route {
  std::string name, path, body;
  bool stream = false;
};

// True when the reply is a success; else checks it is the failure a faulted request must be.
bool answered(const Route& route, const test::RawReply& reply) {
  if (route.stream) {
    EXPECT_EQ(reply.status, 200) << reply.body;
    if (reply.body.find("event: done") != std::string::npos) return true;
    EXPECT_NE(reply.body.find("event: error"), std::string::npos) << "neither done nor error: " << reply.body;
    return false;
  }
  if (reply.status == 200) return true;
  EXPECT_GE(reply.status, 500) << reply.body;
  EXPECT_LT(reply.status, 600) << reply.body;
  const json body = json::parse(reply.body, nullptr, false);
  EXPECT_TRUE(body.is_object() && body.contains("error")) << "not a JSON error: " << reply.body;
  return false;
}

TEST_F(QueryFaults, HttpRequestsFailWith5xxOrAnErrorEventAndTheServerStaysHealthy) {
  const test::TempDir& d = *dir_;
  server::Config config;
  config.data_dir = d / "data";
  config.embed_model = d / "embed.gguf";
  config.rerank_model = d / "rerank.gguf";
  config.generate_model = d / "gen.gguf";
  config.default_max_tokens = 8;
  config.kv_memory_bytes = 8 << 20;
  server::HttpOptions http;
  http.local_principal = {"tester", {"everyone"}, false};
  test::InProcessServer server(config, http);
  const std::vector<Route> routes = {
      {"search", "/v1/search", json{{"query", "cat protein risk"}, {"k", 5}}.dump()},
      {"ask", "/v1/ask", json{{"question", "what is the cat protein risk?"}}.dump()},
      {"ask stream", "/v1/ask", json{{"question", "what is the cat protein risk?"}, {"stream", true}}.dump(), true},
  };
  const auto healthy = [&] {
    const test::RawReply health = test::raw_exchange(server.port(), test::kHealthzRequest, 20s);
    EXPECT_EQ(health.status, 200) << health.body;
  };
  for (const Route& route : routes) {
    // A warm-up fills the prefix cache, so that each later run of the same request passes the same steps.
    ASSERT_TRUE(answered(route, test::raw_exchange(server.port(), test::post_request(route.path, route.body), 60s))) << route.name;
    std::vector<std::string> points = {"encoder.embed", "encoder.score", "encoder.parallel"};
    if (route.path == "/v1/ask") points.push_back("engine.forward");
    for (const std::string& point : points) {
      SCOPED_TRACE(route.name + ", " + point);
      const auto attempt = [&] { return answered(route, test::raw_exchange(server.port(), test::post_request(route.path, route.body), 60s)); };
      const auto after = [&] {
        healthy();
        EXPECT_TRUE(attempt()) << "the same request after the failure";
      };
      EXPECT_GT(loop_over_point(point, attempt, after, 12, 6), 0);
    }
  }
}

}  // namespace
}  // namespace rag
