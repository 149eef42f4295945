#include "generate/sampler.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace rag::generate {

int32_t argmax(std::span<const float> logits) {
  RAG_ASSERT(!logits.empty());
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

bool is_runaway_repetition(std::span<const int32_t> tokens, int64_t window, int64_t max_cycle) {
  const auto n = static_cast<int64_t>(tokens.size());
  if (window <= 0 || max_cycle <= 0 || n < window) return false;
  for (int64_t p = 1; p <= std::min(max_cycle, window / 2); ++p) {
    bool periodic = true;
    for (int64_t k = n - window + p; k < n && periodic; ++k)
      periodic = tokens[static_cast<size_t>(k)] == tokens[static_cast<size_t>(k - p)];
    if (periodic) return true;
  }
  return false;
}

Sampler::Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {
  if (!(options.temperature >= 0.0f && options.temperature <= 100.0f))
    fail(Errc::kInvalidArgument, "temperature {} is outside [0, 100]", options.temperature);
  if (options.top_k < 0) fail(Errc::kInvalidArgument, "top_k {} is negative (0 keeps every token)", options.top_k);
  if (!(options.top_p > 0.0f && options.top_p <= 1.0f))
    fail(Errc::kInvalidArgument, "top_p {} is outside (0, 1]", options.top_p);
  if (!(options.frequency_penalty >= -2.0f && options.frequency_penalty <= 2.0f))
    fail(Errc::kInvalidArgument, "frequency_penalty {} is outside [-2, 2]", options.frequency_penalty);
  if (!(options.presence_penalty >= -2.0f && options.presence_penalty <= 2.0f))
    fail(Errc::kInvalidArgument, "presence_penalty {} is outside [-2, 2]", options.presence_penalty);
}

void Sampler::accept(int32_t token) {
  if (options_.frequency_penalty != 0.0f || options_.presence_penalty != 0.0f) ++counts_[token];
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (!counts_.empty()) {
    penalized_.assign(logits.begin(), logits.end());
    for (const auto& [token, count] : counts_) {
      if (token < 0 || static_cast<size_t>(token) >= penalized_.size()) continue;
      penalized_[static_cast<size_t>(token)] -=
          options_.frequency_penalty * static_cast<float>(count) + options_.presence_penalty;
    }
    logits = penalized_;
  }
  if (options_.temperature == 0.0f) return argmax(logits);
  candidates_.clear();
  for (size_t i = 0; i < logits.size(); ++i) candidates_.emplace_back(logits[i], static_cast<int32_t>(i));
  // Highest logit first, lower id first on ties, so that the order (and so the draw) does not depend on
  // the sort's stability.
  auto better = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = candidates_.size();
  if (options_.top_k > 0 && static_cast<size_t>(options_.top_k) < keep) {
    keep = static_cast<size_t>(options_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(keep), candidates_.end(), better);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), better);
  }
  candidates_.resize(keep);

  // Probabilities at temperature T, in double so that long tails of tiny values still sum correctly.
  const double max_logit = candidates_[0].first;
  std::vector<double> probs(keep);
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((candidates_[i].first - max_logit) / options_.temperature);
    total += probs[i];
  }
  size_t nucleus = keep;
  if (options_.top_p < 1.0f) {
    double cumulative = 0.0;
    for (size_t i = 0; i < keep; ++i) {
      cumulative += probs[i] / total;
      if (cumulative >= options_.top_p) {
        nucleus = i + 1;
        break;
      }
    }
  }
  double nucleus_total = 0.0;
  for (size_t i = 0; i < nucleus; ++i) nucleus_total += probs[i];
  double r = std::uniform_real_distribution<double>(0.0, nucleus_total)(rng_);
  for (size_t i = 0; i < nucleus; ++i) {
    r -= probs[i];
    if (r < 0.0) return candidates_[i].second;
  }
  return candidates_[nucleus - 1].second;
}

}  // namespace rag::generate
