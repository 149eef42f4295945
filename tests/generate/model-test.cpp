// The decoder against a double-precision oracle (tests/generate/tiny-model.cpp) on tiny random models of
// each shape the loader accepts, quantized weights against F32, prefill against token-by-token decode,
// and the errors a bad model file or an overlong sequence must give.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "common/error.h"
#include "generate/generate.h"
#include "generate/model.h"
#include "tests/generate/tiny-model.h"
#include "tests/support/support.h"

namespace rag::generate {
namespace {

using test::TinySpec;

const std::vector<int32_t> kTokens = {1, 17, 5, 42, 9, 9, 30, 2, 11, 47, 0, 23};

// Logits of every token run one at a time through a fresh cache.
std::vector<std::vector<float>> decode_each(const Model& model, const std::vector<int32_t>& tokens) {
  KvCache cache(model.config().kv_layout(), model.config().context_length);
  ForwardScratch scratch;
  std::vector<std::vector<float>> out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    Batch batch{{tokens[i]}, {static_cast<int64_t>(i)}, {&cache.blocks()}, {1}};
    std::vector<float> logits;
    model.forward(batch, scratch, logits);
    out.push_back(logits);
  }
  return out;
}

std::unique_ptr<Model> write_and_load(const TinySpec& spec, const rag::test::TempDir& dir, test::TinyModel* out = nullptr) {
  test::TinyModel tiny = test::make_tiny_model(spec);
  write_tiny_model(tiny, dir / "model.gguf");
  if (out) *out = tiny;
  return Model::load(dir / "model.gguf");
}

// Each variant differs from the reference by float rounding only: logits within 1e-4 of their scale.
struct Variant {
  const char* name;
  TinySpec spec;
};

TinySpec variant(std::string arch, int64_t heads, int64_t kv_heads, bool biases, bool tied) {
  TinySpec s;
  s.architecture = std::move(arch);
  s.heads = heads;
  s.kv_heads = kv_heads;
  s.biases = biases;
  s.tied = tied;
  if (s.architecture == "qwen2") s.rope_base = 1000000.0f;
  return s;
}

class ForwardTest : public ::testing::TestWithParam<Variant> {};

TEST_P(ForwardTest, MatchesDoublePrecisionReference) {
  rag::test::TempDir dir;
  test::TinyModel tiny;
  auto model = write_and_load(GetParam().spec, dir, &tiny);
  const auto expected = test::reference_logits(tiny, kTokens);
  const auto actual = decode_each(*model, kTokens);
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t pos = 0; pos < expected.size(); ++pos) {
    double scale = 0.0;
    for (double v : expected[pos]) scale = std::max(scale, std::abs(v));
    ASSERT_EQ(actual[pos].size(), expected[pos].size());
    for (size_t i = 0; i < expected[pos].size(); ++i)
      ASSERT_NEAR(actual[pos][i], expected[pos][i], 1e-4 * scale) << "position " << pos << " logit " << i;
  }
}

TEST_P(ForwardTest, PrefillInOnePassEqualsTokenByTokenDecode) {
  rag::test::TempDir dir;
  auto model = write_and_load(GetParam().spec, dir);
  const auto each = decode_each(*model, kTokens);
  KvCache cache(model->config().kv_layout(), model->config().context_length);
  ForwardScratch scratch;
  Batch batch;
  for (size_t i = 0; i < kTokens.size(); ++i) {
    batch.tokens.push_back(kTokens[i]);
    batch.positions.push_back(static_cast<int64_t>(i));
    batch.kv.push_back(&cache.blocks());
    batch.want_logits.push_back(1);
  }
  std::vector<float> logits;
  model->forward(batch, scratch, logits);
  const int64_t vocab = model->config().vocab_size;
  ASSERT_EQ(logits.size(), kTokens.size() * static_cast<size_t>(vocab));
  EXPECT_EQ(cache.length(), static_cast<int64_t>(kTokens.size()));
  for (size_t pos = 0; pos < kTokens.size(); ++pos)
    for (int64_t i = 0; i < vocab; ++i)
      ASSERT_NEAR(logits[pos * vocab + i], each[pos][i], 1e-4f * (1.0f + std::abs(each[pos][i])))
          << "position " << pos << " logit " << i;

  // Decoding continues from the prefilled cache exactly as from the one built token by token.
  Batch next{{7}, {static_cast<int64_t>(kTokens.size())}, {&cache.blocks()}, {1}};
  model->forward(next, scratch, logits);
  std::vector<int32_t> longer = kTokens;
  longer.push_back(7);
  const auto reference = decode_each(*model, longer);
  for (int64_t i = 0; i < vocab; ++i) ASSERT_NEAR(logits[i], reference.back()[i], 1e-4f * (1.0f + std::abs(logits[i])));
}

