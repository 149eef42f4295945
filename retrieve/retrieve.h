// Retrieve: a question → the chunks to answer it from, best first, readable by the asking principal.
//
//   query ─┬─ (caller's thread)  BM25 candidates (Xapian, ACL filter terms) ───────────────┐
//          └─ (second thread)    embed query ─▶ vector candidates (FAISS, ACL selector) ───┴─▶ fuse ─▶ rerank
//                                                                       top N by the cross-encoder ─┘     │
//                                                              hydrate the top k (path, title, page, snippet)
//
// Modes: bm25 (keyword side only), dense (vector side only), hybrid (both, fused). Each side takes
// `candidates` chunks. Hybrid without an embedder, or over an index without vectors, runs BM25 alone and says
// so (Retrieval::mode is kBm25, models.embedder is "none", a note says why); dense without one is an error.
//
// Permissions (DESIGN.md "Permissions"). A Principal is a user and its groups; it becomes the principal strings
// "user:U", "group:G"... that document ACLs list, plus index::kNoAclPrincipal ("acl:none", carried by documents
// ingested with an empty ACL) when the principal holds the default group: documents without an ACL are readable
// only by holders of the default group. Both candidate searches filter by these strings before ranking, so a
// principal's top k is never starved by documents it may not read, and nothing it may not read reaches fusion,
// the reranker or the result. No principal (RetrieveOptions::principal unset) means no filter: local admin use
// (`rag search` without --as); the service must always set one.
// The default group is RetrieverConfig::default_group: "everyone" unless configured; the CLI takes
// --default-group and else $RAG_DEFAULT_GROUP (default_group_from_env()).
//
// Fusion (hybrid). Both kinds keep each candidate's rank and score on each side:
//   weighted (default)  fused = w · minmax(bm25) + (1 − w) · minmax(vector); a side's scores are min-max
//                       normalised over that side's candidate list (all equal → 1); absent on a side → 0.
//   rrf                 fused = w / (rrf_k + bm25_rank) + (1 − w) / (rrf_k + vector_rank); absent → 0 term.
//                       w = 0.5 is plain reciprocal rank fusion (up to a factor 2).
// Ties in the fused score go to the better BM25 rank, then the better vector rank, then the lower chunk id, so
// an order is reproducible. w is RetrieveOptions::bm25_weight, default kDefaultBm25Weight (0.8): a weak dense
// side must not drag BM25 down (USERS.md "Hybrid fusion pitfalls"). Published SciFact figures with a weak dense
// model (dense alone nDCG@10 0.21): BM25 0.661, RRF k=60 0.437, weighted 0.5/0.5 0.666. Here, with the weakest
// dense side possible (a random-weight embedder, dense alone 0.002), on SciFact train: BM25 0.6856, weighted
// 0.5 0.6078, weighted 0.8 0.6855, RRF k=60 0.4317 (all numbers in retrieve/fusion.cpp's header).
//
// Reranking. With a reranker and rerank_top_n > 0, the top rerank_top_n fused candidates (title + text, cut to
// rerank_passage_bytes) are scored by the cross-encoder in batches within rerank_budget_ms; scored candidates
// come first by rerank score, the rest keep their fused order below them and Retrieval::rerank_cut says so.
// Without a reranker the fused order stands and models.reranker is "none".
//
// Thread safety: a Retriever is safe to share between threads; retrieve() may be called concurrently. It keeps
// a pool of open index readers (index::Searcher plus a catalog handle), one taken per call and returned after,
// created on demand; readers of an older generation than <data>/CURRENT are dropped when taken, so a rebuild
// is picked up without a restart. Each call uses at most two threads (its own and one for the vector side).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "index/index.h"
#include "rerank/rerank.h"

