// The sampler's cost per token over Qwen2's 151,936-entry vocabulary: greedy (the bench models' and the
// service's default), the default draw (top-k 40, top-p 0.95) and top-k 0 (every token kept). It runs on
// the engine's thread once per sequence and step while the other cores wait, so 8 decoding streams pay it
// 8 times per step.
//
//   build/bench/sampler
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "generate/sampler.h"

namespace rag::generate {
namespace {

constexpr size_t kVocab = 151936;

// Logits shaped like a language model's: most near the bottom, a few standing out.
const std::vector<float>& logits() {
  static const std::vector<float> values = [] {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 2.5f);
    std::vector<float> v(kVocab);
    for (float& x : v) x = normal(rng);
    return v;
  }();
  return values;
}

void BM_Sample(benchmark::State& state) {
  SamplingOptions o;
  o.temperature = state.range(0) == 0 ? 0.0f : 0.8f;
  o.top_k = static_cast<int>(state.range(1));
  o.top_p = state.range(2) / 100.0f;
  Sampler sampler(o);
  std::vector<float> v = logits();
  size_t i = 0;
  for (auto _ : state) {
    v[i++ % kVocab] += 1e-3f;  // a new maximum now and then, as from step to step
    benchmark::DoNotOptimize(sampler.sample(v));
  }
}
// {temperature > 0, top_k, top_p %}
BENCHMARK(BM_Sample)
    ->ArgNames({"draw", "top_k", "top_p"})
    ->Args({0, 40, 95})
    ->Args({1, 40, 95})
    ->Args({1, 0, 95})
    ->Args({1, 0, 100})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace rag::generate

BENCHMARK_MAIN();
