// The generator engine: many sequences at once over one model, with a paged KV cache, a prefix cache and a
// continuous-batching scheduler on its own thread.
//
//   rag::generate::EngineOptions options;                  // --kv-mem, step token budget
//   rag::generate::Engine engine(model, options);
//   rag::generate::Request request;
//   request.prompt = tokenize(*model, text, true);
//   request.options.max_tokens = 200;
//   request.cache_salt = acl_fingerprint + "@" + generation;  // who may reuse the KV of its private part
//   request.public_prefix_tokens = system_prompt_tokens;      // leading tokens anyone may share
//   request.on_token = [](int32_t, std::string_view text) { send(text); return true; };   // engine thread
//   rag::generate::Submission s = engine.submit(std::move(request));   // returns at once; any thread
//   rag::generate::Completion done = s.completion.get();               // blocks; rethrows its error
//
// Design
// ------
// Memory. The KV pool is one allocation of kv_memory_bytes / block_bytes blocks, each every layer's K and V
// for 16 consecutive positions. DESIGN.md speaks of per-layer pools, and the memory is laid out as such
// (kv-cache.h: a plane per layer and KV head, so that attention streams one layer and head of a sequence as
// one run), but one block id stands for a block in every plane: every sequence needs all layers of every
// position it holds, so per-layer pools would always allocate in lock step, and a single id per 16
// positions keeps block tables, reference counts and the prefix tree L times smaller. A sequence's block
// table (KvBlocks) lists its blocks in position order; they may be any of the pool's. Blocks are reference-counted: a block filled with 16 positions may be shared by
// several sequences and the prefix cache; a sequence only ever writes positions past every shared block.
//
// Prefix cache. A radix tree whose edges are FULL blocks of 16 token ids. A path from the root spells the
// leading tokens of some earlier sequence, and each node holds (a reference to) the block with their K/V.
// On admission a request walks the tree along its prompt and takes the longest match (at most the prompt
// minus its last token, which must be run to get logits); where its prompt then leaves the tree inside a
// block, the leading positions it shares with a cached block there (same trust domain) are copied into a
// block of its own (PrefixCache::match_partial). It prefills only the rest. Blocks are entered
// as soon as a sequence fills them (prompt or generated tokens) and when it ends or is preempted. Keys
// carry a trust domain: a block lying wholly inside Request::public_prefix_tokens is keyed by its tokens
// alone and shared by every request; any later block is keyed by its tokens and Request::cache_salt, so it
// serves only requests with the same salt (DESIGN.md "Trust boundaries"). A cached block that no sequence
// references is evicted least-recently-used, leaves first, when the pool has no free block.
//
// Scheduling. One thread runs steps; a step is ONE Model::forward call. Each step, in this order:
//   1. takes new submissions and cancellations (Engine::cancel ends a request between steps; a request
//      whose callback returned false ended inside the previous step);
//   2. gives every running sequence the blocks its pending tokens need. Only a decoding sequence crossing
//      into a new block can lack one; it takes a free block, else evicts the least recently used idle
//      cached block, else the youngest running sequence (latest submitted) is preempted: its full blocks
//      go to the prefix cache, all its blocks are released, and it returns to the waiting queue in arrival
//      order with its prompt and generated tokens, to be recomputed (mostly from the prefix cache, unless
//      evicted meanwhile) when blocks free up. Its sampler, text and stop state are kept, so the recompute
//      continues the same generation. A sequence alone in the engine that still finds no block ends with
//      StopReason::kContextFull: the pool is its context;
//   3. admits waiting requests in arrival order while fewer than max_sequences run and the pool (free plus
//      idle cached blocks) holds every block of the request's tokens beyond its cached prefix. An admitted
//      request gets all of its prompt blocks at once, so its prefill never stalls for memory; one that does
//      not fit blocks those behind it (arrival order is kept, so a long prompt is not starved). A request
//      whose next uncached block a running sequence is still prefilling (same tokens, same trust domain)
//      also waits, for that block to enter the cache: a burst of requests with one system prompt computes
//      it once;
//   4. assembles the batch: the next token of every decoding sequence (oldest first), then chunks of
//      pending prefills (oldest first) until step_tokens tokens are in (chunked prefill: a long prompt takes
//      several steps while the others keep decoding), and runs it;
//   5. samples each sequence whose pending tokens are all computed, streams its text and ends it when a stop
//      condition holds, with exactly the per-sequence logic of generate() (continuation.h): sampling state
//      seeded per request, penalties, stop tokens and strings, repetition, max_tokens, context length;
//      then enters newly filled blocks in the prefix cache. Ended sequences release their blocks at once
//      and their completion is fulfilled from the engine thread.
// Results do not depend on what else is in a batch beyond float rounding, and for Q8_0 and Q4_0 weights not
// even that in the common case: a step's decode tokens take the matrix-vector kernels apart from its prompt
// chunks (Model::forward), and up to nn::kMatvecBatchTokens of them round exactly as one token's matvec;
// a prompt run in one step takes the matrix-matrix kernels as generate() does when it is longer than
// kMatvecBatchTokens; logits of up to kMatvecBatchTokens sequences per step round as one's. So greedy
// tokens equal generate()'s bit for bit with at most kMatvecBatchTokens sequences running, prompts longer
// than that, and no chunked prefill; or with steps of at most kMatvecBatchTokens tokens and prompts no
// longer, where every product takes the matrix-vector kernels, chunked or not. Beyond that (more
// sequences, float weights through sgemm, a long prompt split across steps) rounding differs and, on models
// with near-tied logits (random test weights), a greedy token may differ; one sequence at a time (max_sequences 1) with its prompt in one step
// (step_tokens at least its length) always gives exactly the tokens of generate().
//
// Limits per request: max_tokens and the stop conditions are checked after every token; a deadline is the
// caller's: wait_for() on the completion, then cancel(id).
//
// Threads. submit(), cancel(), stats() and the destructor may be called from any thread at any time.
// Token callbacks run on the engine thread inside a step: they must be quick (copy the text to a queue or
// socket buffer); they may call submit(), cancel() and stats(), but must not wait for a completion (the
// engine would wait for itself). A callback that throws ends its own request with that exception.
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "generate/generate.h"

