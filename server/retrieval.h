// The one place the service retrieves: retrieve::Retriever (hybrid BM25 + vectors when the index has
// vectors and an embedder is configured, fusion, rerank), always with the asking principal set.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "index/index.h"
#include "rerank/rerank.h"
#include "server/server.h"

namespace rag::retrieve {
class Retriever;
}

namespace rag::server {

struct Retrieved {
  std::vector<Citation> hits;      // best first; n = rank (1-based)
  std::vector<std::string> texts;  // chunk text of each hit (empty unless asked for)
  double retrieve_ms = 0;          // everything but reranking
  double rerank_ms = 0;
  Models models;                   // embedder and reranker used ("none" when not)
  int64_t generation = 0;
};

class Retrieval {
 public:
  Retrieval(std::string data_dir, std::shared_ptr<const index::Embedder> embedder,
            std::shared_ptr<const rerank::Reranker> reranker, std::string default_group);
  ~Retrieval();
  Retrieved retrieve(const std::string& query, const Principal& principal, int k, bool with_text);
  // The ACL strings retrieval filters by for `principal` (acl:none included when it holds the default group).
  std::vector<std::string> principal_strings(const Principal& principal) const;

 private:
  retrieve::Retriever& retriever();

  std::string data_dir_;
  std::shared_ptr<const index::Embedder> embedder_;
  std::shared_ptr<const rerank::Reranker> reranker_;
  std::string default_group_;
  std::mutex mutex_;
  std::unique_ptr<retrieve::Retriever> retriever_;  // opened at first use: the data dir may have no index yet
};

}  // namespace rag::server
