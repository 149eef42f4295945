// How generate() ends a run and what it returns: stop tokens, stop strings (held back while they may still
// match, so the stream never shows part of one), penalties against the double-precision oracle, runaway
// repetition, and the finish reason of each StopReason.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/error.h"
#include "generate/generate.h"
#include "generate/model.h"
#include "generate/sampler.h"
#include "tests/generate/tiny-model.h"
#include "tests/support/support.h"

namespace rag::generate {
namespace {

using test::TinySpec;

std::unique_ptr<Model> write_and_load(const TinySpec& spec, const rag::test::TempDir& dir,
                                      test::TinyModel* out = nullptr) {
  test::TinyModel tiny = test::make_tiny_model(spec);
  write_tiny_model(tiny, dir / "model.gguf");
  if (out) *out = tiny;
  return Model::load(dir / "model.gguf");
}

GenerateOptions free_run(int64_t max_tokens) {
  GenerateOptions o;
  o.max_tokens = max_tokens;
  o.stop_at_eos = false;
  return o;
}

TEST(FinishReason, EachStopReasonHasItsOpenAiName) {
  const std::pair<StopReason, std::string> cases[] = {
      {StopReason::kMaxTokens, "length"},  {StopReason::kEos, "stop"},
      {StopReason::kStopToken, "stop"},    {StopReason::kStopString, "stop"},
      {StopReason::kContextFull, "context"}, {StopReason::kCallback, "cancelled"},
      {StopReason::kRepetition, "repetition"},
  };
  for (const auto& [stop, name] : cases) EXPECT_EQ(finish_reason(stop), name);
}

// A stop token ends the run before its first use, unseen, whatever stop_at_eos says.
TEST(StopTokens, EndTheRunBeforeTheirFirstUse) {
  rag::test::TempDir dir;
  auto model = write_and_load(TinySpec{}, dir);
  const std::vector<int32_t> prompt = {1, 17};
  const Generation all = generate(*model, prompt, free_run(16));
  ASSERT_EQ(all.tokens.size(), 16u);
  for (size_t k : {size_t{0}, size_t{3}, size_t{9}}) {
    SCOPED_TRACE(k);
    GenerateOptions options = free_run(16);
    options.stop_tokens = {47, all.tokens[k], 46};
    const Generation result = generate(*model, prompt, options);
    const size_t first = static_cast<size_t>(std::find(all.tokens.begin(), all.tokens.end(), all.tokens[k]) - all.tokens.begin());
    const bool others_first = std::any_of(all.tokens.begin(), all.tokens.begin() + static_cast<std::ptrdiff_t>(first),
                                          [](int32_t t) { return t == 47 || t == 46; });
    if (others_first) continue;  // a random model may say 46 or 47 first; the cut is then elsewhere
    EXPECT_EQ(result.stop, StopReason::kStopToken);
    EXPECT_EQ(result.tokens, std::vector<int32_t>(all.tokens.begin(), all.tokens.begin() + static_cast<std::ptrdiff_t>(first)));
  }
}

// Greedy with penalties follows the oracle's argmax of logit - frequency × count - presence × (count > 0).
TEST(Penalties, GreedyFollowsThePenalizedReferenceArgmax) {
  rag::test::TempDir dir;
  test::TinyModel tiny;
  auto model = write_and_load(TinySpec{}, dir, &tiny);
  struct Case {
    float frequency, presence;
  };
  const Case cases[] = {{0.0f, 0.0f}, {1.0f, 0.0f}, {0.0f, 2.0f}, {0.5f, 0.5f}, {-2.0f, 0.0f}};
  const std::vector<int32_t> prompt = {1, 17, 5};
  const Generation plain = generate(*model, prompt, free_run(12));
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "frequency=" << c.frequency << " presence=" << c.presence);
    GenerateOptions options = free_run(12);
    options.sampling.frequency_penalty = c.frequency;
    options.sampling.presence_penalty = c.presence;
    const Generation result = generate(*model, prompt, options);
    ASSERT_EQ(result.tokens.size(), 12u);
    std::vector<int32_t> sequence = prompt;
    std::vector<int> counts(static_cast<size_t>(tiny.spec.vocab), 0);
    for (int32_t token : result.tokens) {
      std::vector<double> logits = test::reference_logits(tiny, sequence).back();
      for (size_t i = 0; i < logits.size(); ++i)
        logits[i] -= c.frequency * counts[i] + (counts[i] > 0 ? c.presence : 0.0f);
      EXPECT_EQ(token, std::max_element(logits.begin(), logits.end()) - logits.begin());
      ++counts[static_cast<size_t>(token)];
      sequence.push_back(token);
    }
    if (c.presence == 2.0f) {  // a presence penalty this large forbids any repeat in a 48-token vocabulary
      std::vector<int32_t> sorted = result.tokens;
      std::sort(sorted.begin(), sorted.end());
      EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
      EXPECT_NE(result.tokens, plain.tokens);
    }
  }
}

