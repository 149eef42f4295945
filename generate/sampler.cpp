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

Sampler::Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {
  if (!(options.temperature >= 0.0f && options.temperature <= 100.0f))
    fail(Errc::kInvalidArgument, "temperature {} is outside [0, 100]", options.temperature);
  if (options.top_k < 0) fail(Errc::kInvalidArgument, "top_k {} is negative (0 keeps every token)", options.top_k);
  if (!(options.top_p > 0.0f && options.top_p <= 1.0f))
    fail(Errc::kInvalidArgument, "top_p {} is outside (0, 1]", options.top_p);
}

int32_t Sampler::sample(std::span<const float> logits) {
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
