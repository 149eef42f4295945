// Allocation fault loops (issue 6, docs/reliability.md promise 3): the Nth operator new of the process (any
// thread: the caller's, the retriever's vector thread, an HTTP worker, the engine thread; not the test's own
// HTTP client) throws std::bad_alloc (alloc-fault.h), for N = 1, 2, ... until the operation succeeds. Every
// N up to kDense runs, then a stride to the counted total; RAG_FAULT_LOOP=full runs every N, and
// RAG_FAULT_TRACE=1 prints the stack of each failing allocation. Each run ends in success or an exception the
// caller can handle (rag::Error or std::bad_alloc; HTTP: a 5xx JSON error or, when request parsing failed, a
// closed connection), never in std::terminate; afterwards the same operation, unfaulted, gives what it gave
// before, the engine holds no request and every KV block is back, and a failed query leaves no file open.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/live-count.h"
#include "generate/engine.h"
#include "generate/model.h"
#include "index/index.h"
#include "rerank/rerank.h"
#include "retrieve/retrieve.h"
#include "tests/faults-calls/alloc-fault.h"
#include "tests/faults-calls/fault-loop.h"
#include "tests/support/in-process-server.h"
#include "tests/support/raw-http.h"
#include "tests/support/tiny-generator.h"

namespace rag {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

int open_fds() {
  int n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

constexpr int64_t kDense = 150;   // every N up to here
constexpr int64_t kSparse = 30;   // then about this many more, to the counted total

// Runs `attempt` (true: it succeeded) with the Nth allocation failing, N = 1, 2, ..., until it succeeds;
// `after_failure` runs unfaulted after each failure. Returns the failures seen.
template <typename Attempt, typename AfterFailure>
int64_t loop_over_allocations(Attempt&& attempt, AfterFailure&& after_failure) {
  test::arm_allocation_failure(INT64_MAX);
  const bool counted = attempt();
  const int64_t total = test::allocations_since_arm();
  test::disarm_allocation_failure();
  EXPECT_TRUE(counted);
  EXPECT_GT(total, 0);
  int64_t failures = 0;
  for (int64_t n = 1;; n = test::next_fault(n, total, kDense, kSparse)) {
    SCOPED_TRACE("allocation " + std::to_string(n) + " of " + std::to_string(total));
    test::arm_allocation_failure(n);
    const bool ok = attempt();
    const bool fired = test::disarm_allocation_failure();
    if (!fired) {
      EXPECT_TRUE(ok);
      EXPECT_GT(n, total / 2) << "the operation ended far sooner than its counted run";
      break;
    }
    if (!ok) ++failures;
    after_failure();
    if (n > 10 * total) {
      ADD_FAILURE() << "the loop does not end";
      break;
    }
  }
  return failures;
}

using AllocationFaults = test::CorpusWithModels<6>;

TEST_F(AllocationFaults, HybridRerankedSearchEndsInSuccessOrAnExceptionAndStaysWhole) {
  const test::TempDir& d = *dir_;
  retrieve::Retriever retriever({d / "data", index::open_embedder(d / "embed.gguf"),
                                 rerank::open_reranker(d / "rerank.gguf")});
  retrieve::RetrieveOptions options;
  options.k = 5;
  options.rerank_top_n = 8;
  const auto ids = [](const retrieve::Retrieval& r) {
    std::vector<int64_t> out;
    for (const auto& c : r.candidates) out.push_back(c.chunk_id);
    return out;
  };
  const std::vector<int64_t> expected = ids(retriever.retrieve("cat protein", options));
  ASSERT_FALSE(expected.empty());
  const int fds = open_fds();  // one reader in the pool, whatever failed before
  const int64_t failures = loop_over_allocations(
      [&] {
        try {
          const std::vector<int64_t> got = ids(retriever.retrieve("cat protein", options));
          test::disarm_allocation_failure();  // the comparison below allocates too
          EXPECT_EQ(got, expected);
          return true;
        } catch (const Error&) {
        } catch (const std::bad_alloc&) {
        }
        return false;
      },
      [&] {
        EXPECT_EQ(ids(retriever.retrieve("cat protein", options)), expected);
        EXPECT_EQ(open_fds(), fds) << "a failed query left files open";
      });
  EXPECT_GT(failures, 0);
}

// The results of a /v1/search reply (the rest holds timings).
json results(const test::RawReply& reply) {
  const json body = json::parse(reply.body, nullptr, false);
  return body.is_object() ? body.value("results", json()) : json();
}

TEST_F(AllocationFaults, HttpSearchEndsIn200OrA5xxAndTheServerStaysHealthy) {
  const test::TempDir& d = *dir_;
  server::Config config;
  config.data_dir = d / "data";
  config.embed_model = d / "embed.gguf";
  config.rerank_model = d / "rerank.gguf";
  server::HttpOptions http;
  http.local_principal = {"tester", {"everyone"}, false};
  test::InProcessServer server(config, http);
  const std::string request = test::post_request("/v1/search", json{{"query", "cat protein"}, {"k", 3}}.dump());
  const auto exchange = [&] {
    const test::ExemptThisThread client;  // only the server's allocations fail
    return test::raw_exchange(server.port(), request, 30s);
  };
  const test::RawReply expected = exchange();
  ASSERT_EQ(expected.status, 200) << expected.body;
  const int64_t failures = loop_over_allocations(
      [&] {
        const test::RawReply reply = exchange();
        test::disarm_allocation_failure();
        if (reply.status == 200) return true;
        // 0: the server closed the connection without answering (its read of the request failed).
        if (reply.status != 0) {
          EXPECT_GE(reply.status, 500) << reply.body;
          EXPECT_TRUE(json::parse(reply.body, nullptr, false).contains("error")) << reply.body;
        }
        return false;
      },
      [&] {
        const test::RawReply health =
            test::raw_exchange(server.port(), test::kHealthzRequest, 20s);
        EXPECT_EQ(health.status, 200) << health.body;
        const test::RawReply again = exchange();
        EXPECT_EQ(again.status, 200);
        EXPECT_EQ(results(again), results(expected));
      });
  EXPECT_GT(failures, 0);
}

TEST_F(AllocationFaults, EngineGenerationEndsInTokensOrAnExceptionAndReturnsEveryBlock) {
  const test::TempDir& d = *dir_;
  std::shared_ptr<const generate::Model> model(generate::Model::load(d / "gen.gguf"));
  LiveCount& blocks_leaked = live_count("kv_blocks_leaked");
  const int64_t blocks_at_start = blocks_leaked.value();
  {
    generate::Engine engine(model, generate::EngineOptions{.kv_memory_bytes = 4 << 20, .step_tokens = 16});
    const auto request = [] {
      generate::Request r;
      for (int32_t t = 0; t < 30; ++t) r.prompt.push_back(t == 0 ? 1 : 3 + (t * 7) % 40);
      r.options.max_tokens = 6;
      r.options.stop_at_eos = false;
      r.options.repetition_window = 0;
      return r;
    };
    const std::vector<int32_t> expected = engine.run(request()).generation.tokens;
    const int64_t failures = loop_over_allocations(
        [&] {
          try {
            engine.clear_prefix_cache();
            const std::vector<int32_t> got = engine.run(request()).generation.tokens;
            test::disarm_allocation_failure();
            EXPECT_EQ(got, expected);
            return true;
          } catch (const Error&) {
          } catch (const std::bad_alloc&) {
          }
          return false;
        },
        [&] {
          const generate::EngineStats s = engine.stats();
          EXPECT_EQ(s.running, 0);
          EXPECT_EQ(s.waiting, 0);
          EXPECT_EQ(s.blocks_free + s.blocks_cached, s.blocks_total);
          EXPECT_EQ(engine.run(request()).generation.tokens, expected);
        });
    EXPECT_GT(failures, 0);
  }
  EXPECT_EQ(blocks_leaked.value(), blocks_at_start);
}

}  // namespace
}  // namespace rag
