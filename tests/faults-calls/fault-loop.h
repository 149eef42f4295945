// Shared by the fault loops of tests/faults-calls: the N sequence of a loop and a small corpus with tiny
// random-weight models.
//
// A loop fails the Nth hit of a fault point (or the Nth allocation) for N = 1, 2, 3, ... until a run ends
// without reaching it, i.e. the operation succeeded whole. Allocation and in-region counts run to thousands,
// so every N up to `dense` runs, then a stride that reaches the counted total in about `sparse` more runs.
// RAG_FAULT_LOOP=full runs every N (minutes; for a manual or nightly run).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "index/index.h"
#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"
#include "tests/support/tiny-generator.h"

namespace rag::test {

inline bool full_fault_loop() {
  const char* env = std::getenv("RAG_FAULT_LOOP");
  return env != nullptr && std::strcmp(env, "full") == 0;
}

// The N after `n` for a loop whose unfaulted run counted `total` hits.
inline int64_t next_fault(int64_t n, int64_t total, int64_t dense, int64_t sparse) {
  if (full_fault_loop() || n < dense) return n + 1;
  return n + std::max<int64_t>(1, (total - dense) / sparse);
}

// Text long enough that a batch of chunks makes the encoder's OpenMP regions run on several threads
// (their `if` clauses ask for ~32k floats of work).
inline std::string paragraph(int seed) {
  static const char* words[] = {"the", "cat", "dog", "cell", "protein", "gene", "study", "risk", "vacation", "policy",
                                "travel", "expense", "limit", "days", "patients", "cancer"};
  std::string out;
  for (int i = 0; i < 60; ++i) {
    out += words[(seed * 7 + i * 3 + i / 5) % 16];
    out += i % 12 == 11 ? ". " : " ";
  }
  return out;
}

// Markdown documents: `count` files under `dir`, each a few chunks long.
inline void write_corpus(const std::string& dir, int count, int first = 0) {
  for (int d = first; d < first + count; ++d) {
    std::string text = "# Note " + std::to_string(d) + "\n\n";
    for (int p = 0; p < 4; ++p) text += paragraph(d * 4 + p) + "\n\n";
    write_file(dir + "/note-" + std::to_string(d) + ".md", text);
  }
}

inline TinyBertSpec embedder_spec() {
  TinyBertSpec spec;
  spec.layers = 2;
  spec.name = "tiny-embedder";
  return spec;
}

inline TinyBertSpec reranker_spec() {
  TinyBertSpec spec;
  spec.reranker = true;
  spec.name = "tiny-reranker";
  spec.seed = 11;
  return spec;
}

// A suite's shared scratch dir, made once per process (ctest runs each case in its own): embed.gguf,
// rerank.gguf and gen.gguf (tiny random-weight models), `kDocuments` notes under docs/ and data/ ingested
// from them with the embedder.
template <int kDocuments>
class CorpusWithModels : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const TempDir& d = *dir_;
    write_tiny_bert(d / "embed.gguf", embedder_spec());
    write_tiny_bert(d / "rerank.gguf", reranker_spec());
    write_tiny_generator(d / "gen.gguf");
    write_corpus(d / "docs", kDocuments);
    index::IngestOptions o;
    o.roots = {d / "docs"};
    o.threads = 1;
    o.embedder = index::open_embedder(d / "embed.gguf");
    o.embedder_path = d / "embed.gguf";
    index::ingest(d / "data", o);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  inline static TempDir* dir_ = nullptr;
};

}  // namespace rag::test
