#include "server/metrics.h"

#include <fmt/format.h>

namespace rag::server {

namespace {
// Latency buckets from 1 ms to 2 min; token gaps need the finer low end.
const std::vector<double> kLatency = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
const std::vector<double> kTokenGap = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
}  // namespace

Histogram::Histogram(std::string name, std::string help, std::vector<double> bounds)
    : name_(std::move(name)), help_(std::move(help)), bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  std::lock_guard<std::mutex> lock(mutex_);
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name_, help_, name_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name_, bounds_[i], cumulative);
  }
  cumulative += counts_.back();
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name_, cumulative, name_, sum_, name_, count_);
}

Metrics::Metrics()
    : queue("rag_queue_seconds", "Time requests waited for a worker.", kLatency),
      retrieve("rag_retrieve_seconds", "Retrieval latency (keyword and vector search, fusion).", kLatency),
      rerank("rag_rerank_seconds", "Reranking latency.", kLatency),
      first_token("rag_time_to_first_token_seconds", "From request arrival to the first answer text.", kLatency),
      inter_token("rag_inter_token_seconds", "Gap between streamed pieces of generated text.", kTokenGap),
      end_to_end("rag_request_seconds", "End-to-end latency of ask, search, chat and embeddings requests.", kLatency) {}

void Metrics::request(const std::string& route, int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{route, status}];
}

void Metrics::cancelled() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++cancelled_;
}

void Metrics::generated(int64_t tokens, double seconds) {
  if (tokens <= 0 || seconds <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  rate_tokens_ += tokens;
  rate_seconds_ += seconds;
}

uint64_t Metrics::requests(const std::string& route, int status) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = requests_.find({route, status});
  return it == requests_.end() ? 0 : it->second;
}

std::string Metrics::render(const MetricsSnapshot& s) const {
  std::string out;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    out += "# HELP rag_requests_total Requests answered, by route and HTTP status.\n# TYPE rag_requests_total counter\n";
    for (const auto& [key, n] : requests_)
      out += fmt::format("rag_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
    out += fmt::format("# HELP rag_generations_cancelled_total Generations stopped because the client went away.\n"
                       "# TYPE rag_generations_cancelled_total counter\nrag_generations_cancelled_total {}\n", cancelled_);
  }
  queue.render(out);
  retrieve.render(out);
  rerank.render(out);
  first_token.render(out);
  inter_token.render(out);
  end_to_end.render(out);
  double tps = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tps = rate_seconds_ > 0 ? static_cast<double>(rate_tokens_) / rate_seconds_ : 0.0;
  }
  const int64_t lookups = s.prefix_hit_tokens + s.prefix_miss_tokens;
  const double hit = lookups > 0 ? static_cast<double>(s.prefix_hit_tokens) / static_cast<double>(lookups) : 0.0;
  out += fmt::format(
      "# HELP rag_generated_tokens_total Tokens generated.\n# TYPE rag_generated_tokens_total counter\n"
      "rag_generated_tokens_total {}\n"
      "# HELP rag_tokens_per_second Decode speed seen by requests: tokens after the first per second, since start.\n"
      "# TYPE rag_tokens_per_second gauge\nrag_tokens_per_second {}\n"
      "# HELP rag_prefix_cache_hit_ratio Prompt tokens served by the prefix cache, of all prompt tokens admitted.\n"
      "# TYPE rag_prefix_cache_hit_ratio gauge\nrag_prefix_cache_hit_ratio {}\n"
      "# HELP rag_index_generation The live index generation.\n# TYPE rag_index_generation gauge\n"
      "rag_index_generation {}\n"
      "# HELP rag_requests_running Requests holding a worker.\n# TYPE rag_requests_running gauge\n"
      "rag_requests_running {}\n"
      "# HELP rag_requests_waiting Requests queued for a worker.\n# TYPE rag_requests_waiting gauge\n"
      "rag_requests_waiting {}\n"
      "# HELP rag_ready 1 when the index and models are loaded.\n# TYPE rag_ready gauge\nrag_ready {}\n",
      s.tokens_generated, tps, hit, s.generation, s.running, s.waiting, s.ready ? 1 : 0);
  if (s.kv_bytes > 0) {
    out += fmt::format(
        "# HELP rag_kv_cache_bytes The generator's KV cache pool (--kv-mem, in whole blocks).\n"
        "# TYPE rag_kv_cache_bytes gauge\nrag_kv_cache_bytes {}\n"
        "# HELP rag_kv_cache_blocks KV blocks of 16 positions: used by requests, cached for prefix reuse, free.\n"
        "# TYPE rag_kv_cache_blocks gauge\n"
        "rag_kv_cache_blocks{{state=\"used\"}} {}\nrag_kv_cache_blocks{{state=\"cached\"}} {}\n"
        "rag_kv_cache_blocks{{state=\"free\"}} {}\n",
        s.kv_bytes, s.kv_blocks_used, s.kv_blocks_cached, s.kv_blocks_free);
  }
  return out;
}

}  // namespace rag::server
