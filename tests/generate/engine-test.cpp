// The engine against generate(): paged attention over scattered blocks equals the contiguous cache, chunked
// prefill equals one pass, prefix-cache hits (whole blocks and copied partial blocks) and preemption under
// memory pressure change no token, many concurrent requests give what each gives alone, and cancellation
// and limits end only their own request.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "common/error.h"
#include "generate/block-pool.h"
#include "generate/engine.h"
#include "generate/generate.h"
#include "generate/model.h"
#include "tests/generate/tiny-model.h"
#include "tests/support/support.h"

namespace rag::generate {
namespace {

using test::TinySpec;

TinySpec engine_spec() {
  TinySpec s;
  s.vocab = 128;
  s.dim = 32;
  s.ff = 64;
  s.heads = 4;
  s.kv_heads = 2;
  s.context = 160;
  s.seed = 5;
  return s;
}

std::shared_ptr<const Model> load(const TinySpec& spec, const rag::test::TempDir& dir) {
  write_tiny_model(test::make_tiny_model(spec), dir / "model.gguf");
  return std::shared_ptr<const Model>(Model::load(dir / "model.gguf"));
}

std::vector<int32_t> random_prompt(size_t length, uint32_t seed, int32_t vocab = 128) {
  std::mt19937 rng(seed);
  std::vector<int32_t> p = {1};
  while (p.size() < length) p.push_back(static_cast<int32_t>(3 + rng() % static_cast<uint32_t>(vocab - 3)));
  return p;
}

GenerateOptions free_run(int64_t max_tokens) {
  GenerateOptions o;
  o.max_tokens = max_tokens;
  o.stop_at_eos = false;
  o.repetition_window = 0;  // random weights repeat themselves; let the runs go their full length
  return o;
}

Request request(std::vector<int32_t> prompt, GenerateOptions options) {
  Request r;
  r.prompt = std::move(prompt);
  r.options = std::move(options);
  return r;
}

int64_t block_bytes(const Model& model) {
  return model.config().kv_layout().block_bytes();
}

void expect_all_blocks_released(const Engine& engine) {
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.blocks_free + s.blocks_cached, s.blocks_total);
}

// Logits of `tokens` run through `kv` in passes of `chunk` tokens (all at once when chunk is 0).
std::vector<float> run_in_chunks(const Model& model, KvBlocks& kv, const std::vector<int32_t>& tokens, size_t chunk) {
  ForwardScratch scratch;
  std::vector<float> all, logits;
  if (chunk == 0) chunk = tokens.size();
  for (size_t start = 0; start < tokens.size(); start += chunk) {
    Batch batch;
    for (size_t i = start; i < std::min(tokens.size(), start + chunk); ++i) {
      batch.tokens.push_back(tokens[i]);
      batch.positions.push_back(static_cast<int64_t>(i));
      batch.kv.push_back(&kv);
      batch.want_logits.push_back(1);
    }
    model.forward(batch, scratch, logits);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

void expect_close(const std::vector<float>& actual, const std::vector<float>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i)
    ASSERT_NEAR(actual[i], expected[i], 1e-4f * (1.0f + std::abs(expected[i]))) << "logit " << i;
}

// Blocks taken from the pool in a scrambled order, so that neighbouring positions live far apart.
KvBlocks scattered_blocks(BlockPool& pool, int64_t positions) {
  std::vector<int32_t> ids;
  while (pool.free_count() > 0) ids.push_back(pool.allocate());
  std::shuffle(ids.begin(), ids.end(), std::mt19937(3));
  KvBlocks kv = pool.table();
  for (int64_t b = 0; b * kKvBlockTokens < positions; ++b) kv.blocks.push_back(ids[static_cast<size_t>(b)]);
  return kv;
}

// F32 and F16 models: an F32 cache and an F16 one (model.h).
constexpr nn::TensorType kCacheTypes[] = {nn::TensorType::kF32, nn::TensorType::kF16};

TinySpec engine_spec(nn::TensorType type) {
  TinySpec s = engine_spec();
  s.type = type;
  return s;
}

TEST(PagedKv, ScatteredBlocksEqualTheContiguousCache) {
  for (nn::TensorType type : kCacheTypes) {
    SCOPED_TRACE(nn::tensor_type_name(type));
    rag::test::TempDir dir;
    auto model = load(engine_spec(type), dir);
    const auto tokens = random_prompt(70, 11);
    KvCache contiguous(model->config().kv_layout(), 80);
    BlockPool pool(model->config().kv_layout(), 12);
    KvBlocks paged = scattered_blocks(pool, 80);
    expect_close(run_in_chunks(*model, paged, tokens, 1), run_in_chunks(*model, contiguous.blocks(), tokens, 1));
  }
}

// Logits of every position of a 75-token prompt run through scattered blocks in passes of `chunk` tokens (one
// pass when chunk is 0).
std::vector<float> prompt_logits(const Model& model, size_t chunk) {
  BlockPool pool(model.config().kv_layout(), 12);
  KvBlocks kv = scattered_blocks(pool, 80);
  return run_in_chunks(model, kv, random_prompt(75, 12), chunk);
}

TEST(PagedKv, ChunkedPrefillEqualsOnePass) {
  for (nn::TensorType type : kCacheTypes) {
    SCOPED_TRACE(nn::tensor_type_name(type));
    rag::test::TempDir dir;
    auto model = load(engine_spec(type), dir);
    expect_close(prompt_logits(*model, 7), prompt_logits(*model, 0));
  }
}

// With Q8_0 and Q4_0 weights at the x86 levels a prompt's logits do not depend on how it is cut into passes,
// bit for bit: passes of 1 token take matvec, of up to nn::kMatvecBatchTokens matvec_batch, longer ones the
// int8 matrix-matrix kernels, and all of them round each token alike; attention meets each position's keys in
// the same blocks in the same order. So under load (the scheduler's chunks) a seeded request gives what it
// gives alone. The portable level multiplies longer passes through sgemm, as it does F32 weights.
TEST(PagedKv, ChunkedPrefillEqualsOnePassBitForBitWithQuantizedWeights) {
  if (nn::simd_level() == nn::SimdLevel::kPortable) GTEST_SKIP() << "the portable level prefills through sgemm";
  for (nn::TensorType type : {nn::TensorType::kQ8_0, nn::TensorType::kQ4_0}) {
    SCOPED_TRACE(nn::tensor_type_name(type));
    rag::test::TempDir dir;
    auto model = load(engine_spec(type), dir);
    const std::vector<float> expected = prompt_logits(*model, 0);
    for (size_t chunk : {1, 7, 40}) {
      SCOPED_TRACE(chunk);
      const std::vector<float> actual = prompt_logits(*model, chunk);
      ASSERT_EQ(actual.size(), expected.size());
      EXPECT_EQ(std::memcmp(actual.data(), expected.data(), expected.size() * sizeof(float)), 0);
    }
  }
}

// A step holding several sequences' decode tokens and a prompt chunk gives every sequence, bit for bit, the
// logits of its pass alone, with Q8_0 and Q4_0 weights: decode tokens take the matrix-vector kernels (up to
// nn::kMatvecBatchTokens of them round as one matvec each), the prompt the matrix-matrix ones as alone.
TEST(PagedKv, BatchedDecodeLogitsEqualPassesAloneBitForBit) {
  for (nn::TensorType type : {nn::TensorType::kQ8_0, nn::TensorType::kQ4_0}) {
    SCOPED_TRACE(nn::tensor_type_name(type));
    rag::test::TempDir dir;
    TinySpec spec = engine_spec();
    spec.type = type;
    auto model = load(spec, dir);
    const KvLayout layout = model->config().kv_layout();
    const auto vocab = static_cast<size_t>(model->config().vocab_size);
    constexpr int kDecoders = 4;
    std::vector<std::unique_ptr<KvCache>> alone, batched;
    Batch batch;
    for (int i = 0; i < kDecoders; ++i) {
      const auto prompt = random_prompt(static_cast<size_t>(10 + 5 * i), 40 + static_cast<uint32_t>(i));
      for (auto* caches : {&alone, &batched}) {
        caches->push_back(std::make_unique<KvCache>(layout, 64));
        run_in_chunks(*model, caches->back()->blocks(), prompt, 0);
      }
      batch.tokens.push_back(5 + i);
      batch.positions.push_back(static_cast<int64_t>(prompt.size()));
      batch.kv.push_back(&batched.back()->blocks());
      batch.want_logits.push_back(1);
    }
    const auto newcomer = random_prompt(21, 50);
    KvCache newcomer_batched(layout, 64), newcomer_alone(layout, 64);
    for (size_t p = 0; p < newcomer.size(); ++p) {
      batch.tokens.push_back(newcomer[p]);
      batch.positions.push_back(static_cast<int64_t>(p));
      batch.kv.push_back(&newcomer_batched.blocks());
      batch.want_logits.push_back(p + 1 == newcomer.size());
    }
    ForwardScratch scratch;
    std::vector<float> logits, single;
    model->forward(batch, scratch, logits);
    ASSERT_EQ(logits.size(), (kDecoders + 1) * vocab);
    for (int i = 0; i < kDecoders; ++i) {
      const Batch one{{5 + i}, {batch.positions[static_cast<size_t>(i)]}, {&alone[static_cast<size_t>(i)]->blocks()}, {1}};
      model->forward(one, scratch, single);
      EXPECT_EQ(std::memcmp(single.data(), logits.data() + static_cast<size_t>(i) * vocab, vocab * sizeof(float)), 0)
          << "decoder " << i;
    }
    // Alone as generate() runs a prompt: logits of its last token only.
    Batch prompt{newcomer, {}, std::vector<KvBlocks*>(newcomer.size(), &newcomer_alone.blocks()),
                 std::vector<uint8_t>(newcomer.size(), 0)};
    for (size_t p = 0; p < newcomer.size(); ++p) prompt.positions.push_back(static_cast<int64_t>(p));
    prompt.want_logits.back() = 1;
    model->forward(prompt, scratch, single);
    EXPECT_EQ(std::memcmp(single.data(), logits.data() + kDecoders * vocab, vocab * sizeof(float)), 0);
  }
}

TEST(Engine, OneRequestEqualsGenerate) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 20 * block_bytes(*model)});
  const auto prompt = random_prompt(37, 1);
  std::vector<int32_t> streamed;
  Request r = request(prompt, free_run(40));
  r.on_token = [&](int32_t token, std::string_view) {
    streamed.push_back(token);
    return true;
  };
  const Completion done = engine.run(std::move(r));
  const Generation expected = generate(*model, prompt, free_run(40));
  EXPECT_EQ(done.generation.tokens, expected.tokens);
  EXPECT_EQ(done.generation.stop, StopReason::kMaxTokens);
  EXPECT_EQ(streamed, expected.tokens);
  EXPECT_EQ(done.prompt_tokens, 37);
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.tokens_generated, 40);
  EXPECT_EQ(s.tokens_prefilled, 37);
  EXPECT_EQ(s.steps, 40);
  EXPECT_EQ(s.requests_completed, 1);
  expect_all_blocks_released(engine);
}