// Two sequences in one pass, one split around the other, across several KV blocks and attention tiles: each
// token's logits equal those of its sequence decoded alone, token by token.
TEST_P(ForwardTest, BatchOfSequencesEqualsEachAlone) {
  rag::test::TempDir dir;
  auto model = write_and_load(GetParam().spec, dir);
  const int64_t vocab = model->config().vocab_size;
  std::vector<int32_t> a, b;
  for (int i = 0; i < 37; ++i) a.push_back(static_cast<int32_t>((i * 7 + 3) % vocab));
  for (int i = 0; i < 5; ++i) b.push_back(static_cast<int32_t>((i * 5 + 1) % vocab));
  KvCache cache_a(model->config().kv_layout(), 40), cache_b(model->config().kv_layout(), 40);
  Batch batch;
  std::vector<std::pair<const std::vector<int32_t>*, size_t>> order;  // (sequence, index) of each batch token
  auto push = [&](const std::vector<int32_t>& seq, KvCache& cache, size_t i) {
    batch.tokens.push_back(seq[i]);
    batch.positions.push_back(static_cast<int64_t>(i));
    batch.kv.push_back(&cache.blocks());
    batch.want_logits.push_back(1);
    order.emplace_back(&seq, i);
  };
  for (size_t i = 0; i < 2; ++i) push(b, cache_b, i);
  for (size_t i = 0; i < a.size(); ++i) push(a, cache_a, i);
  for (size_t i = 2; i < b.size(); ++i) push(b, cache_b, i);
  ForwardScratch scratch;
  std::vector<float> logits;
  model->forward(batch, scratch, logits);
  const auto each_a = decode_each(*model, a), each_b = decode_each(*model, b);
  for (size_t k = 0; k < order.size(); ++k) {
    const auto& expected = (order[k].first == &a ? each_a : each_b)[order[k].second];
    for (int64_t i = 0; i < vocab; ++i)
      ASSERT_NEAR(logits[k * vocab + i], expected[i], 1e-4f * (1.0f + std::abs(expected[i]))) << "batch token " << k;
  }
}

