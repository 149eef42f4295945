#include "generate/generate.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "common/error.h"
#include "generate/kv-cache.h"
#include "generate/model.h"
#include "generate/sampler.h"
#include "nn/tokenizer.h"

namespace rag::generate {

std::shared_ptr<const Model> load_model(const std::string& path) { return Model::load(path); }

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

namespace {

// Holds back generated text that could still become a stop string. Invariant: no stop string can start in
// text already released, because text is released only up to the first position from which the rest of the
// pending text is a prefix of some stop string.
class StopStringFilter {
 public:
  explicit StopStringFilter(const std::vector<std::string>& stops) : stops_(stops) {}

  // Appends `text`; returns what may be released now. Sets stopped() when a stop string appeared: the
  // release is then the text before it, and the rest is dropped.
  std::string push(std::string_view text) {
    pending_ += text;
    if (stops_.empty()) return std::exchange(pending_, {});
    size_t first = std::string::npos;
    for (const std::string& stop : stops_) first = std::min(first, pending_.find(stop));
    if (first != std::string::npos) {
      stopped_ = true;
      std::string out = pending_.substr(0, first);
      pending_.clear();
      return out;
    }
    size_t keep_from = pending_.size();
    for (size_t i = 0; i < pending_.size() && keep_from == pending_.size(); ++i) {
      const std::string_view tail = std::string_view(pending_).substr(i);
      for (const std::string& stop : stops_)
        if (stop.size() > tail.size() && std::string_view(stop).substr(0, tail.size()) == tail) {
          keep_from = i;
          break;
        }
    }
    std::string out = pending_.substr(0, keep_from);
    pending_.erase(0, keep_from);
    return out;
  }
  // Releases what is held back once no more text will come.
  std::string flush() { return std::exchange(pending_, {}); }
  bool stopped() const { return stopped_; }

 private:
  const std::vector<std::string>& stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace

Generation generate(const Model& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                    const TokenCallback& on_token) {
  const ModelConfig& c = model.config();
  if (prompt.empty()) fail(Errc::kInvalidArgument, "generate: the prompt is empty (start it with the BOS token)");
  if (options.max_tokens < 0) fail(Errc::kInvalidArgument, "generate: max_tokens {} is negative", options.max_tokens);
  if (options.repetition_window < 0 || options.repetition_max_cycle < 0)
    fail(Errc::kInvalidArgument, "generate: repetition_window {} and repetition_max_cycle {} must not be negative",
         options.repetition_window, options.repetition_max_cycle);
  for (const std::string& stop : options.stop_strings)
    if (stop.empty()) fail(Errc::kInvalidArgument, "generate: a stop string is empty");
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  if (prompt_len > c.context_length)
    fail(Errc::kLimit, "{}: the prompt has {} tokens but the model's context holds {}; shorten it",
         model.file().path(), prompt_len, c.context_length);
  Sampler sampler(options.sampling);

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

  Generation result;
  const nn::Tokenizer* tokenizer = model.tokenizer();
  std::optional<nn::StreamDecoder> stream;
  if (tokenizer) {
    stream.emplace(*tokenizer);
    // The prompt's text is not emitted, but it decides how the continuation starts: SentencePiece drops the
    // space it put before the first word only when nothing but control tokens (BOS) came before.
    for (int32_t token : prompt) stream->push(token);
  }
  StopStringFilter filter(options.stop_strings);
  auto is_end = [&](int32_t token) { return tokenizer ? tokenizer->is_eog(token) : token == c.eos_id; };
  auto is_stop_token = [&](int32_t token) {
    return std::find(options.stop_tokens.begin(), options.stop_tokens.end(), token) != options.stop_tokens.end();
  };
  auto emit = [&](int32_t token, const std::string& text) {
    result.text += text;
    return !on_token || on_token(token, text);
  };
  if (options.max_tokens == 0) return result;
  model.forward(batch, scratch, logits);
  for (;;) {
    const int32_t next = sampler.sample(std::span<const float>(logits.data(), static_cast<size_t>(c.vocab_size)));
    if (options.stop_at_eos && is_end(next)) {
      result.stop = StopReason::kEos;
      break;
    }
    if (is_stop_token(next)) {
      result.stop = StopReason::kStopToken;
      break;
    }
    sampler.accept(next);
    result.tokens.push_back(next);
    const std::string released = filter.push(stream ? stream->push(next) : std::string());
    if (filter.stopped()) {
      result.stop = StopReason::kStopString;
      if (!emit(next, released)) result.stop = StopReason::kCallback;
      return result;
    }
    if (!emit(next, released)) {
      result.stop = StopReason::kCallback;
      return result;
    }
    if (static_cast<int64_t>(result.tokens.size()) >= options.max_tokens) {
      result.stop = StopReason::kMaxTokens;
      break;
    }
    if (is_runaway_repetition(result.tokens, options.repetition_window, options.repetition_max_cycle)) {
      result.stop = StopReason::kRepetition;
      break;
    }
    const int64_t pos = cache.length();
    if (pos >= c.context_length) {
      result.stop = StopReason::kContextFull;
      break;
    }
    batch.tokens.assign(1, next);
    batch.positions.assign(1, pos);
    batch.kv.assign(1, &cache.blocks());
    batch.want_logits.assign(1, 1);
    model.forward(batch, scratch, logits);
  }
  if (!result.tokens.empty()) {
    std::string rest = filter.push(stream ? stream->flush() : std::string());
    if (filter.stopped()) result.stop = StopReason::kStopString;
    else rest += filter.flush();
    if (!rest.empty()) emit(result.tokens.back(), rest);
  }
  return result;
}

}  // namespace rag::generate