namespace rag::retrieve {

// ---- principals ---------------------------------------------------------------------------------------

struct Principal {
  std::string user;                  // "ann": becomes "user:ann"
  std::vector<std::string> groups;   // "eng": becomes "group:eng"
};

inline constexpr std::string_view kDefaultGroup = "everyone";

// Parses USER[:GROUP,GROUP...] ("ann", "ann:eng,ops"). Names are 1..200 bytes of printable non-space
// characters other than ':' and ','; an empty user or group, or a stray separator, is kInvalidArgument naming
// the part at fault and showing the expected form.
Principal parse_principal(std::string_view text);

// The principal strings a search filters by: "user:U", one "group:G" per group, and index::kNoAclPrincipal
// when `default_group` (non-empty) is among the groups. Sorted, without duplicates.
std::vector<std::string> principal_strings(const Principal& principal, std::string_view default_group);

// $RAG_DEFAULT_GROUP when set and non-empty, else kDefaultGroup.
std::string default_group_from_env();

// ---- options and results ------------------------------------------------------------------------------

enum class Mode { kBm25, kDense, kHybrid };
std::string_view mode_name(Mode mode);   // "bm25", "dense", "hybrid"
Mode parse_mode(std::string_view name);  // kInvalidArgument for anything else, listing the three

enum class Fusion { kWeighted, kRrf };
std::string_view fusion_name(Fusion fusion);   // "weighted", "rrf"
Fusion parse_fusion(std::string_view name);

inline constexpr double kDefaultBm25Weight = 0.8;
inline constexpr int kMaxCandidates = 1000;   // per side

struct RetrieveOptions {
  int k = 10;                             // results wanted, 1..index::kMaxK
  Mode mode = Mode::kHybrid;
  // The asking principal; unset = no permission filter (local admin use only).
  std::optional<Principal> principal;
  int candidates = 100;                   // taken from each side, 1..kMaxCandidates; raised to k when below it
  Fusion fusion = Fusion::kWeighted;
  double bm25_weight = kDefaultBm25Weight; // w above, in [0, 1]; the vector side gets 1 − w
  int rrf_k = 60;                         // >= 1
  int rerank_top_n = 50;                  // fused candidates the reranker scores; 0 = no reranking
  int rerank_batch = 16;                  // pairs per reranker call
  size_t rerank_passage_bytes = 2000;     // passage cut before the reranker (title + "\n" + text)
  double rerank_budget_ms = 0;            // 0 = no budget; see rerank::RerankOptions::budget_ms
  bool with_text = false;                 // fill Candidate::text with the chunk's whole text (for prompts)
  size_t snippet_bytes = 240;             // as index::SearchOptions; 0 = no snippet (faster)
  std::string highlight_begin = "**";
  std::string highlight_end = "**";
};

// One retrieved chunk. Ranks are 1-based within their list; 0 means the chunk was not in that list (its score
// is then 0 and meaningless).
struct Candidate {
  int64_t chunk_id = 0;
  int64_t doc_id = 0;
  std::string path;
  std::string title;
  int page = 0;             // 1-based PDF page; 0 where the format has none
  std::string heading;      // heading path, may be empty
  std::string snippet;      // plain text with matches between the highlight markers; empty if snippet_bytes is 0
  std::string text;         // the chunk's text when RetrieveOptions::with_text; else empty
  int bm25_rank = 0;
  double bm25_score = 0;    // BM25 (higher is better)
  int vector_rank = 0;
  double vector_score = 0;  // similarity from the vector index (inner product of unit vectors: cosine)
  int fused_rank = 0;       // rank after fusion (single-side modes: the side's rank)
  double fused_score = 0;   // see "Fusion" above; single-side modes: the side's score
  int rerank_rank = 0;      // 0 when not reranked (no reranker, below top N, or cut by the budget)
  double rerank_score = 0;  // the cross-encoder's logit
  double score = 0;         // what the final order is by: rerank_score when reranked, else fused_score
};

struct RetrievalModels {
  std::string embedder = "none";   // index::Embedder identity, or "none" when the vector side did not run
  std::string reranker = "none";   // rerank::Reranker::name(), or "none" when reranking did not run
};

// Milliseconds per stage; 0 for a stage that did not run. Embed and vector run beside bm25, so total is less
// than the sum.
struct RetrievalTimings {
  double embed_ms = 0, bm25_ms = 0, vector_ms = 0, fuse_ms = 0, rerank_ms = 0, hydrate_ms = 0, total_ms = 0;
};

struct Retrieval {
  std::vector<Candidate> candidates;   // best first, at most k
  Mode mode = Mode::kBm25;             // the mode that ran (hybrid falls back to bm25 without vectors)
  int64_t generation = 0;              // the index generation that answered (for cache keys)
  RetrievalModels models;
  RetrievalTimings timings;
  int reranked = 0;                    // candidates scored by the reranker
  bool rerank_cut = false;             // the rerank budget ran out before rerank_top_n were scored
  std::vector<std::string> notes;      // one line each, for the response and logs: fallbacks, cuts
};

// ---- fusion (pure functions, exposed for tests and the benchmark) ------------------------------------------

// Fuses two best-first lists (chunk ids unique within each) as described above. Returns every chunk on either
// side, best first, with bm25_*/vector_*/fused_* and score filled (nothing else). Either list may be empty.
std::vector<Candidate> fuse(const std::vector<index::ScoredChunk>& bm25, const std::vector<index::ScoredChunk>& vector,
                            Fusion fusion, double bm25_weight, int rrf_k);

// ---- the retriever -----------------------------------------------------------------------------------------

struct RetrieverConfig {
  std::string data_dir;
  std::shared_ptr<const index::Embedder> embedder;   // null: BM25 only (hybrid falls back, dense fails)
  std::shared_ptr<const rerank::Reranker> reranker;  // null: fused order
  std::string default_group = std::string(kDefaultGroup);  // empty: no principal reads documents without ACL
};

// The embedder a data dir records (catalog meta "embedder_path", set by `rag ingest --embed-model FILE`), opened;
// null when the data dir records none. kNotFound naming the recorded path (and saying to pass --embed-model)
// when the file is gone.
std::shared_ptr<const index::Embedder> open_recorded_embedder(const std::string& data_dir);

class Retriever {
 public:
  // Opens one reader to check the data dir: kNotFound (run rag ingest) when it has no index; kMismatch naming
  // both identities and saying to run `rag rebuild` (or pass the model the index was built with) when the
  // embedder differs from the one the index's vectors were made with.
  explicit Retriever(RetrieverConfig config);
  ~Retriever();
  Retriever(const Retriever&) = delete;
  Retriever& operator=(const Retriever&) = delete;

