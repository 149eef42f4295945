// The one place the service calls the generator: generate::Engine (paged KV cache, prefix cache, continuous
// batching on the engine's own thread), with the model's chat template.
//
// Prefix cache and privacy: the system prompt is the public prefix (its blocks are shared by everyone); the
// rest of the prompt (sources, question) is keyed by a cache salt the caller derives from the principal's ACL
// strings and the index generation, so cached document text only serves principals who may read it.
//
// Token callbacks run on the engine thread and must be quick: they only append to a per-request queue. The
// request's own thread drains it into the caller's callback (which may write to a socket), watches the
// deadline and cancels the engine request when the caller returns false or time is up.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "generate/chat.h"
#include "generate/engine.h"
#include "server/server.h"

namespace rag::server {

struct GenerateCall {
  std::vector<generate::ChatMessage> messages;  // the conversation, templated with the model's chat template
  size_t public_messages = 0;                   // leading messages holding no private text (system prompt)
  std::string cache_salt;                       // who may reuse cached blocks of the private part
  generate::GenerateOptions options;            // end-of-turn tokens are added here
};

struct GenerateOutcome {
  generate::Generation generation;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;           // prompt tokens served by the prefix cache
  double queue_ms = 0;                 // waiting for the engine to admit it
  double prefill_ms = 0;               // admission to the first token
  bool timed_out = false;              // the deadline passed: the engine request was cancelled
  bool cancelled = false;              // the caller's callback returned false or control.cancelled was set
};

class Generator {
 public:
  Generator(const std::string& model_path, int64_t kv_memory_bytes,
            generate::KvCacheType kv_cache = generate::KvCacheType::kAuto);
  ~Generator();
  std::string name() const { return name_; }
  int64_t context_length() const { return context_; }
  std::vector<int32_t> tokens(const std::vector<generate::ChatMessage>& messages) const;
  // Runs one generation to its end; `on_text` gets each released piece of text on the calling thread.
  GenerateOutcome run(const GenerateCall& call, const std::function<bool(std::string_view)>& on_text,
                      const RequestControl& control);
  generate::EngineStats stats() const;

 private:
  std::shared_ptr<const generate::Model> model_;
  std::unique_ptr<generate::Engine> engine_;
  std::string name_;
  int64_t context_ = 0;
  std::vector<int32_t> bos_;           // what the vocabulary puts before a text (tokenize("", true))
  std::vector<int32_t> end_of_turn_;
};

}  // namespace rag::server