// Stop strings over a vocabulary whose token i reads " w<i>": a stop string inside one token, across two,
// at the very start, one that never completes, and the earliest of several.
TEST(StopStrings, CutTheTextBeforeTheStringAndNeverStreamPartOfIt) {
  TinySpec spec;
  spec.vocabulary = true;
  rag::test::TempDir dir;
  auto model = write_and_load(spec, dir);
  const std::vector<int32_t> prompt = {1};
  const Generation all = generate(*model, prompt, free_run(12));
  ASSERT_EQ(all.stop, StopReason::kMaxTokens);
  // Token k's text, as streamed after the first (whose leading space SentencePiece drops after BOS).
  auto piece = [&](size_t k) { return " w" + std::to_string(all.tokens[k]); };
  ASSERT_GT(all.tokens[4], 2) << "token 4 must be text for this test";
  ASSERT_GT(all.tokens[5], 2) << "token 5 must be text for this test";
  const std::string across = piece(4).substr(2) + piece(5).substr(0, 3);  // "<id4> w<first digit of id5>"
  struct Case {
    const char* name;
    std::vector<std::string> stops;
  };
  const Case cases[] = {
      {"inside one token", {piece(4).substr(1)}},
      {"across two tokens", {across}},
      {"at the start", {all.text.substr(0, 2)}},
      {"never completes", {piece(4) + "#"}},
      {"the earliest of several", {"no such text", across, piece(7)}},
      {"the whole text", {all.text}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    GenerateOptions options = free_run(12);
    options.stop_strings = c.stops;
    std::string streamed;
    std::vector<std::string> chunks;
    const Generation result = generate(*model, prompt, options, [&](int32_t, std::string_view text) {
      streamed += text;
      chunks.emplace_back(text);
      return true;
    });
    size_t cut = std::string::npos;
    for (const std::string& stop : c.stops) cut = std::min(cut, all.text.find(stop));
    if (cut == std::string::npos) {
      EXPECT_EQ(result.stop, StopReason::kMaxTokens);
      EXPECT_EQ(result.text, all.text);
      EXPECT_EQ(result.tokens, all.tokens);
    } else {
      EXPECT_EQ(result.stop, StopReason::kStopString);
      EXPECT_EQ(result.text, all.text.substr(0, cut));
      // Tokens run up to the one that completed the stop string.
      ASSERT_LE(result.tokens.size(), all.tokens.size());
      EXPECT_EQ(result.tokens, std::vector<int32_t>(all.tokens.begin(), all.tokens.begin() + static_cast<std::ptrdiff_t>(result.tokens.size())));
      std::vector<int32_t> sequence = prompt;
      sequence.insert(sequence.end(), result.tokens.begin(), result.tokens.end());
      const std::string through = model->tokenizer()->decode(sequence, true);
      bool found = false;
      for (const std::string& stop : c.stops) found = found || through.find(stop) != std::string::npos;
      EXPECT_TRUE(found) << "the last token must complete the stop string";
    }
    EXPECT_EQ(streamed, result.text);
  }
  // Held back while it may match: with a stop string that begins like token 4's text but never completes,
  // nothing of token 4 streams with token 4 itself.
  GenerateOptions options = free_run(12);
  options.stop_strings = {piece(4) + "#"};
  std::vector<std::string> chunks;
  generate(*model, prompt, options, [&](int32_t, std::string_view text) {
    chunks.emplace_back(text);
    return true;
  });
  ASSERT_EQ(chunks.size(), 12u);
  EXPECT_EQ(chunks[4], "");
  EXPECT_EQ(chunks[5].substr(0, piece(4).size()), piece(4));
}

TEST(StopStrings, EmptyStopStringIsAnInvalidArgument) {
  rag::test::TempDir dir;
  auto model = write_and_load(TinySpec{}, dir);
  GenerateOptions options = free_run(4);
  options.stop_strings = {""};
  try {
    generate(*model, std::vector<int32_t>{1}, options);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kInvalidArgument);
  }
}

// A strong negative frequency penalty makes greedy decoding loop; the run stops where the oracle
// (is_runaway_repetition over the free run's prefixes) first sees the loop, and not with detection off.
TEST(Repetition, ALoopStopsTheRunWhereTheDetectorFirstSeesIt) {
  rag::test::TempDir dir;
  TinySpec spec;
  spec.context = 256;
  auto model = write_and_load(spec, dir);
  const std::vector<int32_t> prompt = {1, 17};
  GenerateOptions options = free_run(200);
  options.sampling.frequency_penalty = -2.0f;
  options.repetition_window = 0;
  const Generation looping = generate(*model, prompt, options);
  ASSERT_EQ(looping.stop, StopReason::kMaxTokens);
  size_t first = 0;
  for (size_t n = 1; n <= looping.tokens.size() && first == 0; ++n)
    if (is_runaway_repetition(std::span(looping.tokens.data(), n), 64, 16)) first = n;
  ASSERT_GT(first, 0u) << "the penalty should make the model loop";

  options.repetition_window = 64;
  options.repetition_max_cycle = 16;
  const Generation stopped = generate(*model, prompt, options);
  EXPECT_EQ(stopped.stop, StopReason::kRepetition);
  EXPECT_EQ(finish_reason(stopped.stop), std::string("repetition"));
  EXPECT_EQ(stopped.tokens, std::vector<int32_t>(looping.tokens.begin(), looping.tokens.begin() + static_cast<std::ptrdiff_t>(first)));

  // The defaults are these numbers.
  EXPECT_EQ(GenerateOptions{}.repetition_window, 64);
  EXPECT_EQ(GenerateOptions{}.repetition_max_cycle, 16);
}

}  // namespace
}  // namespace rag::generate