TEST(Engine, ChunkedPrefillGivesTheSameTokens) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 20 * block_bytes(*model), .step_tokens = 5,
                                     .max_sequences = 2, .prefix_cache = false});
  const auto prompt = random_prompt(53, 2);
  const Completion done = engine.run(request(prompt, free_run(20)));
  EXPECT_EQ(done.generation.tokens, generate(*model, prompt, free_run(20)).tokens);
  EXPECT_EQ(engine.stats().steps, 11 + 19);  // 53 prompt tokens in passes of 5, then one pass per token
}

TEST(Engine, PrefixCacheHitGivesTheSameTokensAndPrefillsLess) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 30 * block_bytes(*model)});
  const auto prompt = random_prompt(50, 3);
  const Completion cold = engine.run(request(prompt, free_run(12)));
  const EngineStats after_cold = engine.stats();
  EXPECT_EQ(cold.cached_tokens, 0);
  EXPECT_EQ(after_cold.tokens_prefilled, 50);
  EXPECT_GT(after_cold.blocks_cached, 0);

  const Completion warm = engine.run(request(prompt, free_run(12)));
  EXPECT_EQ(warm.generation.tokens, cold.generation.tokens);
  EXPECT_EQ(warm.cached_tokens, 48);  // three full blocks
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.tokens_prefilled - after_cold.tokens_prefilled, 2);
  EXPECT_EQ(s.prefix_hit_tokens, 48);
  EXPECT_EQ(s.prefix_miss_tokens, 52);

  // One token past three full blocks: only it is run.
  const std::vector<int32_t> prompt49(prompt.begin(), prompt.begin() + 49);
  const int64_t before49 = engine.stats().tokens_prefilled;
  EXPECT_EQ(engine.run(request(prompt49, free_run(3))).cached_tokens, 48);
  EXPECT_EQ(engine.stats().tokens_prefilled - before49, 1);

  // Cleared, the cache serves nothing: the same prompt is prefilled in full again.
  engine.clear_prefix_cache();
  EXPECT_EQ(engine.stats().blocks_cached, 0);
  EXPECT_EQ(engine.stats().blocks_free, engine.stats().blocks_total);
  EXPECT_EQ(engine.run(request(prompt, free_run(12))).cached_tokens, 0);

  // A prompt continuing the first run's text also reuses its generated blocks.
  std::vector<int32_t> longer = prompt;
  longer.insert(longer.end(), cold.generation.tokens.begin(), cold.generation.tokens.end());
  longer.push_back(7);
  const Completion follow = engine.run(request(longer, free_run(5)));
  EXPECT_EQ(follow.cached_tokens, 48);  // 61 tokens were computed, 3 full blocks
  EXPECT_EQ(follow.generation.tokens, generate(*model, longer, free_run(5)).tokens);
  expect_all_blocks_released(engine);
}