// The tiled flash attention against the double-precision oracle in one pass that mixes everything a tile
// can meet: decode rows of sequences whose cached history ends inside a KV block (37 and 50 positions),
// a 70-token prompt cut into three tiles (24, 23, 23 tokens; 70 keys, not a multiple of the 16-key block),
// and a 45-token chunk continuing a 20-token cached prefix (its tiles start inside a block, so their first
// rows skip the last blocks the later rows see).
TEST_P(ForwardTest, MixedBatchOfDecodeAndPrefillMatchesTheReference) {
  rag::test::TempDir dir;
  TinySpec spec = GetParam().spec;
  spec.context = 128;
  test::TinyModel tiny;
  auto model = write_and_load(spec, dir, &tiny);
  const int64_t vocab = model->config().vocab_size;
  struct Sequence {
    int64_t cached, fresh;
    std::vector<int32_t> tokens;
    std::unique_ptr<KvCache> cache;
  };
  std::vector<Sequence> seqs;
  for (auto [cached, fresh] : {std::pair<int64_t, int64_t>{37, 1}, {50, 1}, {0, 70}, {20, 45}}) {
    Sequence q{cached, fresh, {}, std::make_unique<KvCache>(model->config().kv_layout(), 128)};
    for (int64_t i = 0; i < cached + fresh; ++i)
      q.tokens.push_back(static_cast<int32_t>((i * 11 + cached * 3 + fresh) % vocab));
    seqs.push_back(std::move(q));
  }
  ForwardScratch scratch;
  std::vector<float> logits;
  for (Sequence& q : seqs) {
    if (q.cached == 0) continue;
    Batch prefix;
    for (int64_t i = 0; i < q.cached; ++i) {
      prefix.tokens.push_back(q.tokens[static_cast<size_t>(i)]);
      prefix.positions.push_back(i);
      prefix.kv.push_back(&q.cache->blocks());
      prefix.want_logits.push_back(0);
    }
    model->forward(prefix, scratch, logits);
  }
  Batch batch;
  std::vector<std::pair<size_t, int64_t>> order;  // (sequence, position) of each batch token
  for (size_t k = 0; k < seqs.size(); ++k) {
    for (int64_t i = seqs[k].cached; i < seqs[k].cached + seqs[k].fresh; ++i) {
      batch.tokens.push_back(seqs[k].tokens[static_cast<size_t>(i)]);
      batch.positions.push_back(i);
      batch.kv.push_back(&seqs[k].cache->blocks());
      batch.want_logits.push_back(1);
      order.emplace_back(k, i);
    }
  }
  model->forward(batch, scratch, logits);
  ASSERT_EQ(logits.size(), order.size() * static_cast<size_t>(vocab));
  std::vector<std::vector<std::vector<double>>> expected;
  for (const Sequence& q : seqs) expected.push_back(test::reference_logits(tiny, q.tokens));
  for (size_t t = 0; t < order.size(); ++t) {
    const auto& want = expected[order[t].first][static_cast<size_t>(order[t].second)];
    double scale = 0.0;
    for (double v : want) scale = std::max(scale, std::abs(v));
    for (int64_t i = 0; i < vocab; ++i)
      ASSERT_NEAR(logits[t * vocab + i], want[static_cast<size_t>(i)], 1e-4 * scale)
          << "sequence " << order[t].first << " position " << order[t].second << " logit " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ForwardTest,
    ::testing::Values(Variant{"LlamaGqa", variant("llama", 4, 2, false, false)},
                      Variant{"LlamaMhaTied", variant("llama", 4, 4, false, true)},
                      Variant{"LlamaMqa", variant("llama", 2, 1, false, false)},
                      Variant{"Qwen2GqaBiases", variant("qwen2", 4, 2, true, false)},
                      Variant{"Qwen2BiasesTied", variant("qwen2", 8, 2, true, true)}),
    [](const auto& info) { return std::string(info.param.name); });

// The same model with every matrix rounded through `type` and back: what a quantized file really holds.
test::TinyModel rounded(test::TinyModel tiny, nn::TensorType type) {
  for (auto& [name, values] : tiny.tensors) {
    if (name.find("norm") != std::string::npos || name.find(".bias") != std::string::npos) continue;
    std::vector<uint8_t> bytes(nn::row_bytes(type, static_cast<int64_t>(values.size())));
    nn::quantize_row(type, values.data(), bytes.data(), static_cast<int64_t>(values.size()));
    nn::dequantize_row(type, bytes.data(), values.data(), static_cast<int64_t>(values.size()));
  }
  return tiny;
}

// Quantized matrices are used in place (int8 dot products against quantized activations). Against the
// oracle run on the same rounded weights only the activations' rounding remains: cosine ≥ 0.999 for every
// type. Against the unrounded F32 model, Q8_0 must also stay within cosine 0.999.
TEST(QuantizedForward, LogitsCloseToTheReference) {
  struct Case {
    nn::TensorType type;
    double min_cosine_to_f32;
  };
  for (const Case& c : {Case{nn::TensorType::kF16, 0.99999}, Case{nn::TensorType::kBF16, 0.999},
                        Case{nn::TensorType::kQ8_0, 0.999}, Case{nn::TensorType::kQ4_0, 0.9}}) {
    for (bool tied : {false, true}) {
      SCOPED_TRACE(::testing::Message() << nn::tensor_type_name(c.type) << (tied ? " tied" : ""));
      TinySpec spec = variant("qwen2", 4, 2, true, tied);
      rag::test::TempDir dir;
      test::TinyModel tiny;
      spec.type = c.type;
      auto model = write_and_load(spec, dir, &tiny);
      EXPECT_EQ(model->weight_type_name(), nn::tensor_type_name(c.type));
      const auto f32 = test::reference_logits(tiny, kTokens);
      const auto same_weights = test::reference_logits(rounded(tiny, c.type), kTokens);
      const auto actual = decode_each(*model, kTokens);
      for (size_t pos = 0; pos < f32.size(); ++pos) {
        EXPECT_GE(test::cosine(same_weights[pos], actual[pos]), 0.999) << "position " << pos;
        EXPECT_GE(test::cosine(f32[pos], actual[pos]), c.min_cosine_to_f32) << "position " << pos;
      }
    }
  }
}

// Each position's logits within 1e-4 of the largest expected logit there.
template <class Actual, class Expected>
void expect_within_1e4_of_scale(const Actual& actual, const Expected& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t pos = 0; pos < expected.size(); ++pos) {
    double scale = 0.0;
    for (double v : expected[pos]) scale = std::max(scale, std::abs(v));
    for (size_t i = 0; i < expected[pos].size(); ++i)
      ASSERT_NEAR(actual[pos][i], expected[pos][i], 1e-4 * scale) << "position " << pos << " logit " << i;
  }
}

