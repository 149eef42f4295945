// Fault loop over the generator engine (issue 6, docs/reliability.md promise 3): with four requests in
// flight, the Nth forward pass fails (fault point "engine.forward"), for N = 1, 2, ... until a run passes
// every step. The requests of the failed pass end with that typed error; the others finish with exactly the
// tokens of the unfaulted run (the engine's batching is bit-exact, so losing batch members changes nothing for
// the rest); the engine then serves a new request, no request is left running or waiting, and every KV block
// is back in the pool (free or held only by the prefix cache; when the engine stops, none is left referenced:
// the process-wide "kv_blocks_leaked" count is where it started).
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/fault.h"
#include "common/live-count.h"
#include "generate/engine.h"
#include "generate/model.h"
#include "tests/support/support.h"
#include "tests/support/tiny-generator.h"

namespace rag::generate {
namespace {

std::vector<int32_t> prompt_of(size_t length, uint32_t seed, int64_t vocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p = {1};
  while (p.size() < length) p.push_back(static_cast<int32_t>(3 + rng() % static_cast<uint32_t>(vocab - 3)));
  return p;
}

Request request_for(const std::vector<int32_t>& prompt) {
  Request r;
  r.prompt = prompt;
  r.options.max_tokens = 10;
  r.options.stop_at_eos = false;
  r.options.repetition_window = 0;
  return r;
}

// Submits every prompt at once (the first token of any waits until all are in, so they run together) and
// returns each one's tokens, or nullopt with the error it ended with in `errors`.
std::vector<std::optional<std::vector<int32_t>>> run_together(Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
                                                              std::vector<std::exception_ptr>& errors) {
  std::mutex mutex;
  std::condition_variable all_in;
  bool submitted = false;
  std::vector<std::future<Completion>> futures;
  for (const auto& prompt : prompts) {
    Request r = request_for(prompt);
    r.on_token = [&](int32_t, std::string_view) {
      std::unique_lock lock(mutex);
      all_in.wait(lock, [&] { return submitted; });
      return true;
    };
    futures.push_back(engine.submit(std::move(r)).completion);
  }
  {
    std::lock_guard lock(mutex);
    submitted = true;
  }
  all_in.notify_all();
  std::vector<std::optional<std::vector<int32_t>>> out;
  errors.assign(prompts.size(), nullptr);
  for (size_t i = 0; i < futures.size(); ++i) {
    try {
      out.push_back(futures[i].get().generation.tokens);
    } catch (...) {
      errors[i] = std::current_exception();
      out.push_back(std::nullopt);
    }
  }
  return out;
}

TEST(EngineFaults, AFailedForwardPassEndsItsRequestsTypedAndTheRestFinishUnchanged) {
  test::TempDir dir;
  test::write_tiny_generator(dir / "gen.gguf");
  std::shared_ptr<const Model> model(Model::load(dir / "gen.gguf"));
  const int64_t vocab = model->config().vocab_size;
  LiveCount& blocks_leaked = live_count("kv_blocks_leaked");
  const int64_t blocks_at_start = blocks_leaked.value();
  {
    const int64_t block_bytes = model->config().kv_layout().block_bytes();
    // Prompts of 20..50 tokens prefilled in steps of 24 tokens: the requests enter the batch at different steps.
    Engine engine(model, EngineOptions{.kv_memory_bytes = 40 * block_bytes, .step_tokens = 24});
    std::vector<std::vector<int32_t>> prompts;
    for (uint32_t i = 0; i < 4; ++i) prompts.push_back(prompt_of(20 + 10 * i, 40 + i, vocab));

    std::vector<std::exception_ptr> errors;
    fault::arm("engine.forward", INT64_MAX);
    const auto expected = run_together(engine, prompts, errors);
    const int64_t passes = fault::hits();
    fault::disarm();
    for (size_t i = 0; i < expected.size(); ++i) ASSERT_TRUE(expected[i].has_value()) << "request " << i;
    ASSERT_GT(passes, 4);

    int64_t failed_requests = 0, finished_beside_a_failure = 0;
    for (int64_t n = 1;; ++n) {
      SCOPED_TRACE("forward pass " + std::to_string(n) + " of " + std::to_string(passes));
      engine.clear_prefix_cache();  // every run prefills the same way, so pass n is the same pass
      fault::arm("engine.forward", n);
      const auto got = run_together(engine, prompts, errors);
      const bool fired = fault::disarm();
      int64_t failed = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        if (got[i]) {
          EXPECT_EQ(*got[i], *expected[i]) << "request " << i;
          continue;
        }
        ++failed;
        try {
          std::rethrow_exception(errors[i]);
        } catch (const Error& e) {
          EXPECT_EQ(e.code(), Errc::kInternal) << e.what();
          EXPECT_NE(std::string(e.what()).find("fault injected at engine.forward"), std::string::npos) << e.what();
        } catch (const std::exception& e) {
          ADD_FAILURE() << "request " << i << " failed untyped: " << e.what();
        }
      }
      EXPECT_EQ(fired, failed > 0);
      failed_requests += failed;
      if (fired && failed < static_cast<int64_t>(prompts.size())) ++finished_beside_a_failure;

      const EngineStats s = engine.stats();
      EXPECT_EQ(s.running, 0);
      EXPECT_EQ(s.waiting, 0);
      EXPECT_EQ(s.blocks_free + s.blocks_cached, s.blocks_total);
      // A new request after the failure is served as before.
      EXPECT_EQ(engine.run(request_for(prompts[0])).generation.tokens, *expected[0]);
      if (!fired) {
        EXPECT_GT(n, passes);
        break;
      }
      ASSERT_LE(n, passes) << "the loop does not end";
    }
    EXPECT_GE(failed_requests, passes);
    EXPECT_GT(finished_beside_a_failure, 0);  // some failures hit a pass without every request in it
  }
  EXPECT_EQ(blocks_leaked.value(), blocks_at_start);
}

}  // namespace
}  // namespace rag::generate