// A prompt that leaves the cached path inside a block: the positions of that block it shares with a cached
// one are copied, not recomputed, and the tokens are those of a cold run.
TEST(Engine, APartialBlockHitCopiesTheAgreeingPositionsAndGivesTheSameTokens) {
  for (nn::TensorType type : kCacheTypes) {
    SCOPED_TRACE(nn::tensor_type_name(type));
    rag::test::TempDir dir;
    auto model = load(engine_spec(type), dir);
    Engine engine(model, EngineOptions{.kv_memory_bytes = 40 * block_bytes(*model)});
    const auto first = random_prompt(60, 40);
    engine.run(request(first, free_run(8)));  // 67 positions computed: blocks 0-3 cached
    // Prompts sharing `shared` leading tokens with `first`, then tokens it does not have.
    auto sharing = [&](size_t shared, size_t length) {
      std::vector<int32_t> p(first.begin(), first.begin() + static_cast<std::ptrdiff_t>(shared));
      for (size_t i = shared; i < length; ++i) {
        const auto token = 100 - static_cast<int32_t>(i % 7);
        p.push_back(token == first[i] ? 110 : token);
      }
      return p;
    };
    struct Case {
      const char* name;
      std::vector<int32_t> prompt;
      int64_t cached;  // 16 per whole block, then the copied positions
    };
    const Case cases[] = {
        {"leaves block 2 after 9 positions", sharing(41, 55), 32 + 9},
        {"leaves block 0 after 5 positions", sharing(5, 30), 5},
        // All cached but the last token, which must be run for its logits: 2 whole blocks and 15 positions.
        {"the first 48 tokens, wholly cached", sharing(48, 48), 32 + 15},
        {"the first prompt again", first, 48 + 11},
    };
    for (const Case& c : cases) {
      SCOPED_TRACE(c.name);
      const int64_t prefilled_before = engine.stats().tokens_prefilled;
      const Completion done = engine.run(request(c.prompt, free_run(10)));
      EXPECT_EQ(done.cached_tokens, c.cached);
      const auto computed = static_cast<int64_t>(c.prompt.size()) - c.cached;
      EXPECT_EQ(engine.stats().tokens_prefilled - prefilled_before, computed);
      EXPECT_EQ(done.generation.tokens, generate(*model, c.prompt, free_run(10)).tokens);
    }
    expect_all_blocks_released(engine);
  }
}

