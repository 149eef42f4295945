// Decoder forward-pass timings on one model, for profiling the engine's hot path: prefill of P tokens in
// one pass (llama-bench's pp), then D single-token decode steps from an empty cache (its tg), each repeated
// and reported as the best run (the machine is shared: the minimum is the least disturbed figure), with the
// weight bytes a decode step streams and the rate that implies.
//
//   build/bench/make-bench-model /tmp && build/bench/decoder /tmp/bench-qwen2-q8_0.gguf [P D REPS]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "generate/model.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Bytes of every matrix a decode step reads: all layers plus the output head.
double weight_bytes(const rag::generate::Model& model) {
  double bytes = 0;
  for (const auto& t : model.file().tensors())
    if (t.name != "token_embd.weight" || !model.file().find_tensor("output.weight")) bytes += static_cast<double>(t.nbytes);
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: decoder MODEL.gguf [PREFILL_TOKENS DECODE_TOKENS REPS]\n");
    return 2;
  }
  const int64_t prefill = argc > 2 ? std::atoll(argv[2]) : 512;
  const int64_t decode = argc > 3 ? std::atoll(argv[3]) : 64;
  const int reps = argc > 4 ? std::atoi(argv[4]) : 3;
  auto model = rag::generate::Model::load(argv[1]);
  const auto& c = model->config();
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab_size - 1));
  rag::generate::ForwardScratch scratch;
  std::vector<float> logits;

  double best_prefill = 1e30, best_decode = 1e30;
  for (int rep = 0; rep < reps; ++rep) {
    if (prefill > 0) {
      rag::generate::KvCache cache(c.kv_layout(), prefill);
      rag::generate::Batch batch;
      for (int64_t i = 0; i < prefill; ++i) {
        batch.tokens.push_back(token(rng));
        batch.positions.push_back(i);
        batch.kv.push_back(&cache.blocks());
        batch.want_logits.push_back(i + 1 == prefill);
      }
      const auto start = Clock::now();
      model->forward(batch, scratch, logits);
      best_prefill = std::min(best_prefill, seconds_since(start));
    }
    if (decode > 0) {
      rag::generate::KvCache cache(c.kv_layout(), decode);
      const auto start = Clock::now();
      for (int64_t i = 0; i < decode; ++i) {
        rag::generate::Batch batch{{token(rng)}, {i}, {&cache.blocks()}, {1}};
        model->forward(batch, scratch, logits);
      }
      best_decode = std::min(best_decode, seconds_since(start));
    }
  }
  double load[3] = {};
  if (getloadavg(load, 3) < 0) load[0] = -1;
  const double bytes = weight_bytes(*model);
  std::printf("threads %d, load %.2f\n", omp_get_max_threads(), load[0]);
  if (prefill > 0) std::printf("prefill %lld: %.1f tok/s (%.3f s)\n", static_cast<long long>(prefill), prefill / best_prefill, best_prefill);
  if (decode > 0)
    std::printf("decode %lld: %.1f tok/s, %.1f GB/s of weights (%.0f MB per token)\n", static_cast<long long>(decode),
                decode / best_decode, bytes * decode / best_decode / 1e9, bytes / 1e6);
  return 0;
}
