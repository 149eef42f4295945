// Prometheus metrics, hand-written: counters by label set and histograms with fixed buckets, rendered in the
// text exposition format (version 0.0.4). Thread-safe; every update takes one short mutex.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace rag::server {

class Histogram {
 public:
  Histogram(std::string name, std::string help, std::vector<double> bounds);  // bounds ascending, in seconds
  void observe(double value);
  void render(std::string& out) const;

 private:
  std::string name_, help_;
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct MetricsSnapshot {          // values the service owns, read at scrape time
  int64_t generation = 0;
  int64_t tokens_generated = 0;    // by the engine, all requests
  int64_t prefix_hit_tokens = 0;
  int64_t prefix_miss_tokens = 0;
  int64_t running = 0;
  int64_t waiting = 0;
  bool ready = false;
  int64_t kv_bytes = 0;             // the generator's KV pool; 0 without a generator (nothing rendered)
  int64_t kv_blocks_used = 0, kv_blocks_cached = 0, kv_blocks_free = 0;
};

class Metrics {
 public:
  Metrics();
  void request(const std::string& route, int status);
  void cancelled();               // a generation stopped because its client went away
  void generated(int64_t tokens, double seconds);  // one request's tokens after the first, and their time
  Histogram queue, retrieve, rerank, first_token, inter_token, end_to_end;
  std::string render(const MetricsSnapshot& snapshot) const;
  uint64_t requests(const std::string& route, int status) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t cancelled_ = 0;
  int64_t rate_tokens_ = 0;
  double rate_seconds_ = 0;
};

}  // namespace rag::server