namespace rag::generate {

struct EngineOptions {
  // Bytes of the KV pool (the `--kv-mem` of the CLIs), rounded down to whole blocks. One block holds 16
  // positions of every layer: layer_count × 2 × 16 × kv_dim values, 2 bytes each (F16) or 4 for F32
  // models (Engine::block_bytes(); model.h).
  int64_t kv_memory_bytes = int64_t{1} << 30;
  // Tokens in one forward pass at most: decoding sequences' next tokens plus prefill chunks.
  int64_t step_tokens = 512;
  // Sequences running (holding blocks, in the batch) at once; the rest wait in arrival order. At most
  // step_tokens (lowered to it), so every running sequence decodes in every step.
  int64_t max_sequences = 64;
  // Off: no block is shared, every prompt is prefilled in full (for comparisons and benchmarks).
  bool prefix_cache = true;
};

struct Request {
  std::vector<int32_t> prompt;  // non-empty; the caller adds the BOS
  GenerateOptions options;      // as for generate()
  // Trust domain of the prompt's private part: KV blocks past public_prefix_tokens are reused only by
  // requests with the same salt. Choose it so that equal salts may see the same text, e.g. the principal's
  // ACL fingerprint and the index generation. Empty is a domain too (all unsalted requests share).
  std::string cache_salt;
  // The leading prompt tokens that hold no private text (system prompt, fixed instructions): blocks lying
  // wholly inside them are shared by all requests whatever their salt. 0 shares nothing across salts.
  int64_t public_prefix_tokens = 0;
  // Gets each generated token and the text it releases, exactly as generate()'s callback (whole UTF-8
  // characters; text that may still become a stop string held back). Return false to stop (kCallback).
  // Runs on the engine thread: keep it short. May be empty.
  TokenCallback on_token;
};

using RequestId = uint64_t;

struct Completion {
  Generation generation;        // tokens, text and stop reason, as generate() returns them
  int64_t prompt_tokens = 0;    // tokens of the request's prompt
  int64_t cached_tokens = 0;    // of those, served by the prefix cache at first admission (whole blocks
                                // and positions copied from a partly matching block)
  int64_t preemptions = 0;      // times the request lost its blocks and was recomputed
  double queue_seconds = 0;     // from submit() to first admission
  double first_token_seconds = 0;  // from submit() to the first token sampled (0 when none was)
  double total_seconds = 0;     // from submit() to the end
};

struct Submission {
  RequestId id = 0;                       // for Engine::cancel
  std::future<Completion> completion;     // ready when the request ends; get() rethrows its error
};

// A snapshot for metrics; counters are totals since the engine started.
struct EngineStats {
  int64_t running = 0;              // sequences admitted (holding blocks)
  int64_t waiting = 0;              // submitted or preempted, not yet admitted
  int64_t blocks_total = 0;         // blocks in the pool
  int64_t blocks_free = 0;          // holding nothing
  int64_t blocks_cached = 0;        // held only by the prefix cache: reusable, evicted when needed
  int64_t block_tokens = 16;        // positions per block
  int64_t block_bytes = 0;          // bytes per block (Engine::block_bytes())
  int64_t prefix_hit_tokens = 0;    // prompt tokens served by the prefix cache at admission
  int64_t prefix_miss_tokens = 0;   // prompt tokens that had to be prefilled
  int64_t prefix_evictions = 0;     // cached blocks evicted
  int64_t tokens_prefilled = 0;     // tokens run through the model to fill caches (prompts, recomputes)
  int64_t tokens_generated = 0;     // tokens sampled
  int64_t steps = 0;                // forward passes
  int64_t preemptions = 0;
  int64_t requests_completed = 0;   // ended, whatever the reason (errors included)
};

class Engine {
 public:
  // Allocates the pool and starts the engine thread. Throws Error(kInvalidArgument) when step_tokens or
  // max_sequences is below 1 or kv_memory_bytes holds less than one block (the message gives its size);
  // Error(kLimit) when the memory cannot be reserved.
  Engine(std::shared_ptr<const Model> model, const EngineOptions& options = {});
  // Ends every request still running or waiting (StopReason::kCallback, as a cancel) and joins the thread.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request and returns at once. Throws, on the caller's thread and before queueing:
  // Error(kInvalidArgument) for an empty prompt, a token id outside the vocabulary or an option out of
  // range (as generate()); Error(kLimit) when the prompt alone exceeds the model's context length or the
  // whole pool, naming both numbers; Error(kBusy) once the destructor has begun. Errors met later (none
  // are expected) arrive through the completion.
  Submission submit(Request request);
  // Ends the request between steps with StopReason::kCallback and what it generated so far; its blocks
  // are released. No effect when it has already ended or the id is unknown.
  void cancel(RequestId id);
  // submit() then wait for the completion.
  Completion run(Request request);
  // Evicts every cached block no running sequence holds, between steps, and returns once done: for when
  // cached K/V may no longer be served (a new index generation or changed ACLs when the salt does not
  // already change with them). Blocks of running sequences stay, reachable only with their salt. Not from
  // a token callback (it would wait for the engine thread it runs on).
  void clear_prefix_cache();

  EngineStats stats() const;
  const EngineOptions& options() const;  // as in effect (max_sequences at most step_tokens)
  const Model& model() const;
  int64_t block_bytes() const;   // bytes of one block of the pool

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rag::generate
