// Decoder forward-pass timings on one model, for profiling the engine's hot path: prefill of P tokens in
// one pass (llama-bench's pp), then D single-token decode steps from an empty cache (its tg), then D steps
// of B sequences decoding together (the engine's batched decode: one token of each of B caches per pass),
// each repeated and reported as the best run (the machine is shared: the minimum is the least disturbed
// figure), with the weight bytes a decode step streams and the rate that implies, and the process CPU
// time per pass (steadier than wall time when other work competes for the cores). With CACHED+NEW, also a
// pass of NEW prompt tokens on top of CACHED already in the cache (a prefix-cache hit: the engine's cached
// time to first token, whose cost is attention over the long history).
//
//   build/bench/make-bench-model /tmp && build/bench/decoder /tmp/bench-qwen2-q8_0.gguf [P D REPS B,B,... [CACHED+NEW]]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "generate/model.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
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
    std::fprintf(stderr, "usage: decoder MODEL.gguf [PREFILL_TOKENS DECODE_TOKENS REPS BATCHES [CACHED+NEW]]\n");
    return 2;
  }
  const int64_t prefill = argc > 2 ? std::atoll(argv[2]) : 512;
  const int64_t decode = argc > 3 ? std::atoll(argv[3]) : 64;
  const int reps = argc > 4 ? std::atoi(argv[4]) : 3;
  std::vector<int64_t> batches;
  for (const char* p = argc > 5 ? argv[5] : "2,4,8,16"; *p;) {
    char* end = nullptr;
    batches.push_back(std::strtoll(p, &end, 10));
    if (end == p || batches.back() < 1) {
      std::fprintf(stderr, "decoder: BATCHES is a list of counts, e.g. 2,4,8\n");
      return 2;
    }
    p = *end == ',' ? end + 1 : end;
  }
  int64_t cached = 0, fresh = 0;
  if (argc > 6) {
    char* end = nullptr;
    cached = std::strtoll(argv[6], &end, 10);
    if (*end == '+') fresh = std::strtoll(end + 1, &end, 10);
    if (*end != '\0' || cached < 0 || fresh < 1) {
      std::fprintf(stderr, "decoder: CACHED+NEW is two counts, e.g. 1900+100\n");
      return 2;
    }
  }
  auto model = rag::generate::Model::load(argv[1]);
  const auto& c = model->config();
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(c.vocab_size - 1));
  rag::generate::ForwardScratch scratch;
  std::vector<float> logits;

  double best_prefill = 1e30, best_decode = 1e30, best_decode_cpu = 1e30;
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
      const double cpu_start = cpu_seconds();
      for (int64_t i = 0; i < decode; ++i) {
        rag::generate::Batch batch{{token(rng)}, {i}, {&cache.blocks()}, {1}};
        model->forward(batch, scratch, logits);
      }
      best_decode = std::min(best_decode, seconds_since(start));
      best_decode_cpu = std::min(best_decode_cpu, cpu_seconds() - cpu_start);
    }
  }
  // B sequences, each with a 16-token prompt already in its cache, then D passes of one token each.
  struct BatchedRun {
    int64_t sequences;
    double best_seconds = 1e30, best_cpu = 1e30;
  };
  std::vector<BatchedRun> batched;
  for (int64_t b : batches) batched.push_back({b});
  constexpr int64_t kPrompt = 16;
  for (BatchedRun& run : batched) {
    if (decode <= 0) break;
    for (int rep = 0; rep < reps; ++rep) {
      std::vector<std::unique_ptr<rag::generate::KvCache>> caches;
      rag::generate::Batch prompts;
      for (int64_t s = 0; s < run.sequences; ++s) {
        caches.push_back(std::make_unique<rag::generate::KvCache>(c.kv_layout(), kPrompt + decode));
        for (int64_t i = 0; i < kPrompt; ++i) {
          prompts.tokens.push_back(token(rng));
          prompts.positions.push_back(i);
          prompts.kv.push_back(&caches.back()->blocks());
          prompts.want_logits.push_back(i + 1 == kPrompt);
        }
      }
      model->forward(prompts, scratch, logits);
      const auto start = Clock::now();
      const double cpu_start = cpu_seconds();
      for (int64_t i = 0; i < decode; ++i) {
        rag::generate::Batch batch;
        for (int64_t s = 0; s < run.sequences; ++s) {
          batch.tokens.push_back(token(rng));
          batch.positions.push_back(kPrompt + i);
          batch.kv.push_back(&caches[static_cast<size_t>(s)]->blocks());
          batch.want_logits.push_back(1);
        }
        model->forward(batch, scratch, logits);
      }
      run.best_seconds = std::min(run.best_seconds, seconds_since(start));
      run.best_cpu = std::min(run.best_cpu, cpu_seconds() - cpu_start);
    }
  }

  // The cached prefix is written once; each repetition runs the NEW tokens again over it (the pass writes
  // their K/V after the prefix, so moving the length back makes the next repetition the same work).
  double best_cached = 1e30, best_cached_cpu = 1e30;
  if (fresh > 0) {
    rag::generate::KvCache cache(c.kv_layout(), cached + fresh);
    auto pass = [&](int64_t from, int64_t count) {
      rag::generate::Batch batch;
      for (int64_t i = from; i < from + count; ++i) {
        batch.tokens.push_back(token(rng));
        batch.positions.push_back(i);
        batch.kv.push_back(&cache.blocks());
        batch.want_logits.push_back(i + 1 == from + count);
      }
      model->forward(batch, scratch, logits);
    };
    if (cached > 0) pass(0, cached);
    for (int rep = 0; rep < reps; ++rep) {
      cache.truncate(cached);
      const auto start = Clock::now();
      const double cpu_start = cpu_seconds();
      pass(cached, fresh);
      best_cached = std::min(best_cached, seconds_since(start));
      best_cached_cpu = std::min(best_cached_cpu, cpu_seconds() - cpu_start);
    }
  }

  double load[3] = {};
  if (getloadavg(load, 3) < 0) load[0] = -1;
  const double bytes = weight_bytes(*model);
  std::printf("threads %d, load %.2f\n", omp_get_max_threads(), load[0]);
  if (prefill > 0) std::printf("prefill %lld: %.1f tok/s (%.3f s)\n", static_cast<long long>(prefill), prefill / best_prefill, best_prefill);
  if (decode > 0)
    std::printf("decode %lld: %.1f tok/s, %.1f GB/s of weights (%.0f MB per token), %.2f ms CPU per pass\n",
                static_cast<long long>(decode), decode / best_decode, bytes * decode / best_decode / 1e9, bytes / 1e6,
                1e3 * best_decode_cpu / static_cast<double>(decode));
  for (const BatchedRun& run : batched) {
    if (decode <= 0) break;
    const double tokens = static_cast<double>(run.sequences * decode);
    std::printf("decode %lld x %lld sequences: %.1f tok/s (%.2fx one stream), %.2f ms CPU per pass\n",
                static_cast<long long>(decode), static_cast<long long>(run.sequences), tokens / run.best_seconds,
                tokens / run.best_seconds / (static_cast<double>(decode) / best_decode),
                1e3 * run.best_cpu / static_cast<double>(decode));
  }
  if (fresh > 0)
    std::printf("cached %lld + %lld: %.1f ms (%.1f ms CPU)\n", static_cast<long long>(cached),
                static_cast<long long>(fresh), 1e3 * best_cached, 1e3 * best_cached_cpu);
  return 0;
}