// Every model but an F32 one keeps its KV cache in F16: half the bytes per position. With F16 weights
// (float products throughout, so nothing else rounds) the logits follow the oracle whose K and V are rounded
// through half as closely as the F32 model follows the plain one.
TEST(KvCache, NonF32ModelsKeepHalvesThatAttendAsTheRoundedReference) {
  TinySpec spec = variant("qwen2", 4, 2, true, false);
  rag::test::TempDir dir;
  auto f32_model = write_and_load(spec, dir);
  EXPECT_EQ(f32_model->config().kv_layout().type, nn::TensorType::kF32);
  for (nn::TensorType type :
       {nn::TensorType::kF16, nn::TensorType::kBF16, nn::TensorType::kQ8_0, nn::TensorType::kQ4_0}) {
    spec.type = type;
    rag::test::TempDir type_dir;
    EXPECT_EQ(write_and_load(spec, type_dir)->config().kv_layout().block_bytes() * 2,
              f32_model->config().kv_layout().block_bytes())
        << nn::tensor_type_name(type);
  }

  spec.type = nn::TensorType::kF16;
  test::TinyModel tiny;
  auto model = write_and_load(spec, dir, &tiny);
  EXPECT_EQ(model->config().kv_layout().type, nn::TensorType::kF16);
  const auto expected = test::reference_logits(rounded(tiny, nn::TensorType::kF16), kTokens, /*kv_f16=*/true);
  const auto actual = decode_each(*model, kTokens);
  ASSERT_NO_FATAL_FAILURE(expect_within_1e4_of_scale(actual, expected));
}

// --kv-type: an F16-weight model asked for an F32 cache follows the oracle whose K and V are not rounded
// (the test above shows its own F16 cache missing it), an F32 model asked for F16 halves its blocks, and
// an unknown name is an error naming the choices.
TEST(KvCache, TheCacheTypeCanBeChosen) {
  TinySpec spec = variant("qwen2", 4, 2, true, false);
  spec.type = nn::TensorType::kF16;
  rag::test::TempDir dir;
  test::TinyModel tiny = test::make_tiny_model(spec);
  write_tiny_model(tiny, dir / "model.gguf");
  auto model = Model::load(dir / "model.gguf", KvCacheType::kF32);
  EXPECT_EQ(model->config().kv_type, nn::TensorType::kF32);
  EXPECT_EQ(Model::load(dir / "model.gguf", KvCacheType::kAuto)->config().kv_type, nn::TensorType::kF16);
  const auto expected = test::reference_logits(rounded(tiny, nn::TensorType::kF16), kTokens, /*kv_f16=*/false);
  const auto actual = decode_each(*model, kTokens);
  ASSERT_NO_FATAL_FAILURE(expect_within_1e4_of_scale(actual, expected));

  spec.type = nn::TensorType::kF32;
  rag::test::TempDir f32_dir;
  auto f32_auto = write_and_load(spec, f32_dir);
  auto f32_halves = Model::load(f32_dir / "model.gguf", KvCacheType::kF16);
  EXPECT_EQ(f32_halves->config().kv_type, nn::TensorType::kF16);
  EXPECT_EQ(f32_halves->config().kv_layout().block_bytes() * 2, f32_auto->config().kv_layout().block_bytes());

  EXPECT_EQ(parse_kv_cache_type("auto"), KvCacheType::kAuto);
  EXPECT_EQ(parse_kv_cache_type("f16"), KvCacheType::kF16);
  EXPECT_EQ(parse_kv_cache_type("f32"), KvCacheType::kF32);
  try {
    parse_kv_cache_type("q8_0");
    ADD_FAILURE() << "q8_0 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("auto, f16 or f32"), std::string::npos) << e.what();
  }
}