// Requests arriving together with one long public prefix: the first computes it, the others wait for its
// blocks instead of computing the same K/V side by side.
TEST(Engine, ABurstSharingAPrefixPrefillsItOnce) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 60 * block_bytes(*model), .step_tokens = 32});
  // A first request holds the engine in its callback until the burst is queued, so the burst is admitted
  // in one round whatever the timing.
  std::mutex mutex;
  std::condition_variable queued;
  bool all_queued = false;
  Request gate = request(random_prompt(3, 20), free_run(2));
  gate.on_token = [&](int32_t, std::string_view) {
    std::unique_lock lock(mutex);
    queued.wait(lock, [&] { return all_queued; });
    return true;
  };
  Submission gate_done = engine.submit(std::move(gate));
  const auto system = random_prompt(70, 21);  // 4 full blocks
  std::vector<std::vector<int32_t>> prompts;
  std::vector<Submission> burst;
  for (int i = 0; i < 5; ++i) {
    prompts.push_back(system);
    const auto tail = random_prompt(2 + static_cast<size_t>(i), 30 + static_cast<uint32_t>(i));
    prompts.back().insert(prompts.back().end(), tail.begin() + 1, tail.end());
    Request r = request(prompts.back(), free_run(6));
    r.public_prefix_tokens = static_cast<int64_t>(system.size());
    r.cache_salt = "user" + std::to_string(i);
    burst.push_back(engine.submit(std::move(r)));
  }
  {
    std::lock_guard lock(mutex);
    all_queued = true;
  }
  queued.notify_all();
  gate_done.completion.get();
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(i);
    const Completion done = burst[static_cast<size_t>(i)].completion.get();
    EXPECT_EQ(done.cached_tokens, i == 0 ? 0 : 64);
    EXPECT_EQ(done.generation.tokens, generate(*model, prompts[static_cast<size_t>(i)], free_run(6)).tokens);
  }
  EXPECT_EQ(engine.stats().prefix_hit_tokens, 4 * 64);
}

TEST(Engine, SaltsDoNotSharePrivateBlocks) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 40 * block_bytes(*model)});
  const auto prompt = random_prompt(70, 4);
  auto salted = [&](std::string salt) {
    Request r = request(prompt, free_run(4));
    r.cache_salt = std::move(salt);
    r.public_prefix_tokens = 20;  // block 0 is public; block 1 straddles the boundary
    return r;
  };
  const Completion alice = engine.run(salted("alice"));
  const Completion bob = engine.run(salted("bob"));
  const Completion alice_again = engine.run(salted("alice"));
  EXPECT_EQ(alice.cached_tokens, 0);
  EXPECT_EQ(bob.cached_tokens, 16);            // the public block only
  EXPECT_EQ(alice_again.cached_tokens, 64);    // everything cached, in alice's domain
  EXPECT_EQ(bob.generation.tokens, alice.generation.tokens);
  EXPECT_EQ(alice_again.generation.tokens, alice.generation.tokens);
}

// A request that needs every block of the pool, whose only cached blocks are the ones it could copy
// positions from: admission evicts them and goes on (the copy is looked up after), rather than holding the
// source and waiting forever for a block.
TEST(Engine, APartialMatchNeverStandsInTheWayOfAdmission) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 6 * block_bytes(*model)});
  const auto first = random_prompt(80, 50);
  engine.run(request(first, free_run(10)));  // 89 positions: blocks 0-4 cached, the pool's sixth free
  ASSERT_EQ(engine.stats().blocks_cached, 5);
  auto second = random_prompt(90, 51);
  std::copy(first.begin(), first.begin() + 8, second.begin());  // 8 positions of block 0 in common
  const Completion done = engine.run(request(second, free_run(5)));
  EXPECT_EQ(done.cached_tokens, 0);
  EXPECT_EQ(done.generation.tokens, generate(*model, second, free_run(5)).tokens);
  EXPECT_EQ(engine.stats().prefix_evictions, 5);
  expect_all_blocks_released(engine);
}

