// Fault loops over the writers (issue 6, docs/reliability.md promise 3): an ingest and a rebuild whose
// embedder fails at its Nth call, or whose encoder fails in its Nth worker body inside an OpenMP region, for
// N = 1, 2, 3, ... until the run succeeds. Each failed run is a typed rag::Error; the live generation is the
// one before it and verify() finds nothing wrong; the next run, unfaulted, publishes and verifies.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "common/error.h"
#include "common/fault.h"
#include "index/index.h"
#include "tests/faults-calls/fault-loop.h"

namespace rag::index {
namespace {

// Delegates to a real embedder and fails its `fail_at`th call (1-based); 0 never fails.
class FailingEmbedder : public Embedder {
 public:
  FailingEmbedder(std::shared_ptr<const Embedder> inner, int64_t fail_at) : inner_(std::move(inner)), fail_at_(fail_at) {}
  int dim() const override { return inner_->dim(); }
  const std::string& identity() const override { return inner_->identity(); }
  std::vector<float> embed(const std::vector<std::string>& texts) const override {
    if (++calls_ == fail_at_) fail(Errc::kIo, "test embedder: call {} fails", fail_at_);
    return inner_->embed(texts);
  }
  int64_t calls() const { return calls_; }

 private:
  std::shared_ptr<const Embedder> inner_;
  int64_t fail_at_;
  mutable std::atomic<int64_t> calls_{0};
};

class WriterFaults : public testing::Test {
 protected:
  void SetUp() override {
    test::write_tiny_bert(dir_ / "embed.gguf", test::embedder_spec());
    embedder_ = open_embedder(dir_ / "embed.gguf");
    test::write_corpus(dir_ / "docs", 20);
    const IngestSummary first = ingest(data(), options(embedder_));
    ASSERT_GT(first.embedded, kEmbedBatch);  // a re-embedding run makes several embed calls
  }

  std::string data() const { return dir_ / "data"; }
  IngestOptions options(std::shared_ptr<const Embedder> embedder) const {
    IngestOptions o;
    o.roots = {dir_ / "docs"};
    o.threads = 1;
    o.embedder = std::move(embedder);
    o.embedder_path = dir_ / "embed.gguf";
    o.reembed = true;  // every chunk again: several embed calls, each a full batch
    return o;
  }

  // After a failed run: the live generation is `generation`, verifies, and answers a search.
  void expect_untouched(int64_t generation, const std::string& context) {
    const VerifyReport report = verify(data());
    EXPECT_EQ(report.generation, generation) << context;
    EXPECT_TRUE(report.ok()) << context << ": " << (report.problems.empty() ? "" : report.problems.front());
    EXPECT_FALSE(search(data(), "cat").empty()) << context;
  }

  // Runs `run` unfaulted: it publishes a newer generation that verifies.
  template <typename Run>
  void expect_next_run_succeeds(Run&& run, int64_t after, const std::string& context) {
    ASSERT_NO_THROW(run()) << context;
    const VerifyReport report = verify(data());
    EXPECT_GT(report.generation, after) << context;
    EXPECT_TRUE(report.ok()) << context;
  }

  // The loop over a fault point: `run` unfaulted counts the hits; then N = 1, 2, ... until `run` succeeds.
  template <typename Run>
  void loop_over_point(const char* point, Run&& run, int64_t dense, int64_t sparse) {
    fault::arm(point, INT64_MAX);
    run();
    const int64_t total = fault::hits();
    fault::disarm();
    ASSERT_GT(total, 0) << point << " is never hit";
    int64_t failed_runs = 0;
    for (int64_t n = 1;; n = test::next_fault(n, total, dense, sparse)) {
      const std::string context = std::string(point) + " hit " + std::to_string(n) + " of " + std::to_string(total);
      const int64_t generation = verify(data()).generation;
      fault::arm(point, n);
      bool threw = false;
      try {
        run();
      } catch (const Error& e) {
        threw = true;
        EXPECT_EQ(e.code(), Errc::kInternal) << context << ": " << e.what();
        EXPECT_NE(std::string(e.what()).find("fault injected"), std::string::npos) << context << ": " << e.what();
      }
      const bool fired = fault::disarm();
      EXPECT_EQ(threw, fired) << context;
      if (!fired) {
        EXPECT_GT(n, total) << context << ": the run succeeded before its last hit";
        break;
      }
      ++failed_runs;
      expect_untouched(generation, context);
      expect_next_run_succeeds(run, generation, context);
      ASSERT_LT(n, 100 * total) << "the loop does not end";
    }
    EXPECT_GE(failed_runs, std::min<int64_t>(total, dense));
  }

  test::TempDir dir_;
  std::shared_ptr<const Embedder> embedder_;
};

TEST_F(WriterFaults, IngestFailingAtTheNthEmbedderCallLeavesTheLiveGeneration) {
  int64_t calls = 0;
  {
    auto counting = std::make_shared<FailingEmbedder>(embedder_, 0);
    ingest(data(), options(counting));
    calls = counting->calls();
  }
  ASSERT_GE(calls, 2);
  for (int64_t n = 1;; ++n) {
    const std::string context = "embedder call " + std::to_string(n) + " of " + std::to_string(calls);
    const int64_t generation = verify(data()).generation;
    try {
      ingest(data(), options(std::make_shared<FailingEmbedder>(embedder_, n)));
      EXPECT_GT(n, calls) << context << ": the faulted call went unnoticed";
      break;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kIo) << context << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("call " + std::to_string(n) + " fails"), std::string::npos) << e.what();
    }
    expect_untouched(generation, context);
    expect_next_run_succeeds([&] { ingest(data(), options(embedder_)); }, generation, context);
    ASSERT_LE(n, calls) << "the loop does not end";
  }
}

TEST_F(WriterFaults, IngestFailingInsideTheEncodersParallelRegionsLeavesTheLiveGeneration) {
  loop_over_point("encoder.parallel", [&] { ingest(data(), options(embedder_)); }, 4, 4);
}

TEST_F(WriterFaults, RebuildFailingAtTheNthEmbedCallLeavesTheLiveGeneration) {
  loop_over_point("encoder.embed", [&] { rebuild(data()); }, 50, 10);
}

TEST_F(WriterFaults, RebuildFailingInsideTheEncodersParallelRegionsLeavesTheLiveGeneration) {
  loop_over_point("encoder.parallel", [&] { rebuild(data()); }, 4, 4);
}

}  // namespace
}  // namespace rag::index
