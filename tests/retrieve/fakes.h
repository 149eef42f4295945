// Deterministic stand-ins for the models, so retrieval tests check retrieval, not random weights.
#pragma once

#include <cctype>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "index/index.h"
#include "rerank/rerank.h"

namespace rag::retrieve::fake {

inline std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> out;
  std::string w;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      w += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!w.empty()) {
      out.push_back(std::move(w));
      w.clear();
    }
  }
  if (!w.empty()) out.push_back(std::move(w));
  return out;
}

// A bag-of-words embedder: each word adds to two hashed coordinates; L2-normalised. Texts sharing words are
// close, so a vector search behaves like a (different) keyword search.
class BagEmbedder : public index::Embedder {
 public:
  explicit BagEmbedder(std::string identity = "fake-bag/mean/d24/0", int dim = 24)
      : identity_(std::move(identity)), dim_(dim) {}
  int dim() const override { return dim_; }
  const std::string& identity() const override { return identity_; }
  std::vector<float> embed(const std::vector<std::string>& texts) const override {
    std::vector<float> out(texts.size() * static_cast<size_t>(dim_), 0.0f);
    for (size_t t = 0; t < texts.size(); ++t) {
      float* v = out.data() + t * static_cast<size_t>(dim_);
      for (const auto& w : words_of(texts[t])) {
        uint64_t h = 1469598103934665603ull;
        for (char c : w) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
        v[h % static_cast<uint64_t>(dim_)] += 1.0f;
        v[(h >> 17) % static_cast<uint64_t>(dim_)] += 0.5f;
      }
      double norm = 0;
      for (int i = 0; i < dim_; ++i) norm += double(v[i]) * v[i];
      if (norm == 0) {
        v[0] = 1.0f;
        continue;
      }
      for (int i = 0; i < dim_; ++i) v[i] = static_cast<float>(v[i] / std::sqrt(norm));
    }
    return out;
  }

 private:
  std::string identity_;
  int dim_;
};

// Scores a passage by how many of the query's words it holds, minus a little for its length so that scores
// rarely tie; optionally sleeps per call (for the budget test: the sleep only guarantees time has passed).
class OverlapReranker : public rerank::Reranker {
 public:
  explicit OverlapReranker(int sleep_ms = 0) : sleep_ms_(sleep_ms) {}
  std::string name() const override { return "fake-overlap"; }
  std::vector<float> score(std::string_view query, const std::vector<std::string>& passages) const override {
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    const auto q = words_of(query);
    std::vector<float> out;
    for (const auto& p : passages) {
      const auto w = words_of(p);
      float s = 0;
      for (const auto& x : q)
        for (const auto& y : w) s += x == y;
      out.push_back(s - 0.001f * static_cast<float>(w.size()));
    }
    return out;
  }

 private:
  int sleep_ms_;
};

}  // namespace rag::retrieve::fake
