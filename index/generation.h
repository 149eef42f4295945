// Index generations, private to index/: how a writer (ingest, rebuild) prepares gen/<n> beside the live one
// and publishes it. See generation.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "index/index.h"

namespace rag::index {

// A generation being written: gen/<n>, n above every generation on disk. Its directory is removed again
// unless publish() ran, so a writer that throws leaves the live generation as it was and nothing behind.
class PendingGeneration {
 public:
  // An empty generation, or one starting as a copy of the keyword index of generation `copy_from` (> 0).
  PendingGeneration(const std::string& data_dir, int64_t copy_from);
  ~PendingGeneration();
  PendingGeneration(const PendingGeneration&) = delete;
  PendingGeneration& operator=(const PendingGeneration&) = delete;

  int64_t number() const { return number_; }
  std::string path() const { return generation_path(data_dir_, number_); }

  // Makes every file of the generation durable, names it in CURRENT, then deletes generations beyond the
  // newest `keep` (>= 2) and purges catalog rows no kept generation holds. The writers' indexes must be
  // closed (committed) first. Returns the catalog chunk rows purged.
  int64_t publish(Catalog& catalog, int keep);

 private:
  std::string data_dir_;
  int64_t number_ = 0;
  bool published_ = false;
};

// Deletes generation folders a writer left unpublished (above CURRENT) and CURRENT.tmp. Under the write lock.
void remove_unpublished_generations(const std::string& data_dir);

// The catalog change counter generation `gen`'s keyword index reflects; -1 when it cannot be read.
int64_t generation_change(const std::string& data_dir, int64_t gen);

// Fills an empty keyword index with every live chunk of the catalog and commits it.
void keywords_from_catalog(const Catalog& catalog, KeywordIndex& keywords, const std::string& data_dir);

// Brings a copy of the keyword index of a generation reflecting `from_change` up to the catalog's counter:
// removes the chunks removed since, adds the live chunks created since, commits.
void catch_up_keywords(const Catalog& catalog, KeywordIndex& keywords, int64_t from_change,
                       const std::string& data_dir);

// A vector index over every live chunk vector of the catalog.
std::unique_ptr<VectorIndex> vectors_from_catalog(const Catalog& catalog, int dim, VectorIndexKind kind,
                                                  const VectorIndexParams& params, const std::string& data_dir);

// The embedder the data dir records (catalog meta "embedder_path"), checked against the recorded identity;
// null when it records none. Errors say what to do (kNotFound, kMismatch, or the model's own open error).
// `path_out`, when given, receives the model path.
std::shared_ptr<const Embedder> open_recorded_embedder(const Catalog& catalog, const std::string& data_dir,
                                                       std::string* path_out = nullptr);

// Embeds `texts`, checking the embedder kept its word on the shape.
std::vector<float> embed_checked(const Embedder& embedder, const std::vector<std::string>& texts);

// Embeds every live chunk without a stored vector and stores the vectors, committing every 1024 chunks.
// Returns the chunks embedded.
int64_t embed_missing(Catalog& catalog, const Embedder& embedder, const std::string& data_dir);

}  // namespace rag::index