// Positions copied out of a block obey the rule of whole blocks: only from a block of the request's domain.
TEST(Engine, PartialBlocksAreCopiedOnlyWithinTheTrustDomain) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 40 * block_bytes(*model)});
  const auto prompt = random_prompt(70, 4);
  auto salted = [&](std::vector<int32_t> tokens, std::string salt, int64_t public_tokens) {
    Request r = request(std::move(tokens), free_run(4));
    r.cache_salt = std::move(salt);
    r.public_prefix_tokens = public_tokens;
    return r;
  };
  engine.run(salted(prompt, "alice", 20));  // block 0 public, blocks 1-3 alice's
  // Shares 40 tokens with alice's prompt, then differs.
  std::vector<int32_t> shared(prompt.begin(), prompt.begin() + 40);
  for (int i = 0; i < 20; ++i) shared.push_back(3 + (prompt[static_cast<size_t>(40 + i)] + 1) % 125);
  const Completion bob = engine.run(salted(shared, "bob", 20));
  // Even where alice's block 1 holds only positions inside bob's public prefix, it is hers.
  const Completion bob_public = engine.run(salted(shared, "bob2", 40));
  const Completion alice = engine.run(salted(shared, "alice", 20));
  EXPECT_EQ(bob.cached_tokens, 16);          // the public block; none of alice's block 1
  EXPECT_EQ(bob_public.cached_tokens, 16);
  EXPECT_EQ(alice.cached_tokens, 32 + 8);    // her blocks 0-1 and 8 positions of block 2
  const auto expected = generate(*model, shared, free_run(4)).tokens;
  EXPECT_EQ(bob.generation.tokens, expected);
  EXPECT_EQ(bob_public.generation.tokens, expected);
  EXPECT_EQ(alice.generation.tokens, expected);
}

TEST(Engine, ConcurrentRequestsEqualSequentialGenerate) {
  rag::test::TempDir dir;
  TinySpec spec = engine_spec();
  spec.vocabulary = true;  // text too: streamed pieces must match generate()'s
  auto model = load(spec, dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 100 * block_bytes(*model), .step_tokens = 24,
                                     .max_sequences = 8});
  constexpr int kRequests = 8;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<GenerateOptions> options;
  const auto base = random_prompt(40, 99);
  for (int i = 0; i < kRequests; ++i) {
    prompts.push_back(random_prompt(static_cast<size_t>(5 + 9 * i), 100 + static_cast<uint32_t>(i)));
    if (i % 3 == 0) {  // 0, 3 and 6 share two full blocks
      prompts.back() = base;
      for (int k = 0; k < i; ++k) prompts.back().push_back(10 + k);
    }
    GenerateOptions o = free_run(10 + 4 * i);
    if (i % 2 == 1) {  // seeded sampling: per-request state, independent of the batch
      o.sampling.temperature = 0.9f;
      o.sampling.seed = static_cast<uint64_t>(i);
    }
    if (i == 5) o.stop_strings = {" w9"};
    options.push_back(o);
  }
  std::vector<Completion> results(kRequests);
  std::vector<std::string> streamed(kRequests);
  // Every callback waits until all requests are in, so that they surely run together whatever the timing.
  std::mutex mutex;
  std::condition_variable all_in;
  int submitted = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i)
    threads.emplace_back([&, i] {
      Request r = request(prompts[static_cast<size_t>(i)], options[static_cast<size_t>(i)]);
      r.on_token = [&, i](int32_t, std::string_view text) {
        std::unique_lock lock(mutex);
        all_in.wait(lock, [&] { return submitted == kRequests; });
        streamed[static_cast<size_t>(i)] += text;
        return true;
      };
      Submission s = engine.submit(std::move(r));
      {
        std::lock_guard lock(mutex);
        ++submitted;
      }
      all_in.notify_all();
      results[static_cast<size_t>(i)] = s.completion.get();
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < kRequests; ++i) {
    SCOPED_TRACE(i);
    const auto& p = prompts[static_cast<size_t>(i)];
    const Generation expected = generate(*model, p, options[static_cast<size_t>(i)]);
    const Generation& actual = results[static_cast<size_t>(i)].generation;
    EXPECT_EQ(actual.tokens, expected.tokens);
    EXPECT_EQ(actual.text, expected.text);
    EXPECT_EQ(actual.stop, expected.stop);
    EXPECT_EQ(streamed[static_cast<size_t>(i)], expected.text);
  }
  expect_all_blocks_released(engine);
  EXPECT_LT(engine.stats().steps, engine.stats().tokens_generated);  // sequences did share passes
}

