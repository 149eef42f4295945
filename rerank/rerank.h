// Rerank: scores (query, passage) pairs so the best passages of a fused candidate list come first.
//
//   fused candidates ──top N passages──▶ rerank() ──batches of 16──▶ Reranker::score ──▶ scores, in order
//
// A Reranker is anything that scores passages for a query (higher = more relevant; comparable across the
// passages of one call only). The one shipped is a BERT-family cross-encoder (nn::Encoder with rank pooling,
// e.g. bge-reranker-small, ms-marco-MiniLM converted to GGUF). Where no reranker is configured the caller keeps
// its fused order and reports the reranker as "none" (kNoReranker).
//
// rerank() works through the passages in order, in batches, and stops starting new batches once the time
// budget is spent: the passages it scored come back with scores, the rest keep their place below them
// (RerankResult::scored, ::cut). Passages are pre-cut to max_passage_bytes (at a UTF-8 boundary) so a huge
// chunk costs no tokenizer time for text the encoder would drop anyway (the encoder cuts pairs to its
// max_tokens, keeping the passage's beginning).
//
// Depends on nn/ and common/ only, so retrieval (retrieve/) can call it and evaluation can run every mode.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rag::rerank {

// The name reported in `models.reranker` when none is configured.
inline constexpr std::string_view kNoReranker = "none";

class Reranker {
 public:
  virtual ~Reranker() = default;
  // Identifies the model in responses and logs: the encoder identity "NAME/rank/dDIM/HASH" for a cross-encoder.
  virtual std::string name() const = 0;
  // One score per passage for `query`, higher is more relevant, in the order given. Thread-safe: may be called
  // concurrently from several threads. Throws rag::Error on failure.
  virtual std::vector<float> score(std::string_view query, const std::vector<std::string>& passages) const = 0;
};

// Opens a GGUF cross-encoder. kNotFound/kIo/kCorrupt from the file; kUnsupported for an embedding model (mean or
// CLS pooling), saying the file embeds and belongs to --embed-model.
std::unique_ptr<Reranker> open_reranker(const std::string& path);

struct RerankOptions {
  int batch = 16;                    // passages per Reranker::score call, >= 1
  size_t max_passage_bytes = 2000;   // pre-cut at a UTF-8 boundary; 0 = no cut
  // Wall-clock budget for the whole call in milliseconds; 0 = none. Checked before each batch after the first
  // (the first always runs, so a reranker that is configured reranks something).
  double budget_ms = 0;
  // The clock the budget is measured on; tests substitute a fake one. Empty: std::chrono::steady_clock.
  std::function<std::chrono::steady_clock::time_point()> clock;
};

struct RerankResult {
  std::vector<float> scores;  // scores of passages [0, scores.size()), in input order: a prefix of the input
  bool cut = false;           // the budget ran out before every passage was scored
  double ms = 0;              // wall clock spent, on options.clock
};

// Scores `passages` in order, in batches, within the budget. An empty list returns at once. Throws what the
// reranker throws, or kInternal if it returns the wrong number of scores.
RerankResult rerank(const Reranker& reranker, std::string_view query, const std::vector<std::string>& passages,
                    const RerankOptions& options = {});

// `text` cut to at most `max_bytes` bytes without splitting a UTF-8 sequence (whole text when it fits or
// max_bytes is 0).
std::string_view cut_utf8(std::string_view text, size_t max_bytes);

}  // namespace rag::rerank
