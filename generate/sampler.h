// Choosing the next token from logits: greedy at temperature 0, otherwise temperature, top-k and top-p
// (nucleus) filtering and a draw from a seeded generator, so a seed reproduces a run exactly.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "generate/generate.h"

namespace rag::generate {

class Sampler {
 public:
  // Throws Error(kInvalidArgument) naming the option when one is out of range.
  explicit Sampler(const SamplingOptions& options);

  // The next token id for `logits` (one value per vocabulary entry, at least one).
  int32_t sample(std::span<const float> logits);

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

// The id of the largest logit; the lowest id on ties.
int32_t argmax(std::span<const float> logits);

}  // namespace rag::generate