// Greedy decoding of quantized weights in a shared batch gives exactly the tokens of generate(): random
// weights leave near-tied logits, so a batch that rounded differently from one stream would change some.
// Steps hold at most nn::kMatvecBatchTokens tokens and so do the prompts, so every product in both takes the
// matrix-vector kernels, which round each token's row alike whatever else is in the batch, at every SIMD
// level: prompt chunks split across steps change nothing either. Callbacks wait until every request is in,
// so they share steps.
TEST(Engine, ConcurrentGreedyOnQuantizedWeightsEqualsGenerate) {
  static_assert(9 + 4 * 5 <= nn::kMatvecBatchTokens);
  for (nn::TensorType type : {nn::TensorType::kQ8_0, nn::TensorType::kQ4_0}) {
    SCOPED_TRACE(nn::tensor_type_name(type));
    rag::test::TempDir dir;
    TinySpec spec = engine_spec();
    spec.type = type;
    auto model = load(spec, dir);
    Engine engine(model, EngineOptions{.kv_memory_bytes = 100 * block_bytes(*model),
                                       .step_tokens = nn::kMatvecBatchTokens, .max_sequences = 6});
    constexpr int kRequests = 6;
    std::promise<void> submitted;
    std::shared_future<void> all_in = submitted.get_future().share();
    std::vector<std::vector<int32_t>> prompts;
    std::vector<Submission> running;
    for (int i = 0; i < kRequests; ++i) {
      prompts.push_back(random_prompt(static_cast<size_t>(9 + 4 * i), 200 + static_cast<uint32_t>(i)));
      Request r = request(prompts.back(), free_run(30));
      r.on_token = [all_in](int32_t, std::string_view) {
        all_in.wait();
        return true;
      };
      running.push_back(engine.submit(std::move(r)));
    }
    submitted.set_value();
    for (int i = 0; i < kRequests; ++i) {
      SCOPED_TRACE(i);
      const Completion done = running[static_cast<size_t>(i)].completion.get();
      EXPECT_EQ(done.generation.tokens, generate(*model, prompts[static_cast<size_t>(i)], free_run(30)).tokens);
    }
    EXPECT_LT(engine.stats().steps, engine.stats().tokens_generated);  // sequences did share passes
  }
}

// A pool of 7 blocks (112 positions) for sequences of up to 4-5 blocks each: admission waits, decoding runs
// out of blocks, the youngest sequence is preempted and recomputed. No output may change.
TEST(Engine, MemoryPressureChangesNoOutput) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  for (bool prefix_cache : {true, false}) {
    SCOPED_TRACE(prefix_cache ? "prefix cache" : "no prefix cache");
    Engine engine(model, EngineOptions{.kv_memory_bytes = 7 * block_bytes(*model), .step_tokens = 16,
                                       .max_sequences = 4, .prefix_cache = prefix_cache});
    std::vector<std::vector<int32_t>> prompts;
    std::vector<Submission> submissions;
    for (int i = 0; i < 5; ++i) {
      prompts.push_back(random_prompt(static_cast<size_t>(10 + 7 * i), 200 + static_cast<uint32_t>(i)));
      submissions.push_back(engine.submit(request(prompts.back(), free_run(40))));
    }
    int64_t preemptions = 0;
    for (int i = 0; i < 5; ++i) {
      SCOPED_TRACE(i);
      const Completion done = submissions[static_cast<size_t>(i)].completion.get();
      preemptions += done.preemptions;
      EXPECT_EQ(done.generation.tokens, generate(*model, prompts[static_cast<size_t>(i)], free_run(40)).tokens);
    }
    EXPECT_GT(preemptions, 0);
    EXPECT_EQ(engine.stats().preemptions, preemptions);
    if (prefix_cache) {
      EXPECT_GT(engine.stats().prefix_evictions, 0);
    }
    expect_all_blocks_released(engine);
  }
}

