// The one place the service calls the generator. Today: generate::generate() on one sequence at a time,
// serialised by a mutex (the model is shared; each call owns its KV cache). When generate/engine.h lands
// this becomes a submit to the engine's batching scheduler with a prefix-cache salt (the principal set's
// fingerprint + index generation) and the public prefix (system prompt tokens); callers do not change.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "generate/generate.h"

namespace rag::server {

struct GenerateCall {
  std::string prompt;                  // text; tokenized here with the model's specials
  size_t public_prefix_bytes = 0;      // leading bytes holding no document text (shareable prefix)
  std::string cache_salt;              // who may reuse cached blocks of the private part
  generate::GenerateOptions options;
};

struct GenerateOutcome {
  generate::Generation generation;
  int64_t prompt_tokens = 0;
  double prefill_ms = 0;               // start of the call to the first token (prompt processing)
  bool prefix_hit = false;
};

class Generator {
 public:
  explicit Generator(const std::string& model_path);
  std::string name() const { return name_; }
  int64_t context_length() const { return context_; }
  int64_t count_tokens(std::string_view text) const;
  // Runs one generation; `on_token` as generate::TokenCallback. Throws what generate() throws.
  GenerateOutcome run(const GenerateCall& call, const generate::TokenCallback& on_token);

  int64_t tokens_generated() const;
  double generate_seconds() const;

 private:
  std::shared_ptr<const generate::Model> model_;
  std::string name_;
  int64_t context_ = 0;
  std::mutex mutex_;                   // one sequence at a time (see the top of this file)
  std::atomic<int64_t> tokens_{0};
  std::atomic<int64_t> micros_{0};
};

}  // namespace rag::server
