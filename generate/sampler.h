// Choosing the next token from logits: frequency and presence penalties over the tokens accepted so far,
// then greedy at temperature 0, otherwise temperature, top-k and top-p (nucleus) filtering and a draw from a
// seeded generator, so a seed reproduces a run exactly.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "generate/generate.h"

namespace rag::generate {

class Sampler {
 public:
  // Throws Error(kInvalidArgument) naming the option when one is out of range.
  explicit Sampler(const SamplingOptions& options);

  // The next token id for `logits` (one value per vocabulary entry, at least one).
  int32_t sample(std::span<const float> logits);
  // Records a generated token for the penalties.
  void accept(int32_t token);

 private:
  std::unordered_map<int32_t, int64_t> counts_;
  std::vector<float> penalized_;
  SamplingOptions options_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
  std::vector<uint64_t> radix_;  // sort_all's scratch, kept between tokens
};

// Runaway repetition: true when the last `window` tokens repeat one cycle of at most `max_cycle` tokens
// (tokens[k] == tokens[k - p] for every k in the window past its first p). A cycle must show at least
// twice, so p ≤ window / 2. False when either is 0 or fewer than `window` tokens are given.
bool is_runaway_repetition(std::span<const int32_t> tokens, int64_t window, int64_t max_cycle);

// The id of the largest logit; the lowest id on ties. NaN ranks below every number.
int32_t argmax(std::span<const float> logits);

}  // namespace rag::generate