// Many requests of random shape (shared prefixes across two salts, public prefixes, sampling, stop
// strings, cancels from callbacks) through a pool of 9 blocks, 3 sequences and 8 tokens a step: admission
// waits, prefills are chunked, blocks are shared, evicted and preempted. Each request that was not cancelled
// gives exactly what generate() gives it alone, and every block comes back.
EngineStats random_workload(const std::shared_ptr<const Model>& model, uint32_t seed) {
  std::mt19937 rng(seed);
  EngineOptions options{.kv_memory_bytes = 9 * block_bytes(*model), .step_tokens = 8, .max_sequences = 3};
  if (seed != 42) {  // other seeds vary the engine too
    options.kv_memory_bytes = static_cast<int64_t>(9 + rng() % 8) * block_bytes(*model);
    options.step_tokens = 1 + rng() % 24;
    options.max_sequences = 1 + rng() % 6;
    options.prefix_cache = rng() % 4 != 0;
  }
  Engine engine(model, options);
  const auto base = random_prompt(45, 77);
  struct Case {
    Request request;
    bool cancels = false;
  };
  std::vector<Case> cases;
  for (int i = 0; i < 16; ++i) {
    const size_t shared = rng() % 3 == 0 ? 0 : 16 + rng() % 30;
    std::vector<int32_t> prompt(base.begin(), base.begin() + static_cast<std::ptrdiff_t>(shared));
    if (prompt.empty()) prompt.push_back(1);
    const auto tail = random_prompt(1 + rng() % 40, 300 + static_cast<uint32_t>(i));
    prompt.insert(prompt.end(), tail.begin() + 1, tail.end());
    GenerateOptions o = free_run(5 + static_cast<int64_t>(rng() % 40));
    if (rng() % 2) {
      o.sampling.temperature = 0.8f;
      o.sampling.seed = rng();
    }
    if (rng() % 4 == 0) o.stop_strings = {" w1"};
    Case c{request(prompt, o), rng() % 5 == 0};
    c.request.cache_salt.assign(1, rng() % 2 ? 'a' : 'b');  // not = "a": GCC 12 warns falsely (-Wrestrict)
    c.request.public_prefix_tokens = static_cast<int64_t>(rng() % 40);
    cases.push_back(std::move(c));
  }
  std::vector<Submission> submissions;
  for (Case& c : cases) {
    Request r = c.request;
    if (c.cancels) r.on_token = [n = 0](int32_t, std::string_view) mutable { return ++n < 4; };
    submissions.push_back(engine.submit(std::move(r)));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    const Completion done = submissions[i].completion.get();
    const Generation expected = generate(*model, cases[i].request.prompt, cases[i].request.options);
    if (cases[i].cancels && expected.tokens.size() >= 4) {
      EXPECT_EQ(done.generation.stop, StopReason::kCallback);
      EXPECT_EQ(done.generation.tokens, std::vector<int32_t>(expected.tokens.begin(), expected.tokens.begin() + 4));
    } else {
      EXPECT_EQ(done.generation.tokens, expected.tokens);
      EXPECT_EQ(done.generation.text, expected.text);
      EXPECT_EQ(done.generation.stop, expected.stop);
    }
  }
  expect_all_blocks_released(engine);
  EXPECT_EQ(engine.stats().requests_completed, 16);
  return engine.stats();
}

TEST(Engine, RandomWorkloadUnderPressureMatchesGenerate) {
  // RAG_ENGINE_SEEDS=N runs seeds 1..N instead: a longer hunt for scheduling bugs, by hand. With F32 weights,
  // of seeds 1..1000, 385 and 498 fail on near-ties, not bugs: a prompt run in other chunks (the schedule's)
  // gets logits within 1e-6 of one pass (F32 matmul is OpenBLAS's sgemm, whose rounding depends on the token
  // count and differs from matvec's, nn/kernels.h), which moves a T = 0.8 draw (385, case 15: the engine's
  // first token is what chunks of 10 or 11 give) or a greedy pick after a preemption (498). Quantized weights
  // round alike in any chunks at the x86 levels (PagedKv.ChunkedPrefillEqualsOnePassBitForBitWithQuantizedWeights):
  // there all 1000 seeds pass (Q8_0, and Q4_0 by hand, on the AVX2 level).
  const char* seeds = std::getenv("RAG_ENGINE_SEEDS");
  const uint32_t first = seeds ? 1 : 42, last = seeds ? static_cast<uint32_t>(std::atoi(seeds)) : 42;
  for (nn::TensorType type : {nn::TensorType::kF32, nn::TensorType::kQ8_0}) {
    // The portable level prefills quantized weights through sgemm with float activations and decodes them
    // with int8 ones: there the schedule moves more than near-ties.
    if (type != nn::TensorType::kF32 && nn::simd_level() == nn::SimdLevel::kPortable) continue;
    SCOPED_TRACE(nn::tensor_type_name(type));
    rag::test::TempDir dir;
    TinySpec spec = engine_spec(type);
    spec.vocabulary = true;
    auto model = load(spec, dir);
    for (uint32_t seed = first; seed <= last; ++seed) {
      SCOPED_TRACE(seed);
      const EngineStats s = random_workload(model, seed);
      if (first == last) {
        EXPECT_GT(s.prefix_hit_tokens, 0);
        EXPECT_GT(s.preemptions, 0);
        EXPECT_GT(s.prefix_evictions, 0);
      }
    }
  }
}

// A sequence alone in a pool too small for it ends as at the end of its context.
TEST(Engine, ASequenceFillingThePoolStopsWithContextFull) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 2 * block_bytes(*model)});
  const auto prompt = random_prompt(20, 5);
  const Completion done = engine.run(request(prompt, free_run(100)));
  EXPECT_EQ(done.generation.stop, StopReason::kContextFull);
  EXPECT_EQ(done.generation.tokens.size(), 13u);  // positions 20..31 computed, one token sampled from each + 1
  const auto expected = generate(*model, prompt, free_run(13)).tokens;
  EXPECT_EQ(done.generation.tokens, expected);
}

