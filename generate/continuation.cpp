#include "generate/continuation.h"

#include <algorithm>
#include <utility>

#include "common/error.h"
#include "generate/model.h"

namespace rag::generate {

std::string StopStringFilter::push(std::string_view text) {
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

namespace {

const GenerateOptions& checked(const Model& model, std::span<const int32_t> prompt, const GenerateOptions& options) {
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
  for (int32_t token : prompt)
    if (token < 0 || token >= c.vocab_size)
      fail(Errc::kInvalidArgument, "{}: token id {} is outside the vocabulary of {} tokens", model.file().path(),
           token, c.vocab_size);
  return options;
}

}  // namespace

Continuation::Continuation(const Model& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                           TokenCallback on_token)
    : model_(model),
      tokenizer_(model.tokenizer()),
      options_(checked(model, prompt, options)),
      on_token_(std::move(on_token)),
      sampler_(options.sampling),
      filter_(options.stop_strings),
      prompt_length_(static_cast<int64_t>(prompt.size())) {
  if (tokenizer_) {
    stream_.emplace(*tokenizer_);
    // The prompt's text is not emitted, but it decides how the continuation starts: SentencePiece drops the
    // space it put before the first word only when nothing but control tokens (BOS) came before.
    for (int32_t token : prompt) stream_->push(token);
  }
  if (options_.max_tokens == 0) done_ = true;
}

bool Continuation::emit(int32_t token, const std::string& text) {
  result_.text += text;
  return !on_token_ || on_token_(token, text);
}

void Continuation::finish(StopReason reason) {
  result_.stop = reason;
  done_ = true;
  if (result_.tokens.empty()) return;
  std::string rest = filter_.push(stream_ ? stream_->flush() : std::string());
  if (filter_.stopped()) result_.stop = StopReason::kStopString;
  else rest += filter_.flush();
  if (!rest.empty()) emit(result_.tokens.back(), rest);
}

void Continuation::stop(StopReason reason) {
  if (done_) return;
  if (reason == StopReason::kCallback) {
    result_.stop = reason;
    done_ = true;
    return;
  }
  finish(reason);
}

bool Continuation::advance(std::span<const float> logits) {
  RAG_ASSERT(!done_);
  const ModelConfig& c = model_.config();
  const int32_t next = sampler_.sample(logits.first(static_cast<size_t>(c.vocab_size)));
  const bool is_end = tokenizer_ ? tokenizer_->is_eog(next) : next == c.eos_id;
  if (options_.stop_at_eos && is_end) {
    finish(StopReason::kEos);
    return false;
  }
  if (std::find(options_.stop_tokens.begin(), options_.stop_tokens.end(), next) != options_.stop_tokens.end()) {
    finish(StopReason::kStopToken);
    return false;
  }
  sampler_.accept(next);
  result_.tokens.push_back(next);
  const std::string released = filter_.push(stream_ ? stream_->push(next) : std::string());
  done_ = true;  // until the checks below let it continue; also when the callback throws
  result_.stop = StopReason::kCallback;
  if (filter_.stopped()) {
    result_.stop = StopReason::kStopString;
    if (!emit(next, released)) result_.stop = StopReason::kCallback;
    return false;
  }
  if (!emit(next, released)) return false;
  done_ = false;
  if (static_cast<int64_t>(result_.tokens.size()) >= options_.max_tokens) {
    finish(StopReason::kMaxTokens);
    return false;
  }
  if (is_runaway_repetition(result_.tokens, options_.repetition_window, options_.repetition_max_cycle)) {
    finish(StopReason::kRepetition);
    return false;
  }
  if (next_position() >= c.context_length) {
    finish(StopReason::kContextFull);
    return false;
  }
  return true;
}

}  // namespace rag::generate
