#include "server/retrieval.h"

#include <chrono>

#include "common/error.h"
#include "index/index.h"

namespace rag::server {

struct Retrieval::Reader {
  explicit Reader(const std::string& data_dir)
      : searcher(data_dir), catalog(index::catalog_path(data_dir), index::Catalog::Mode::kRead) {}
  index::Searcher searcher;
  index::Catalog catalog;
};

Retrieval::Retrieval(std::string data_dir) : data_dir_(std::move(data_dir)) {}
Retrieval::~Retrieval() = default;

std::unique_ptr<Retrieval::Reader> Retrieval::acquire() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!idle_.empty()) {
      auto reader = std::move(idle_.back());
      idle_.pop_back();
      return reader;
    }
  }
  return std::make_unique<Reader>(data_dir_);
}

void Retrieval::release(std::unique_ptr<Reader> reader) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (idle_.size() < 16) idle_.push_back(std::move(reader));
}

Retrieved Retrieval::retrieve(const std::string& query, const std::vector<std::string>& principals, int k, bool with_text) {
  Retrieved out;
  const auto start = std::chrono::steady_clock::now();
  out.generation = index::current_generation(data_dir_);
  std::unique_ptr<Reader> reader = acquire();
  index::SearchOptions options;
  options.k = k;
  options.principals = principals;  // always set: an empty list matches nothing
  options.highlight_begin = "";
  options.highlight_end = "";
  std::vector<index::SearchHit> hits;
  try {
    hits = reader->searcher.search(query, options);
    for (size_t i = 0; i < hits.size(); ++i) {
      const index::SearchHit& h = hits[i];
      Citation c;
      c.n = static_cast<int>(i + 1);
      c.doc_id = h.doc_id;
      c.chunk_id = h.chunk_id;
      c.path = h.path;
      c.title = h.title;
      c.page = h.page;
      c.heading = h.heading;
      c.snippet = h.snippet;
      c.score = h.score;
      out.hits.push_back(std::move(c));
      if (with_text) {
        std::optional<index::ChunkRecord> chunk = reader->catalog.chunk(h.chunk_id);
        out.texts.push_back(chunk ? chunk->text : std::string());
      }
    }
  } catch (...) {
    // A reader that failed mid-query may hold a broken handle: do not return it to the pool.
    throw;
  }
  release(std::move(reader));
  out.retrieve_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace rag::server
