// What follows each forward pass of one sequence: choose the next token from its logits, decide whether the
// sequence ends, and release the token's text to the callback. generate() and the engine both drive a
// sequence through this class, so a request behaves the same whichever runs it.
//
// Order of the checks after each pass (the order is part of the contract; stopping-test.cpp pins it):
//   sample → EOS (when stop_at_eos) or a stop token: end, token not kept
//          → keep the token, decode its text, hold back a possible stop string
//          → a stop string appeared: release the text before it and end (kStopString)
//          → callback returned false: end (kCallback)
//          → max_tokens reached, runaway repetition, the next position past the context: end
// Ending by EOS, stop token, max_tokens, repetition or context releases the held-back text in one last
// callback; ending by a stop string or the callback does not.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "generate/generate.h"
#include "generate/sampler.h"
#include "nn/tokenizer.h"

namespace rag::generate {

// Holds back generated text that could still become a stop string. Invariant: no stop string can start in
// text already released, because text is released only up to the first position from which the rest of the
// pending text is a prefix of some stop string.
class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Appends `text`; returns what may be released now. Sets stopped() when a stop string appeared: the
  // release is then the text before it, and the rest is dropped.
  std::string push(std::string_view text);
  // Releases what is held back once no more text will come.
  std::string flush() { return std::exchange(pending_, {}); }
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

class Continuation {
 public:
  // Checks the prompt (non-empty, ids in the vocabulary) and the options; throws Error(kInvalidArgument)
  // naming the culprit, or Error(kLimit) when the prompt alone exceeds the context length.
  Continuation(const Model& model, std::span<const int32_t> prompt, const GenerateOptions& options,
               TokenCallback on_token);

  // True when the sequence ends before any pass (max_tokens 0): nothing to run.
  bool done() const { return done_; }
  // Takes the logits of the sequence's last position. Returns true when it continues: run next_token()
  // at position next_position(). False when it ended (result().stop says why). The callback runs here;
  // an exception from it propagates (the sequence is then ended with kCallback).
  bool advance(std::span<const float> logits);
  int32_t next_token() const { return result_.tokens.back(); }
  // Prompt tokens plus generated tokens whose K/V are computed: where next_token() goes.
  int64_t next_position() const { return prompt_length_ + static_cast<int64_t>(result_.tokens.size()) - 1; }
  // Ends the sequence from outside: kCallback (cancel) releases nothing more, as a callback returning false;
  // other reasons (kContextFull when the engine's pool is exhausted) release the held-back text.
  void stop(StopReason reason);

  const Generation& result() const { return result_; }
  Generation take_result() { return std::move(result_); }

 private:
  bool emit(int32_t token, const std::string& text);
  void finish(StopReason reason);

  const Model& model_;
  const nn::Tokenizer* tokenizer_;
  GenerateOptions options_;
  TokenCallback on_token_;
  Sampler sampler_;
  std::optional<nn::StreamDecoder> stream_;
  StopStringFilter filter_;
  int64_t prompt_length_ = 0;
  Generation result_;
  bool done_ = false;
};

}  // namespace rag::generate
