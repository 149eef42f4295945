// The one place the service retrieves. Today: the index's BM25 Searcher with the principal's ACL strings
// as a filter, chunk text from the catalog. When retrieve/retrieve.h lands (hybrid BM25 + vectors, fusion,
// rerank) this file switches to its Retriever; callers do not change.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/server.h"

namespace rag::server {

struct Retrieved {
  std::vector<Citation> hits;      // best first; n = rank (1-based)
  std::vector<std::string> texts;  // chunk text of each hit (empty unless asked for)
  double retrieve_ms = 0;
  double rerank_ms = 0;
  Models models;                   // embedder and reranker used ("none" when not)
  int64_t generation = 0;
};

class Retrieval {
 public:
  explicit Retrieval(std::string data_dir);
  ~Retrieval();
  // `principals` must be the asker's ACL strings: retrieval never runs unfiltered from the service.
  Retrieved retrieve(const std::string& query, const std::vector<std::string>& principals, int k, bool with_text);

 private:
  struct Reader;
  std::unique_ptr<Reader> acquire();
  void release(std::unique_ptr<Reader> reader);

  std::string data_dir_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Reader>> idle_;  // Searchers are one-thread-at-a-time: a pool, one per request
};

}  // namespace rag::server