  // Thread-safe. kInvalidArgument for a bad option or query (empty, too long); kUnsupported for dense without
  // an embedder or vectors; kMismatch as above when a rebuild changed the index's embedder.
  Retrieval retrieve(std::string_view query, const RetrieveOptions& options) const;

  const RetrieverConfig& config() const { return config_; }

 private:
  struct Pool;
  RetrieverConfig config_;
  std::unique_ptr<Pool> pool_;
};

// ---- evaluation ---------------------------------------------------------------------------------------------
//
// `rag eval beir`: indexes a BEIR folder into a temporary data dir (one chunk per corpus document, embedded when
// the mode needs vectors), runs every judged query through Retriever::retrieve and scores the rankings with
// index::score_rankings (loaders and metrics live in index/eval.cpp).

struct BeirEvalOptions {
  std::string mode = "bm25";   // "bm25", "dense", "hybrid" or "hybrid+rerank"
  std::string queries_path;    // empty: <dir>/queries_train.jsonl if present, else <dir>/queries.jsonl
  std::string qrels_path;      // empty: <dir>/qrels/train.tsv if present, else <dir>/qrels/test.tsv
  std::string embed_model;     // GGUF embedder; required by dense, hybrid, hybrid+rerank (--embed-model)
  std::string rerank_model;    // GGUF cross-encoder; required by hybrid+rerank (--rerank-model)
  int k = 100;                 // hits retrieved per query, 1..index::kMaxK
  RetrieveOptions retrieve;    // fusion, weights, candidates, rerank_top_n...; k, mode and snippets are set here
  std::string work_dir;        // where the temporary data dir goes; empty: $TMPDIR or /tmp
};

struct BeirEvalResult {
  std::string mode;
  index::EvalScores scores;
  RetrievalModels models;
  double index_seconds = 0;    // loading, indexing and embedding the corpus
  double seconds = 0;          // wall clock of everything
};

// kInvalidArgument for an unknown mode, and for a mode whose model is missing (naming --embed-model or
// --rerank-model); loader errors as index/index.h says.
BeirEvalResult eval_beir(const std::string& dir, const BeirEvalOptions& options);

}  // namespace rag::retrieve