TEST(Generate, GreedyFollowsTheReferenceArgmax) {
  rag::test::TempDir dir;
  test::TinyModel tiny;
  TinySpec spec = variant("llama", 4, 2, false, false);
  auto model = write_and_load(spec, dir, &tiny);
  GenerateOptions options;
  options.max_tokens = 10;
  options.stop_at_eos = false;
  const std::vector<int32_t> prompt = {1, 17, 5};
  Generation result = generate(*model, prompt, options);
  ASSERT_EQ(result.tokens.size(), 10u);
  EXPECT_EQ(result.stop, StopReason::kMaxTokens);
  std::vector<int32_t> sequence = prompt;
  for (int32_t token : result.tokens) {
    const auto logits = test::reference_logits(tiny, sequence).back();
    EXPECT_EQ(token, std::max_element(logits.begin(), logits.end()) - logits.begin());
    sequence.push_back(token);
  }
}

TEST(Generate, SeededSamplingRepeatsAndSeedsDiffer) {
  rag::test::TempDir dir;
  auto model = write_and_load(variant("llama", 4, 2, false, false), dir);
  GenerateOptions options;
  options.max_tokens = 24;
  options.stop_at_eos = false;
  options.sampling.temperature = 1.5f;
  options.sampling.top_k = 0;
  options.sampling.top_p = 1.0f;
  options.sampling.seed = 7;
  const std::vector<int32_t> prompt = {1};
  const auto a = generate(*model, prompt, options).tokens;
  const auto b = generate(*model, prompt, options).tokens;
  options.sampling.seed = 8;
  const auto c = generate(*model, prompt, options).tokens;
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Generate, CallbackStopsAndStreamsEveryToken) {
  rag::test::TempDir dir;
  auto model = write_and_load(variant("llama", 4, 2, false, false), dir);
  GenerateOptions options;
  options.stop_at_eos = false;
  int calls = 0;
  Generation result = generate(*model, std::vector<int32_t>{1}, options, [&](int32_t, std::string_view) {
    return ++calls < 3;
  });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(result.tokens.size(), 3u);
  EXPECT_EQ(result.stop, StopReason::kCallback);
}

// With a vocabulary: prompts encode with the BOS the vocabulary asks for, the text streams as the
// tokens' pieces (the first word's space dropped after BOS), and the EOS token ends generation unseen.
TEST(Generate, TextAndEndOfSequenceThroughTheVocabulary) {
  TinySpec spec = variant("llama", 4, 2, false, false);
  spec.vocabulary = true;
  rag::test::TempDir dir;
  auto model = write_and_load(spec, dir);
  // (Encoding itself is the tokenizer's business, tested in tests/nn; here only who adds the BOS.)
  EXPECT_EQ(tokenize(*model, "w7", true).front(), 1);
  EXPECT_NE(tokenize(*model, "w7", false).front(), 1);

  GenerateOptions options;
  options.max_tokens = 12;
  options.stop_at_eos = false;
  const std::vector<int32_t> prompt = {1};
  const Generation free_run = generate(*model, prompt, options);
  // Make the fourth distinct greedy token the EOS, and the run must stop right before its first use.
  size_t stop = 3;
  while (stop < free_run.tokens.size() &&
         std::find(free_run.tokens.begin(), free_run.tokens.begin() + static_cast<std::ptrdiff_t>(stop),
                   free_run.tokens[stop]) != free_run.tokens.begin() + static_cast<std::ptrdiff_t>(stop))
    ++stop;
  ASSERT_LT(stop, free_run.tokens.size()) << "greedy run too repetitive for this test";
  spec.eos = free_run.tokens[stop];
  rag::test::TempDir dir2;
  auto with_eos = write_and_load(spec, dir2);
  options.stop_at_eos = true;
  std::string streamed;
  const Generation result = generate(*with_eos, prompt, options, [&](int32_t, std::string_view text) {
    streamed += text;
    return true;
  });
  EXPECT_EQ(result.stop, StopReason::kEos);
  const std::vector<int32_t> expected(free_run.tokens.begin(), free_run.tokens.begin() + static_cast<std::ptrdiff_t>(stop));
  EXPECT_EQ(result.tokens, expected);
  std::string text;
  for (int32_t token : expected)
    if (token > 2) text += " w" + std::to_string(token);  // 0-2 are control tokens: no text
  EXPECT_EQ(result.text, text.substr(1));
  EXPECT_EQ(streamed, result.text);
}

