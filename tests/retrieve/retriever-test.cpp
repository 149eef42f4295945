// The Retriever: what runs without models, what each candidate carries, the embedder-mismatch error, the rerank
// budget, and many threads on one Retriever.
#include <gtest/gtest.h>

#include <thread>

#include "common/error.h"
#include "retrieve/retrieve.h"
#include "tests/retrieve/fakes.h"
#include "tests/support/support.h"

namespace rag::retrieve {
namespace {

const std::pair<const char*, const char*> kDocs[] = {
    {"vacation.txt", "Employees receive twenty paid vacation days per year. Vacation requests go to your manager."},
    {"travel.txt", "Travel expenses: the per diem limit is 60 euros. Book trains over flights for short trips."},
    {"oncall.txt", "On-call escalation: page the secondary after 15 minutes without an acknowledgement."},
    {"holiday.txt", "Public holidays are listed each year; days off in lieu when a holiday falls on a weekend."},
    {"security.txt", "Report phishing to security. Never share passwords, even with the help desk."},
};

std::string build(const test::TempDir& dir, std::shared_ptr<const index::Embedder> embedder) {
  for (const auto& [name, text] : kDocs) test::write_file(dir / "docs/" + name, text);
  index::IngestOptions options;
  options.roots = {dir / "docs"};
  options.threads = 1;
  options.embedder = std::move(embedder);
  index::ingest(dir / "data", options);
  return dir / "data";
}

Errc code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no error";
  return Errc::kInternal;
}

TEST(Retriever, WithoutModelsHybridIsBm25AndSaysSo) {
  test::TempDir dir;
  const std::string data = build(dir, nullptr);
  Retriever retriever({data, nullptr, nullptr});
  RetrieveOptions o;
  o.k = 3;
  Retrieval r = retriever.retrieve("vacation days", o);
  EXPECT_EQ(r.mode, Mode::kBm25);
  EXPECT_EQ(r.models.embedder, "none");
  EXPECT_EQ(r.models.reranker, "none");
  ASSERT_FALSE(r.notes.empty());
  EXPECT_NE(r.notes[0].find("BM25 only"), std::string::npos);
  // Same order and scores as keyword search.
  index::SearchOptions so;
  so.k = 3;
  auto hits = index::search(data, "vacation days", so);
  ASSERT_EQ(r.candidates.size(), hits.size());
  for (size_t i = 0; i < hits.size(); ++i) {
    EXPECT_EQ(r.candidates[i].chunk_id, hits[i].chunk_id);
    EXPECT_EQ(r.candidates[i].path, hits[i].path);
    EXPECT_DOUBLE_EQ(r.candidates[i].bm25_score, hits[i].score);
    EXPECT_EQ(r.candidates[i].bm25_rank, static_cast<int>(i + 1));
    EXPECT_EQ(r.candidates[i].vector_rank, 0);
    EXPECT_EQ(r.candidates[i].rerank_rank, 0);
  }
  EXPECT_NE(r.candidates[0].snippet.find("**"), std::string::npos);
  EXPECT_EQ(r.timings.vector_ms, 0);
  // Dense needs an embedder.
  o.mode = Mode::kDense;
  EXPECT_EQ(code_of([&] { retriever.retrieve("vacation", o); }), Errc::kUnsupported);
}

TEST(Retriever, AnEmbedderOverAnIndexWithoutVectorsFallsBackToo) {
  test::TempDir dir;
  const std::string data = build(dir, nullptr);
  Retriever retriever({data, std::make_shared<const fake::BagEmbedder>(), nullptr});
  Retrieval r = retriever.retrieve("vacation days", {});
  EXPECT_EQ(r.mode, Mode::kBm25);
  EXPECT_EQ(r.models.embedder, "none");
  ASSERT_FALSE(r.notes.empty());
  EXPECT_NE(r.notes[0].find("no vectors"), std::string::npos);
  RetrieveOptions dense;
  dense.mode = Mode::kDense;
  EXPECT_EQ(code_of([&] { retriever.retrieve("vacation", dense); }), Errc::kUnsupported);
}

TEST(Retriever, HybridCandidatesCarryBothSidesAndTheModels) {
  test::TempDir dir;
  auto embedder = std::make_shared<const fake::BagEmbedder>();
  Retriever retriever({build(dir, embedder), embedder, nullptr});
  RetrieveOptions o;
  o.k = 5;
  Retrieval r = retriever.retrieve("vacation days per year", o);
  EXPECT_EQ(r.mode, Mode::kHybrid);
  EXPECT_EQ(r.models.embedder, embedder->identity());
  EXPECT_EQ(r.models.reranker, "none");
  ASSERT_FALSE(r.candidates.empty());
  EXPECT_EQ(r.candidates[0].path.substr(r.candidates[0].path.rfind('/') + 1), "vacation.txt");
  EXPECT_GT(r.candidates[0].bm25_rank, 0);
  EXPECT_GT(r.candidates[0].vector_rank, 0);
  bool vector_only = false;
  for (size_t i = 0; i < r.candidates.size(); ++i) {
    const Candidate& c = r.candidates[i];
    EXPECT_EQ(c.fused_rank, static_cast<int>(i + 1));
    EXPECT_EQ(c.score, c.fused_score);
    EXPECT_GT(c.doc_id, 0);
    vector_only |= c.bm25_rank == 0 && c.vector_rank > 0;
    if (i > 0) {
      EXPECT_GE(r.candidates[i - 1].fused_score, c.fused_score);
    }
  }
  // Every document shares some hashed coordinate with the query, so the vector side adds chunks BM25 missed.
  EXPECT_TRUE(vector_only);
  EXPECT_GE(r.timings.total_ms, r.timings.fuse_ms);
}

TEST(Retriever, EmbedderMismatchIsAClearError) {
  test::TempDir dir;
  const std::string data = build(dir, std::make_shared<const fake::BagEmbedder>("model-a/mean/d24/1"));
  try {
    Retriever retriever({data, std::make_shared<const fake::BagEmbedder>("model-b/mean/d24/2"), nullptr});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kMismatch);
    EXPECT_NE(std::string(e.what()).find("model-a/mean/d24/1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("model-b/mean/d24/2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--embed-model"), std::string::npos) << e.what();
  }
}

TEST(Retriever, EmbedderChangedUnderARunningRetrieverSurfacesOnTheNextQuery) {
  test::TempDir dir;
  auto a = std::make_shared<const fake::BagEmbedder>("model-a/mean/d24/1");
  const std::string data = build(dir, a);
  Retriever retriever({data, a, nullptr});
  EXPECT_EQ(retriever.retrieve("vacation", {}).mode, Mode::kHybrid);
  index::IngestOptions reembed;
  reembed.embedder = std::make_shared<const fake::BagEmbedder>("model-b/mean/d24/2");
  reembed.reembed = true;
  index::ingest(data, reembed);
  EXPECT_EQ(code_of([&] { retriever.retrieve("vacation", {}); }), Errc::kMismatch);
}

TEST(Retriever, RerankerReordersTheTopNAndTheBudgetCutIsReported) {
  test::TempDir dir;
  auto embedder = std::make_shared<const fake::BagEmbedder>();
  const std::string data = build(dir, embedder);
  Retriever plain({data, embedder, nullptr});
  Retriever reranked({data, embedder, std::make_shared<const fake::OverlapReranker>()});
  RetrieveOptions o;
  o.k = 5;
  o.rerank_top_n = 3;
  Retrieval before = plain.retrieve("holiday days year", o);
  Retrieval after = reranked.retrieve("holiday days year", o);
  EXPECT_EQ(after.models.reranker, "fake-overlap");
  EXPECT_EQ(after.reranked, 3);
  EXPECT_FALSE(after.rerank_cut);
  ASSERT_EQ(before.candidates.size(), after.candidates.size());
  // The top 3 are the fused top 3 in rerank order; the rest keep their fused places.
  std::vector<int64_t> top_before, top_after;
  for (int i = 0; i < 3; ++i) {
    top_before.push_back(before.candidates[static_cast<size_t>(i)].chunk_id);
    top_after.push_back(after.candidates[static_cast<size_t>(i)].chunk_id);
    EXPECT_EQ(after.candidates[static_cast<size_t>(i)].rerank_rank, i + 1);
    EXPECT_EQ(after.candidates[static_cast<size_t>(i)].score, after.candidates[static_cast<size_t>(i)].rerank_score);
    if (i > 0) {
      EXPECT_GE(after.candidates[static_cast<size_t>(i - 1)].rerank_score, after.candidates[static_cast<size_t>(i)].rerank_score);
    }
  }
  std::sort(top_before.begin(), top_before.end());
  std::sort(top_after.begin(), top_after.end());
  EXPECT_EQ(top_before, top_after);
  for (size_t i = 3; i < after.candidates.size(); ++i) {
    EXPECT_EQ(after.candidates[i].chunk_id, before.candidates[i].chunk_id);
    EXPECT_EQ(after.candidates[i].rerank_rank, 0);
  }

  // A reranker slower than the budget: the first batch runs, the rest keep fused order, the result says so.
  Retriever slow({data, embedder, std::make_shared<const fake::OverlapReranker>(20)});
  o.rerank_batch = 1;
  o.rerank_budget_ms = 1;
  Retrieval cut = slow.retrieve("holiday days year", o);
  EXPECT_TRUE(cut.rerank_cut);
  EXPECT_EQ(cut.reranked, 1);
  EXPECT_EQ(cut.candidates[0].rerank_rank, 1);
  for (size_t i = 1; i < cut.candidates.size(); ++i) {
    EXPECT_EQ(cut.candidates[i].chunk_id, before.candidates[i].chunk_id);
    EXPECT_EQ(cut.candidates[i].rerank_rank, 0);
  }
  ASSERT_FALSE(cut.notes.empty());
  EXPECT_NE(cut.notes.back().find("budget"), std::string::npos);
}

TEST(Retriever, BadOptionsAreInvalidArguments) {
  test::TempDir dir;
  Retriever retriever({build(dir, nullptr), nullptr, nullptr});
  auto with = [](auto edit) {
    RetrieveOptions o;
    edit(o);
    return o;
  };
  const RetrieveOptions bad[] = {
      with([](RetrieveOptions& o) { o.k = 0; }),           with([](RetrieveOptions& o) { o.candidates = 0; }),
      with([](RetrieveOptions& o) { o.bm25_weight = 1.5; }), with([](RetrieveOptions& o) { o.rrf_k = 0; }),
      with([](RetrieveOptions& o) { o.rerank_top_n = -1; }), with([](RetrieveOptions& o) { o.rerank_budget_ms = -1; }),
      with([](RetrieveOptions& o) { o.principal = Principal{"a b", {}}; }),
  };
  for (const auto& o : bad) EXPECT_EQ(code_of([&] { retriever.retrieve("vacation", o); }), Errc::kInvalidArgument);
  EXPECT_EQ(code_of([&] { retriever.retrieve("  ", {}); }), Errc::kInvalidArgument);
  EXPECT_EQ(code_of([&] { Retriever none({dir / "nothing", nullptr, nullptr}); }), Errc::kNotFound);
}

TEST(Retriever, ManyThreadsOnOneRetrieverAgreeWithOne) {
  test::TempDir dir;
  auto embedder = std::make_shared<const fake::BagEmbedder>();
  Retriever retriever({build(dir, embedder), embedder, std::make_shared<const fake::OverlapReranker>()});
  const std::vector<std::string> queries = {"vacation days", "per diem limit", "phishing passwords", "holiday weekend"};
  std::vector<std::vector<int64_t>> expected;
  for (const auto& q : queries) {
    std::vector<int64_t> ids;
    for (const auto& c : retriever.retrieve(q, {}).candidates) ids.push_back(c.chunk_id);
    expected.push_back(ids);
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        size_t q = static_cast<size_t>(t + i) % queries.size();
        std::vector<int64_t> ids;
        for (const auto& c : retriever.retrieve(queries[q], {}).candidates) ids.push_back(c.chunk_id);
        if (ids != expected[q]) ++mismatches;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace rag::retrieve
