#include "generate/generate.h"

#include <algorithm>
#include <string>
#include <utility>

#include "common/error.h"
#include "generate/continuation.h"
#include "generate/kv-cache.h"
#include "generate/model.h"
#include "nn/tokenizer.h"

namespace rag::generate {

KvCacheType parse_kv_cache_type(std::string_view name) {
  if (name == "auto") return KvCacheType::kAuto;
  if (name == "f16") return KvCacheType::kF16;
  if (name == "f32") return KvCacheType::kF32;
  fail(Errc::kInvalidArgument, "unknown KV cache type '{}' (--kv-type): use auto, f16 or f32", name);
}

std::shared_ptr<const Model> load_model(const std::string& path, KvCacheType kv_cache) {
  return Model::load(path, kv_cache);
}

ModelInfo model_info(const Model& model) {
  const ModelConfig& c = model.config();
  ModelInfo info;
  info.path = model.file().path();
  info.architecture = c.architecture;
  info.weight_type = model.weight_type_name();
  info.vocab_size = c.vocab_size;
  info.context_length = c.context_length;
  info.embedding_length = c.embedding_length;
  info.layer_count = c.layer_count;
  info.head_count = c.head_count;
  info.head_count_kv = c.head_count_kv;
  info.bos_id = c.bos_id;
  info.eos_id = c.eos_id;
  return info;
}

std::vector<int32_t> tokenize(const Model& model, std::string_view text, bool add_special) {
  const nn::Tokenizer* tokenizer = model.tokenizer();
  if (!tokenizer)
    fail(Errc::kUnsupported, "{}: the model file has no vocabulary (tokenizer.ggml.tokens)", model.file().path());
  // Prompt text is untrusted: control-token spellings in it stay text.
  return tokenizer->encode(text, add_special, false);
}

const char* finish_reason(StopReason stop) {
  switch (stop) {
    case StopReason::kMaxTokens: return "length";
    case StopReason::kContextFull: return "context";
    case StopReason::kCallback: return "cancelled";
    case StopReason::kRepetition: return "repetition";
    case StopReason::kEos:
    case StopReason::kStopToken:
    case StopReason::kStopString: return "stop";
  }
  return "stop";
}

Generation generate(const Model& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                    const TokenCallback& on_token) {
  Continuation sequence(model, prompt, options, on_token);
  if (sequence.done()) return sequence.take_result();
  const ModelConfig& c = model.config();
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  const int64_t capacity = std::min(c.context_length, prompt_len + std::max<int64_t>(options.max_tokens, 1));
  KvCache cache(c.kv_layout(), capacity);
  ForwardScratch scratch;
  std::vector<float> logits;
  Batch batch;
  for (int64_t i = 0; i < prompt_len; ++i) {
    batch.tokens.push_back(prompt[static_cast<size_t>(i)]);
    batch.positions.push_back(i);
    batch.kv.push_back(&cache.blocks());
    batch.want_logits.push_back(i + 1 == prompt_len);
  }
  for (;;) {
    model.forward(batch, scratch, logits);
    if (!sequence.advance(logits)) break;
    batch.tokens.assign(1, sequence.next_token());
    batch.positions.assign(1, sequence.next_position());
    batch.kv.assign(1, &cache.blocks());
    batch.want_logits.assign(1, 1);
  }
  return sequence.take_result();
}

}  // namespace rag::generate