TEST(Engine, CancelEndsTheRequestAndFreesItsBlocks) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 20 * block_bytes(*model)});
  std::mutex mutex;
  std::condition_variable cv;
  bool reached = false, cancelled = false;
  Request r = request(random_prompt(30, 6), free_run(100));
  int calls = 0;
  r.on_token = [&](int32_t, std::string_view) {
    if (++calls == 5) {  // hold the engine until the test has cancelled, so the cancel lands after token 5
      std::unique_lock lock(mutex);
      reached = true;
      cv.notify_all();
      cv.wait(lock, [&] { return cancelled; });
    }
    return true;
  };
  Submission s = engine.submit(std::move(r));
  {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return reached; });
  }
  engine.cancel(s.id);
  {
    std::lock_guard lock(mutex);
    cancelled = true;
  }
  cv.notify_all();
  const Completion done = s.completion.get();
  EXPECT_EQ(done.generation.stop, StopReason::kCallback);
  EXPECT_EQ(done.generation.tokens.size(), 5u);
  expect_all_blocks_released(engine);
  engine.cancel(s.id);  // already ended: nothing happens
  engine.cancel(12345);
}

TEST(Engine, CallbackReturningFalseStopsLikeGenerate) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 20 * block_bytes(*model)});
  Request r = request(random_prompt(9, 7), free_run(50));
  int calls = 0;
  r.on_token = [&](int32_t, std::string_view) { return ++calls < 3; };
  const Completion done = engine.run(std::move(r));
  EXPECT_EQ(done.generation.stop, StopReason::kCallback);
  EXPECT_EQ(done.generation.tokens.size(), 3u);
  expect_all_blocks_released(engine);
}

TEST(Engine, CallbackThatThrowsFailsOnlyItsRequest) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  Engine engine(model, EngineOptions{.kv_memory_bytes = 20 * block_bytes(*model)});
  Request bad = request(random_prompt(9, 8), free_run(50));
  bad.on_token = [](int32_t, std::string_view) -> bool { throw std::runtime_error("client went away"); };
  Submission failing = engine.submit(std::move(bad));
  const auto prompt = random_prompt(12, 9);
  Submission good = engine.submit(request(prompt, free_run(10)));
  EXPECT_THROW(failing.completion.get(), std::runtime_error);
  EXPECT_EQ(good.completion.get().generation.tokens, generate(*model, prompt, free_run(10)).tokens);
  expect_all_blocks_released(engine);
}

TEST(Engine, OverlongPromptIsALimitErrorForThatRequestOnly) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);  // context 160
  Engine engine(model, EngineOptions{.kv_memory_bytes = 8 * block_bytes(*model)});  // 128 positions
  const auto prompt = random_prompt(20, 10);
  Submission fine = engine.submit(request(prompt, free_run(10)));
  struct Case {
    size_t length;
    const char* fragment;
  };
  for (const Case& c : {Case{161, "context holds 160"}, Case{129, "KV pool holds 128"}}) {
    try {
      engine.submit(request(random_prompt(c.length, 11), free_run(10)));
      ADD_FAILURE() << "expected an error for " << c.length << " tokens";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kLimit);
      EXPECT_NE(std::string(e.what()).find(c.fragment), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::to_string(c.length)), std::string::npos) << e.what();
    }
  }
  try {
    engine.submit(request({1, 500}, free_run(10)));
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kInvalidArgument);
  }
  EXPECT_EQ(fine.completion.get().generation.tokens, generate(*model, prompt, free_run(10)).tokens);
}

TEST(Engine, ZeroMaxTokensAndShutdownWithRequestsInFlight) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  std::vector<Submission> pending;
  {
    Engine engine(model, EngineOptions{.kv_memory_bytes = 8 * block_bytes(*model)});
    const Completion none = engine.run(request(random_prompt(5, 12), free_run(0)));
    EXPECT_TRUE(none.generation.tokens.empty());
    EXPECT_EQ(none.generation.stop, StopReason::kMaxTokens);
    for (int i = 0; i < 4; ++i) pending.push_back(engine.submit(request(random_prompt(60, 13), free_run(100))));
  }
  for (Submission& s : pending) {
    const Completion done = s.completion.get();  // every request ends, none is left hanging
    EXPECT_TRUE(done.generation.stop == StopReason::kCallback || done.generation.stop == StopReason::kMaxTokens ||
                done.generation.stop == StopReason::kContextFull);
  }
}

TEST(Engine, OptionsOutOfRangeAreRejected) {
  rag::test::TempDir dir;
  auto model = load(engine_spec(), dir);
  EXPECT_THROW(Engine(model, EngineOptions{.kv_memory_bytes = block_bytes(*model) - 1}), Error);
  EXPECT_THROW(Engine(model, EngineOptions{.step_tokens = 0}), Error);
  EXPECT_EQ(Engine(model, EngineOptions{.kv_memory_bytes = block_bytes(*model), .step_tokens = 4}).options().max_sequences, 4);
  EXPECT_THROW(Engine(model, EngineOptions{.max_sequences = 0}), Error);
}

}  // namespace
}  // namespace rag::generate