TEST(ContextLength, GenerationStopsAtTheEndOfTheContext) {
  rag::test::TempDir dir;
  TinySpec spec = variant("llama", 4, 2, false, false);
  spec.context = 8;
  auto model = write_and_load(spec, dir);
  GenerateOptions options;
  options.max_tokens = 100;
  options.stop_at_eos = false;
  Generation result = generate(*model, std::vector<int32_t>{1, 2, 3}, options);
  EXPECT_EQ(result.stop, StopReason::kContextFull);
  EXPECT_EQ(result.tokens.size(), 6u);  // one from the prompt's pass, one from each of positions 3..7
}

TEST(ContextLength, OverflowIsALimitError) {
  rag::test::TempDir dir;
  TinySpec spec = variant("llama", 4, 2, false, false);
  spec.context = 8;
  auto model = write_and_load(spec, dir);
  try {
    generate(*model, std::vector<int32_t>(9, 3), GenerateOptions{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kLimit);
    EXPECT_NE(std::string(e.what()).find("context"), std::string::npos) << e.what();
  }
  // The forward pass itself refuses a position past the context, even with room in the cache.
  KvCache cache(model->config().kv_layout(), 32);
  ForwardScratch scratch;
  std::vector<float> logits;
  for (int64_t pos = 0; pos < 8; ++pos) {
    Batch batch{{3}, {pos}, {&cache.blocks()}, {0}};
    model->forward(batch, scratch, logits);
  }
  Batch past{{3}, {8}, {&cache.blocks()}, {1}};
  try {
    model->forward(past, scratch, logits);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kLimit);
  }
  EXPECT_EQ(cache.length(), 8);
}

TEST(Forward, TokenOutsideTheVocabularyIsRejected) {
  rag::test::TempDir dir;
  auto model = write_and_load(variant("llama", 4, 2, false, false), dir);
  try {
    generate(*model, std::vector<int32_t>{1, 48}, GenerateOptions{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kInvalidArgument);
  }
}

// A model file that is not what the loader needs fails with a typed error naming the tensor or key.
TEST(Load, BadModelFilesAreTypedErrorsNamingTheCulprit) {
  struct Case {
    const char* name;
    TinySpec spec;
    Errc code;
    const char* fragment;
  };
  auto omit = [](std::string tensor) {
    TinySpec s;
    s.omit.insert(tensor);
    return s;
  };
  TinySpec bad_arch;
  bad_arch.architecture = "gpt2";
  TinySpec bad_heads;
  bad_heads.heads = 4;
  bad_heads.kv_heads = 3;
  const Case cases[] = {
      {"missing layer tensor", omit("blk.1.ffn_up.weight"), Errc::kCorrupt, "blk.1.ffn_up.weight"},
      {"missing embedding", omit("token_embd.weight"), Errc::kCorrupt, "token_embd.weight"},
      {"missing norm", omit("output_norm.weight"), Errc::kCorrupt, "output_norm.weight"},
      {"unsupported architecture", bad_arch, Errc::kUnsupported, "gpt2"},
      {"heads not a multiple of KV heads", bad_heads, Errc::kCorrupt, "head_count_kv"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    rag::test::TempDir dir;
    write_tiny_model(test::make_tiny_model(c.spec), dir / "model.gguf");
    try {
      Model::load(dir / "model.gguf");
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), c.code) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.fragment), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("model.gguf"), std::string::npos) << e.what();
    }
  }
}

TEST(Load, WrongShapeIsCorrupt) {
  rag::test::TempDir dir;
  test::TinyModel tiny = test::make_tiny_model(TinySpec{});
  tiny.tensors["blk.0.attn_k.weight"].resize(tiny.tensors["blk.0.attn_k.weight"].size() / 2);
  write_tiny_model(tiny, dir / "model.gguf");
  try {
    Model::load(dir / "model.gguf");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kCorrupt);
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_k.weight"), std::string::npos) << e.what();
  }
}

TEST(Load, ModelInfoDescribesTheFile) {
  rag::test::TempDir dir;
  TinySpec spec = variant("qwen2", 8, 2, true, true);
  write_tiny_model(test::make_tiny_model(spec), dir / "model.gguf");
  auto model = load_model(dir / "model.gguf");
  ModelInfo info = model_info(*model);
  EXPECT_EQ(info.architecture, "qwen2");
  EXPECT_EQ(info.vocab_size, spec.vocab);
  EXPECT_EQ(info.context_length, spec.context);
  EXPECT_EQ(info.head_count, 8);
  EXPECT_EQ(info.head_count_kv, 2);
  EXPECT_EQ(info.layer_count, spec.layers);
  EXPECT_EQ(info.weight_type, "F32");
}

}  // namespace
}  // namespace rag::generate
