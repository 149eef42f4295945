#include "server/retrieval.h"

#include "common/error.h"
#include "retrieve/retrieve.h"

namespace rag::server {

Retrieval::Retrieval(std::string data_dir, std::shared_ptr<const index::Embedder> embedder,
                     std::shared_ptr<const rerank::Reranker> reranker, std::string default_group)
    : data_dir_(std::move(data_dir)), embedder_(std::move(embedder)), reranker_(std::move(reranker)),
      default_group_(std::move(default_group)) {}

Retrieval::~Retrieval() = default;

retrieve::Retriever& Retrieval::retriever() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!retriever_) {
    retrieve::RetrieverConfig config;
    config.data_dir = data_dir_;
    config.embedder = embedder_;
    config.reranker = reranker_;
    config.default_group = default_group_;
    retriever_ = std::make_unique<retrieve::Retriever>(config);  // kNotFound (run rag ingest) without an index
  }
  return *retriever_;
}

std::vector<std::string> Retrieval::principal_strings(const Principal& principal) const {
  return retrieve::principal_strings({principal.user, principal.groups}, default_group_);
}

Retrieved Retrieval::retrieve(const std::string& query, const Principal& principal, int k, bool with_text) {
  retrieve::RetrieveOptions options;
  options.k = k;
  options.mode = retrieve::Mode::kHybrid;  // BM25 alone when there is no embedder or no vectors
  options.principal = retrieve::Principal{principal.user, principal.groups};  // never unset here
  options.with_text = with_text;
  options.highlight_begin = "";
  options.highlight_end = "";
  options.rerank_top_n = reranker_ ? std::max(k, 20) : 0;
  retrieve::Retrieval found = retriever().retrieve(query, options);
  Retrieved out;
  out.generation = found.generation;
  out.rerank_ms = found.timings.rerank_ms;
  out.retrieve_ms = std::max(0.0, found.timings.total_ms - found.timings.rerank_ms);
  out.models.embedder = found.models.embedder;
  out.models.reranker = found.models.reranker;
  for (size_t i = 0; i < found.candidates.size(); ++i) {
    retrieve::Candidate& c = found.candidates[i];
    Citation hit;
    hit.n = static_cast<int>(i + 1);
    hit.doc_id = c.doc_id;
    hit.chunk_id = c.chunk_id;
    hit.path = c.path;
    hit.title = c.title;
    hit.page = c.page;
    hit.heading = c.heading;
    hit.snippet = c.snippet;
    hit.score = c.score;
    hit.bm25_score = c.bm25_rank > 0 ? std::optional<double>(c.bm25_score) : std::nullopt;
    hit.vector_score = c.vector_rank > 0 ? std::optional<double>(c.vector_score) : std::nullopt;
    if (c.rerank_rank > 0) hit.rerank_score = c.rerank_score;
    out.hits.push_back(std::move(hit));
    if (with_text) out.texts.push_back(std::move(c.text));
  }
  return out;
}

}  // namespace rag::server
