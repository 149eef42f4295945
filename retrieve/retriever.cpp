// Retriever: the reader pool and one retrieval (see retrieve.h for what it does and promises).
//
// A reader is an index::Searcher plus a read-only Catalog handle of our own (for the reranker's passages: the
// Searcher hydrates snippets, not whole chunk texts). One retrieve() call owns one reader, so the Searcher's
// one-thread-at-a-time rule holds across calls; within a call the keyword and vector sides run on two threads,
// which Searcher allows (one each of keyword_candidates and vector_candidates). A reader that saw an error is
// dropped rather than reused.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <future>
#include <mutex>
#include <sys/stat.h>

#include "common/error.h"
#include "common/log.h"
#include "retrieve/retrieve.h"

namespace rag::retrieve {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

constexpr size_t kMaxIdleReaders = 64;
constexpr size_t kMaxQueryBytes = 4096;   // as index/searcher.cpp; the dense side checks it here

void check_options(const RetrieveOptions& o) {
  if (o.k < 1 || o.k > index::kMaxK) fail(Errc::kInvalidArgument, "k: {} is out of range [1, {}]", o.k, index::kMaxK);
  if (o.candidates < 1 || o.candidates > kMaxCandidates)
    fail(Errc::kInvalidArgument, "candidates: {} is out of range [1, {}]", o.candidates, kMaxCandidates);
  if (!(o.bm25_weight >= 0 && o.bm25_weight <= 1))
    fail(Errc::kInvalidArgument, "bm25 weight: {} is out of range [0, 1]", o.bm25_weight);
  if (o.rrf_k < 1 || o.rrf_k > 100000) fail(Errc::kInvalidArgument, "rrf k: {} is out of range [1, 100000]", o.rrf_k);
  if (o.rerank_top_n < 0 || o.rerank_top_n > 2 * kMaxCandidates)
    fail(Errc::kInvalidArgument, "rerank top n: {} is out of range [0, {}]", o.rerank_top_n, 2 * kMaxCandidates);
  if (o.rerank_batch < 1 || o.rerank_batch > 1024)
    fail(Errc::kInvalidArgument, "rerank batch: {} is out of range [1, 1024]", o.rerank_batch);
  if (!(o.rerank_budget_ms >= 0) || !std::isfinite(o.rerank_budget_ms))
    fail(Errc::kInvalidArgument, "rerank budget: {} ms must be 0 (none) or positive", o.rerank_budget_ms);
}

void check_query(std::string_view query) {
  if (query.size() > kMaxQueryBytes)
    fail(Errc::kInvalidArgument, "query: {} bytes is longer than the {} allowed", query.size(), kMaxQueryBytes);
  if (query.find_first_not_of(" \t\r\n") == std::string_view::npos) fail(Errc::kInvalidArgument, "query: is empty");
}

std::string mismatch_message(const std::string& data_dir, const std::string& ours, const std::string& index) {
  return fmt::format(
      "{}: the embedder {} is not the one the index's vectors were made with ({}); pass that model as "
      "--embed-model, or re-embed with this one: rag ingest --reembed --embed-model FILE --data {}",
      data_dir, ours, index, data_dir);
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

struct Reader {
  int64_t generation = 0;
  std::unique_ptr<index::Searcher> searcher;
  std::unique_ptr<index::Catalog> catalog;
};

struct Retriever::Pool {
  std::string data_dir;
  std::mutex mutex;
  std::vector<std::unique_ptr<Reader>> idle;
  std::atomic<bool> warned_no_vectors{false};

  std::unique_ptr<Reader> open() {
    auto r = std::make_unique<Reader>();
    // Tagged with the generation the Searcher opened, not a separate read of CURRENT: a writer publishing
    // between the two reads made the reply name the generation before the one that answered it.
    r->searcher = std::make_unique<index::Searcher>(data_dir);
    r->generation = r->searcher->generation();
    r->catalog = std::make_unique<index::Catalog>(index::catalog_path(data_dir), index::Catalog::Mode::kRead);
    return r;
  }

  std::unique_ptr<Reader> take() {
    const int64_t live = index::current_generation(data_dir);
    {
      std::lock_guard lock(mutex);
      while (!idle.empty()) {
        std::unique_ptr<Reader> r = std::move(idle.back());
        idle.pop_back();
        if (r->generation == live) return r;
        // Older generation: dropped here (its files may already be gone).
      }
    }
    return open();
  }

  void give_back(std::unique_ptr<Reader> r) {
    std::lock_guard lock(mutex);
    if (idle.size() < kMaxIdleReaders) idle.push_back(std::move(r));
  }
};

std::shared_ptr<const index::Embedder> open_recorded_embedder(const std::string& data_dir) {
  if (!exists(index::catalog_path(data_dir))) return nullptr;
  index::Catalog catalog(index::catalog_path(data_dir), index::Catalog::Mode::kRead);
  std::optional<std::string> path = catalog.meta("embedder_path");
  if (!path || path->empty()) return nullptr;
  if (!exists(*path))
    fail(Errc::kNotFound, "{}: the embedder this data dir records, {}, is gone; pass --embed-model FILE", data_dir,
         *path);
  return index::open_embedder(*path);
}

Retriever::Retriever(RetrieverConfig config) : config_(std::move(config)), pool_(std::make_unique<Pool>()) {
  pool_->data_dir = config_.data_dir;
  std::unique_ptr<Reader> r = pool_->open();
  if (config_.embedder && r->searcher->has_vectors()) {
    std::string theirs = r->searcher->embedder_identity();
    if (theirs != config_.embedder->identity())
      throw Error(Errc::kMismatch, mismatch_message(config_.data_dir, config_.embedder->identity(), theirs));
  }
  pool_->give_back(std::move(r));
}

Retriever::~Retriever() = default;

Retrieval Retriever::retrieve(std::string_view query, const RetrieveOptions& options) const {
  const auto start = Clock::now();
  check_options(options);
  check_query(query);
  const int side_k = std::max(options.candidates, options.k);

  index::SearchOptions search;
  search.k = side_k;
  if (options.principal) search.principals = principal_strings(*options.principal, config_.default_group);
  search.snippet_bytes = options.snippet_bytes;
  search.highlight_begin = options.highlight_begin;
  search.highlight_end = options.highlight_end;

  std::unique_ptr<Reader> reader = pool_->take();
  index::Searcher& searcher = *reader->searcher;
  Retrieval out;

  // Which sides run.
  bool want_vector = options.mode != Mode::kBm25;
  if (want_vector && !config_.embedder) {
    if (options.mode == Mode::kDense)
      fail(Errc::kUnsupported, "dense retrieval needs an embedding model (--embed-model FILE); none is configured");
    out.notes.push_back("no embedding model configured: BM25 only");
    want_vector = false;
  } else if (want_vector && !searcher.has_vectors()) {
    if (options.mode == Mode::kDense)
      fail(Errc::kUnsupported, "{}: the index has no vectors; run rag ingest --embed-model FILE --data {}",
           config_.data_dir, config_.data_dir);
    out.notes.push_back("the index has no vectors (rag ingest --embed-model FILE): BM25 only");
    want_vector = false;
  }
  if (!want_vector && options.mode == Mode::kHybrid && !pool_->warned_no_vectors.exchange(true))
    spdlog::warn("retrieve: hybrid mode runs BM25 only: {}", out.notes.back());
  const bool want_keyword = options.mode != Mode::kDense;
  out.mode = want_vector ? options.mode : Mode::kBm25;
  if (want_vector) {
    out.models.embedder = config_.embedder->identity();
    search.embedder_identity = config_.embedder->identity();
  }

  // The two sides: vectors on a second thread (embedding the query overlaps BM25), keywords on this one.
  std::vector<index::ScoredChunk> bm25, vector;
  std::future<void> vector_side;
  if (want_vector) {
    auto run = [&] {
      auto t0 = Clock::now();
      std::vector<float> q = config_.embedder->embed({std::string(query)});
      out.timings.embed_ms = ms_since(t0);
      auto t1 = Clock::now();
      vector = searcher.vector_candidates(std::span<const float>(q), search);
      out.timings.vector_ms = ms_since(t1);
    };
    if (want_keyword) {
      vector_side = std::async(std::launch::async, run);
    } else {
      run();
    }
  }
  if (want_keyword) {
    // The future's destructor joins the vector thread if the keyword side throws, so `search` and `vector`
    // outlive it; its own exception, if any, is then dropped in favour of this one.
    auto t0 = Clock::now();
    bm25 = searcher.keyword_candidates(query, search);
    out.timings.bm25_ms = ms_since(t0);
  }
  if (vector_side.valid()) vector_side.get();  // rethrows the vector side's error here, on the caller's thread

  // Fuse (single-side modes keep the side's scores as they are).
  auto t_fuse = Clock::now();
  std::vector<Candidate> fused;
  if (want_keyword && want_vector) {
    fused = fuse(bm25, vector, options.fusion, options.bm25_weight, options.rrf_k);
  } else {
    const bool keyword = want_keyword;
    const auto& side = keyword ? bm25 : vector;
    fused.reserve(side.size());
    for (size_t i = 0; i < side.size(); ++i) {
      Candidate& c = fused.emplace_back();
      c.chunk_id = side[i].chunk_id;
      (keyword ? c.bm25_rank : c.vector_rank) = static_cast<int>(i + 1);
      (keyword ? c.bm25_score : c.vector_score) = side[i].score;
      c.fused_rank = static_cast<int>(i + 1);
      c.fused_score = c.score = side[i].score;
    }
  }
  out.timings.fuse_ms = ms_since(t_fuse);

  // Rerank the top N of the fused list.
  if (config_.reranker && options.rerank_top_n > 0 && !fused.empty()) {
    auto t0 = Clock::now();
    const size_t n = std::min(fused.size(), static_cast<size_t>(options.rerank_top_n));
    std::vector<std::string> passages;
    passages.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      // A chunk deleted since the search gets an empty passage; hydrate() drops it below.
      std::optional<index::ChunkRecord> chunk = reader->catalog->chunk(fused[i].chunk_id);
      std::optional<index::DocumentRecord> doc = chunk ? reader->catalog->document(chunk->doc_id) : std::nullopt;
      passages.push_back(chunk && doc ? index::embed_passage(doc->title, chunk->heading_path, chunk->text)
                                      : std::string());
    }
    rerank::RerankOptions ro;
    ro.batch = options.rerank_batch;
    ro.max_passage_bytes = options.rerank_passage_bytes;
    ro.budget_ms = options.rerank_budget_ms;
    rerank::RerankResult rr = rerank::rerank(*config_.reranker, query, passages, ro);
    const size_t m = rr.scores.size();
    for (size_t i = 0; i < m; ++i) fused[i].rerank_score = fused[i].score = rr.scores[i];
    // Scored ones first by score (ties keep fused order); the rest stay below in fused order.
    std::stable_sort(fused.begin(), fused.begin() + static_cast<std::ptrdiff_t>(m),
                     [](const Candidate& a, const Candidate& b) { return a.rerank_score > b.rerank_score; });
    for (size_t i = 0; i < m; ++i) fused[i].rerank_rank = static_cast<int>(i + 1);
    out.reranked = static_cast<int>(m);
    out.rerank_cut = rr.cut;
    out.models.reranker = config_.reranker->name();
    if (rr.cut)
      out.notes.push_back(fmt::format("rerank budget of {} ms spent: {} of {} candidates reranked, the rest in fused order",
                                      options.rerank_budget_ms, m, n));
    out.timings.rerank_ms = ms_since(t0);
  }

  // Hydrate the top k. A chunk deleted by a writer since the candidate searches is skipped by hydrate(); then
  // the next candidates fill its place, window by window, so the usual case hydrates exactly k.
  auto t_hydrate = Clock::now();
  index::SearchOptions hydrate_options = search;
  size_t next = 0;
  while (out.candidates.size() < static_cast<size_t>(options.k) && next < fused.size()) {
    const size_t begin = next;
    const size_t end = std::min(fused.size(), begin + static_cast<size_t>(options.k) - out.candidates.size());
    std::vector<index::ScoredChunk> window;
    for (size_t i = begin; i < end; ++i) window.push_back({fused[i].chunk_id, fused[i].score});
    hydrate_options.k = static_cast<int>(window.size());
    std::vector<index::SearchHit> hits = searcher.hydrate(window, query, hydrate_options);
    size_t i = begin;
    for (const index::SearchHit& hit : hits) {
      while (i < end && fused[i].chunk_id != hit.chunk_id) ++i;  // hydrate() keeps the order and may skip
      if (i == end) break;
      Candidate c = std::move(fused[i++]);
      c.doc_id = hit.doc_id;
      c.path = hit.path;
      c.title = hit.title;
      c.page = hit.page;
      c.heading = hit.heading;
      c.snippet = hit.snippet;
      out.candidates.push_back(std::move(c));
    }
    next = end;
  }
  if (options.with_text) {
    for (Candidate& c : out.candidates) {
      std::optional<index::ChunkRecord> chunk = reader->catalog->chunk(c.chunk_id);
      if (chunk) c.text = std::move(chunk->text);
    }
  }
  out.generation = reader->generation;
  out.timings.hydrate_ms = ms_since(t_hydrate);
  out.timings.total_ms = ms_since(start);
  pool_->give_back(std::move(reader));
  spdlog::debug("retrieve: mode {} k {} -> {} candidates; ms embed {:.2f} bm25 {:.2f} vector {:.2f} fuse {:.2f} rerank "
                "{:.2f} hydrate {:.2f} total {:.2f}",
                mode_name(out.mode), options.k, out.candidates.size(), out.timings.embed_ms, out.timings.bm25_ms,
                out.timings.vector_ms, out.timings.fuse_ms, out.timings.rerank_ms, out.timings.hydrate_ms,
                out.timings.total_ms);
  return out;
}

}  // namespace rag::retrieve
