#include "generate/engine.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_set>
#include <utility>

#include "common/error.h"
#include "common/fault.h"
#include "common/live-count.h"
#include "common/log.h"
#include "generate/block-pool.h"
#include "generate/continuation.h"
#include "generate/model.h"
#include "generate/prefix-cache.h"

namespace rag::generate {
namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point from, Clock::time_point to) { return std::chrono::duration<double>(to - from).count(); }
int64_t blocks_for(int64_t positions) { return (positions + kKvBlockTokens - 1) / kKvBlockTokens; }

// One request inside the engine. Heap-allocated and never moved, so a batch may point at its KvBlocks.
struct Sequence {
  RequestId id = 0;
  std::string salt;
  int64_t public_tokens = 0;
  int64_t prompt_tokens = 0;
  // The prompt, then every generated token. K/V are computed for [0, kv.length); the rest are pending:
  // the whole prompt at first, then just the last sampled token, or everything again after a preemption.
  std::vector<int32_t> tokens;
  std::unique_ptr<Continuation> continuation;
  KvBlocks kv;                    // over the engine's pool once admitted
  int64_t entered_blocks = 0;     // leading full blocks already in the prefix cache
  std::promise<Completion> promise;
  Completion info;
  Clock::time_point submitted;
  bool admitted_once = false;
  bool sampled_once = false;
  bool ended = false;             // marked inside a step, removed from `running` after it

  CacheDomain domain() const { return {salt, public_tokens}; }
  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - kv.length; }
};

using SequencePtr = std::unique_ptr<Sequence>;

// Keeps `list` in arrival order (ids grow with submission), so the oldest request goes first everywhere.
// When the list cannot grow (std::bad_alloc), `seq` is left as it was, for the caller to finish.
template <typename List>
void insert_by_id(List& list, SequencePtr& seq) {
  auto at = std::upper_bound(list.begin(), list.end(), seq->id, [](RequestId id, const SequencePtr& s) { return id < s->id; });
  list.insert(at, std::move(seq));
}

}  // namespace

struct Engine::Impl {
  Impl(std::shared_ptr<const Model> model_in, const EngineOptions& options_in, int64_t block_count)
      : model(std::move(model_in)), options(options_in), pool(model->config().kv_layout(), block_count) {
    if (options.prefix_cache) cache = std::make_unique<PrefixCache>(pool);
  }

  void loop();
  void intake(std::vector<SequencePtr> fresh, const std::unordered_set<RequestId>& cancelled);
  void reserve_blocks();
  void admit();
  bool prefilling_same_block(const Sequence& seq, int64_t index) const;
  bool step();
  void end(Sequence& seq, StopReason reason);
  void finish(SequencePtr seq, std::exception_ptr error = nullptr);
  // insert_by_id, or, when that fails, ends `seq` with the error: never a lost request or its blocks.
  template <typename List>
  void place(List& list, SequencePtr seq);
  void sweep();
  void preempt(size_t index);
  void release_blocks(Sequence& seq, bool enter_in_cache);
  void enter_full_blocks(Sequence& seq);
  int32_t allocate_block();
  void release_block(int32_t block);
  void publish();

  std::shared_ptr<const Model> model;
  EngineOptions options;
  BlockPool pool;
  std::unique_ptr<PrefixCache> cache;  // null when options.prefix_cache is off

  // Shared with callers' threads, under `mutex`.
  std::mutex mutex;
  std::condition_variable wake;
  std::vector<SequencePtr> incoming;
  std::unordered_set<RequestId> cancels;
  std::vector<std::promise<void>> clears;  // clear_prefix_cache() calls waiting for the engine thread
  bool stopping = false;
  RequestId next_id = 1;
  EngineStats published;

  // The engine thread's own.
  std::deque<SequencePtr> waiting;   // arrival order
  std::vector<SequencePtr> running;  // arrival order: the back is the youngest
  EngineStats counters;              // the totals of `published`
  ForwardScratch scratch;
  std::vector<float> logits;
  Batch batch;
  std::thread thread;
};

void Engine::Impl::publish() {
  EngineStats s = counters;
  // Sequences being finished are still in `running` (moved out, or marked ended): not counted.
  s.running = std::count_if(running.begin(), running.end(), [](const SequencePtr& seq) { return seq && !seq->ended; });
  s.blocks_total = pool.block_count();
  s.blocks_free = pool.free_count();
  s.blocks_cached = cache ? cache->idle_blocks() : 0;
  s.block_tokens = kKvBlockTokens;
  s.block_bytes = pool.layout().block_bytes();
  s.prefix_evictions = cache ? cache->evictions() : 0;
  std::lock_guard lock(mutex);
  s.waiting = static_cast<int64_t>(waiting.size() + incoming.size());
  published = s;
}

void Engine::Impl::release_block(int32_t block) {
  if (cache) cache->release(block);
  else pool.release(block);
}

int32_t Engine::Impl::allocate_block() {
  int32_t block = pool.allocate();
  if (block < 0 && cache && cache->evict(1) == 1) block = pool.allocate();
  return block;
}

void Engine::Impl::enter_full_blocks(Sequence& seq) {
  const int64_t full = seq.kv.length / kKvBlockTokens;
  if (!cache || full <= seq.entered_blocks) return;
  cache->insert(seq.tokens, seq.domain(), std::span<const int32_t>(seq.kv.blocks).first(static_cast<size_t>(full)));
  seq.entered_blocks = full;
}

void Engine::Impl::release_blocks(Sequence& seq, bool enter_in_cache) {
  if (enter_in_cache) enter_full_blocks(seq);
  // Last block first, so that the free stack gives them back in order (block-pool.h).
  for (auto block = seq.kv.blocks.rbegin(); block != seq.kv.blocks.rend(); ++block) release_block(*block);
  seq.kv.blocks.clear();
  seq.kv.length = 0;
  seq.entered_blocks = 0;
}

// Ends `seq` from outside its callback (cancel, engine shutdown, pool exhausted) and marks it for sweep().
void Engine::Impl::end(Sequence& seq, StopReason reason) {
  seq.ended = true;
  try {
    seq.continuation->stop(reason);
  } catch (...) {
    // A callback that throws while the held-back text is released: the request still ends, as it asked.
  }
}

void Engine::Impl::finish(SequencePtr seq, std::exception_ptr error) {
  release_blocks(*seq, error == nullptr);
  ++counters.requests_completed;
  // Publish before fulfilling, so a caller woken by the completion sees the blocks back in the stats.
  publish();
  const auto now = Clock::now();
  Completion& info = seq->info;
  info.prompt_tokens = seq->prompt_tokens;
  info.total_seconds = seconds(seq->submitted, now);
  if (error) {
    spdlog::warn("generate: request {} failed after {} tokens", seq->id, seq->continuation->result().tokens.size());
    seq->promise.set_exception(error);
    return;
  }
  info.generation = seq->continuation->take_result();
  spdlog::debug("generate: request {} done: {} prompt tokens ({} cached), {} generated, {}, {} preemptions, {:.3f} s",
                seq->id, info.prompt_tokens, info.cached_tokens, info.generation.tokens.size(),
                finish_reason(info.generation.stop), info.preemptions, info.total_seconds);
  seq->promise.set_value(std::move(info));
}

template <typename List>
void Engine::Impl::place(List& list, SequencePtr seq) {
  try {
    insert_by_id(list, seq);
  } catch (...) {
    finish(std::move(seq), std::current_exception());
  }
}

// Removes the sequences a step ended from `running` and completes them.
void Engine::Impl::sweep() {
  std::vector<SequencePtr> keep;
  keep.reserve(running.size());
  for (SequencePtr& seq : running) {
    if (seq->ended) finish(std::move(seq));
    else keep.push_back(std::move(seq));
  }
  running = std::move(keep);
}

void Engine::Impl::preempt(size_t index) {
  SequencePtr seq = std::move(running[index]);
  running.erase(running.begin() + static_cast<std::ptrdiff_t>(index));
  // Its full blocks stay in the prefix cache: unless evicted meanwhile, recomputing it costs little.
  release_blocks(*seq, true);
  ++seq->info.preemptions;
  ++counters.preemptions;
  spdlog::debug("generate: request {} preempted at {} tokens (KV pool full)", seq->id, seq->tokens.size());
  place(waiting, std::move(seq));
}

void Engine::Impl::intake(std::vector<SequencePtr> fresh, const std::unordered_set<RequestId>& cancelled) {
  for (SequencePtr& seq : fresh) {
    if (seq->continuation->done()) {  // max_tokens 0: nothing to run
      finish(std::move(seq));
      continue;
    }
    place(waiting, std::move(seq));
  }
  if (cancelled.empty()) return;
  for (auto it = waiting.begin(); it != waiting.end();) {
    if (cancelled.count((*it)->id)) {
      end(**it, StopReason::kCallback);
      SequencePtr seq = std::move(*it);
      it = waiting.erase(it);
      finish(std::move(seq));
    } else {
      ++it;
    }
  }
  for (SequencePtr& seq : running)
    if (cancelled.count(seq->id)) end(*seq, StopReason::kCallback);
  sweep();
}

// Gives every running sequence the blocks for all its pending tokens. Only decoding sequences can lack
// one (admission gives a prompt all its blocks). When the pool is exhausted the youngest sequence is
// preempted, and a sequence alone in the engine ends with kContextFull: the pool is its context.
void Engine::Impl::reserve_blocks() {
  for (size_t i = 0; i < running.size(); ++i) {
    Sequence* seq = running[i].get();
    std::vector<int32_t>& blocks = seq->kv.blocks;
    while (static_cast<int64_t>(blocks.size()) < blocks_for(static_cast<int64_t>(seq->tokens.size()))) {
      // Room first: a block taken from the pool must not be lost to a failing push_back.
      blocks.reserve(blocks.size() + 1);
      const int32_t block = allocate_block();
      if (block >= 0) {
        blocks.push_back(block);
        continue;
      }
      if (running.size() == 1) {
        spdlog::debug("generate: request {} fills the whole KV pool ({} blocks)", seq->id, pool.block_count());
        end(*seq, StopReason::kContextFull);
        break;
      }
      const size_t youngest = running.size() - 1;
      preempt(youngest);
      if (youngest == i) {
        --i;  // this sequence went back to waiting; the next one is at i again
        break;
      }
    }
  }
  sweep();
}

// True when a running sequence has not yet computed block `index` of its tokens, and that block would be
// the same prefix-cache edge as block `index` of `seq`: same tokens up to its end, same trust domain.
bool Engine::Impl::prefilling_same_block(const Sequence& seq, int64_t index) const {
  const int64_t end = (index + 1) * kKvBlockTokens;
  if (end > static_cast<int64_t>(seq.tokens.size()) - 1) return false;  // seq could not reuse it anyway
  const bool is_public = end <= seq.public_tokens;
  for (const SequencePtr& other : running) {
    if (other->kv.length >= end || static_cast<int64_t>(other->tokens.size()) < end) continue;
    if ((end <= other->public_tokens) != is_public || (!is_public && other->salt != seq.salt)) continue;
    if (std::equal(seq.tokens.begin(), seq.tokens.begin() + end, other->tokens.begin())) return true;
  }
  return false;
}

void Engine::Impl::admit() {
  while (!waiting.empty() && static_cast<int64_t>(running.size()) < options.max_sequences) {
    Sequence& seq = *waiting.front();
    const int64_t length = static_cast<int64_t>(seq.tokens.size());
    const int64_t needed = blocks_for(length);
    if (needed > pool.block_count()) {
      // Only a preempted sequence can get here: it had grown to fill the whole pool.
      end(seq, StopReason::kContextFull);
      SequencePtr done = std::move(waiting.front());
      waiting.pop_front();
      finish(std::move(done));
      continue;
    }
    // At most all tokens but the last: its logits are needed, so it must be run.
    std::vector<int32_t> matched;
    if (cache) matched = cache->match(seq.tokens, seq.domain(), (length - 1) / kKvBlockTokens);
    if (cache && prefilling_same_block(seq, static_cast<int64_t>(matched.size()))) {
      // A running sequence is computing the next block this request needs: wait for it rather than compute
      // the same K/V twice (a burst of requests with one system prompt then prefills it once).
      for (int32_t block : matched) release_block(block);
      break;
    }
    const int64_t fresh = needed - static_cast<int64_t>(matched.size());
    // Idle cached blocks are an upper bound of what eviction frees (see PrefixCache::idle_blocks), so check
    // again after evicting.
    bool fits = pool.free_count() + (cache ? cache->idle_blocks() : 0) >= fresh;
    if (fits && pool.free_count() < fresh) {
      cache->evict(fresh - pool.free_count());
      fits = pool.free_count() >= fresh;
    }
    if (!fits) {  // wait for running sequences to end; arrival order is kept
      for (int32_t block : matched) release_block(block);
      break;
    }
    try {  // room for every block first: none taken below may be lost to a failing push_back
      matched.reserve(static_cast<size_t>(needed));
    } catch (...) {
      for (int32_t block : matched) release_block(block);
      throw;
    }
    seq.kv = pool.table();
    seq.kv.blocks = std::move(matched);
    std::vector<int32_t>& blocks = seq.kv.blocks;
    seq.entered_blocks = static_cast<int64_t>(blocks.size());
    seq.kv.length = seq.entered_blocks * kKvBlockTokens;
    for (int64_t b = 0; b < fresh; ++b) {
      const int32_t block = pool.allocate();
      RAG_ASSERT(block >= 0);
      blocks.push_back(block);
    }
    if (cache) {
      // The leading positions of the next block that agree with a cached one are copied into the first
      // fresh block. Looked up only now, so it never stands in the way of admission: the eviction above
      // may take the very block it would copy from, and a tight pool loses the saving, not a request.
      // At most up to the last token, whose logits must be computed.
      const auto whole = static_cast<size_t>(seq.entered_blocks);
      const auto partial = cache->match_partial(seq.tokens, seq.domain(),
                                                std::span<const int32_t>(blocks).first(whole),
                                                length - 1 - seq.kv.length);
      if (partial.block >= 0) {
        pool.copy_positions(partial.block, blocks[whole], partial.tokens);
        release_block(partial.block);
        seq.kv.length += partial.tokens;
      }
    }
    if (!seq.admitted_once) {
      seq.admitted_once = true;
      seq.info.queue_seconds = seconds(seq.submitted, Clock::now());
      seq.info.cached_tokens = seq.kv.length;
      counters.prefix_hit_tokens += seq.kv.length;
      counters.prefix_miss_tokens += seq.prompt_tokens - seq.kv.length;
    }
    SequencePtr admitted = std::move(waiting.front());
    waiting.pop_front();
    place(running, std::move(admitted));
  }
}

// One forward pass: every decoding sequence's next token, then prefill chunks up to the token budget.
// Returns false when there was nothing to run.
bool Engine::Impl::step() {
  batch.tokens.clear();
  batch.positions.clear();
  batch.kv.clear();
  batch.want_logits.clear();
  std::vector<Sequence*> sampled;  // sequences whose logits the pass returns, in batch order
  std::vector<Sequence*> members;
  int64_t budget = options.step_tokens;
  int64_t prefilled = 0;
  auto add = [&](Sequence& seq, int64_t count) {
    const int64_t start = seq.kv.length;
    for (int64_t p = start; p < start + count; ++p) {
      batch.tokens.push_back(seq.tokens[static_cast<size_t>(p)]);
      batch.positions.push_back(p);
      batch.kv.push_back(&seq.kv);
      batch.want_logits.push_back(p + 1 == static_cast<int64_t>(seq.tokens.size()));
    }
    if (start + count == static_cast<int64_t>(seq.tokens.size())) sampled.push_back(&seq);
    members.push_back(&seq);
    budget -= count;
  };
  for (SequencePtr& seq : running) {
    if (seq->pending() != 1) continue;
    if (!seq->sampled_once) ++prefilled;  // the last prompt token (the rest came from the prefix cache)
    add(*seq, 1);
  }
  for (SequencePtr& seq : running) {
    if (budget <= 0) break;
    if (seq->pending() <= 1) continue;
    const int64_t count = std::min(seq->pending(), budget);
    prefilled += count;
    add(*seq, count);
  }
  if (batch.tokens.empty()) return false;

  try {
    fault::hit("engine.forward");  // tests fail the Nth pass (tests/faults-calls/)
    model->forward(batch, scratch, logits);
  } catch (...) {
    // Not expected (positions and ids were checked on submit): fail the sequences of this pass only.
    const std::exception_ptr error = std::current_exception();
    for (Sequence* seq : members) seq->ended = true;
    std::vector<SequencePtr> keep;
    for (SequencePtr& seq : running) {
      if (seq->ended) finish(std::move(seq), error);
      else keep.push_back(std::move(seq));
    }
    running = std::move(keep);
    return true;
  }
  ++counters.steps;
  counters.tokens_prefilled += prefilled;

  const auto vocab = static_cast<size_t>(model->config().vocab_size);
  std::vector<std::pair<Sequence*, std::exception_ptr>> failed;
  for (size_t row = 0; row < sampled.size(); ++row) {
    Sequence& seq = *sampled[row];
    const std::span<const float> row_logits(logits.data() + row * vocab, vocab);
    const size_t before = seq.continuation->result().tokens.size();
    if (!seq.sampled_once) {
      seq.sampled_once = true;
      seq.info.first_token_seconds = seconds(seq.submitted, Clock::now());
    }
    bool more = false;
    try {
      more = seq.continuation->advance(row_logits);
    } catch (...) {
      failed.emplace_back(&seq, std::current_exception());
    }
    counters.tokens_generated += static_cast<int64_t>(seq.continuation->result().tokens.size() - before);
    if (more) seq.tokens.push_back(seq.continuation->next_token());
    else seq.ended = true;
  }
  for (SequencePtr& seq : running)
    if (!seq->ended) enter_full_blocks(*seq);
  if (!failed.empty()) {
    std::vector<SequencePtr> keep;
    for (SequencePtr& seq : running) {
      auto it = std::find_if(failed.begin(), failed.end(), [&](const auto& f) { return f.first == seq.get(); });
      if (it != failed.end()) finish(std::move(seq), it->second);
      else keep.push_back(std::move(seq));
    }
    running = std::move(keep);
  }
  sweep();
  return true;
}

void Engine::Impl::loop() {
  bool idle = false;  // the last round ran nothing: sleep until something new arrives
  for (;;) {
    std::vector<SequencePtr> fresh;
    std::unordered_set<RequestId> cancelled;
    std::vector<std::promise<void>> cleared;
    bool stop = false;
    {
      std::unique_lock lock(mutex);
      wake.wait(lock, [&] {
        return stopping || !incoming.empty() || !cancels.empty() || !clears.empty() ||
               (!idle && (!running.empty() || !waiting.empty()));
      });
      fresh.swap(incoming);
      cancelled.swap(cancels);
      cleared.swap(clears);
      stop = stopping;
    }
    if (!cleared.empty()) {
      // Eviction allocates (the LRU set): a std::bad_alloc goes to the callers, not out of this thread.
      std::exception_ptr error;
      try {
        const int64_t evicted = cache ? cache->evict(cache->size()) : 0;
        spdlog::info("generate: prefix cache cleared ({} blocks freed)", evicted);
      } catch (...) {
        error = std::current_exception();
      }
      publish();
      for (std::promise<void>& done : cleared) error ? done.set_exception(error) : done.set_value();
    }
    try {
      intake(std::move(fresh), cancelled);
      if (stop) {
        for (SequencePtr& seq : running) end(*seq, StopReason::kCallback);
        sweep();
        while (!waiting.empty()) {
          end(*waiting.front(), StopReason::kCallback);
          SequencePtr seq = std::move(waiting.front());
          waiting.pop_front();
          finish(std::move(seq));
        }
        return;
      }
      reserve_blocks();
      admit();
      idle = !step();
    } catch (...) {
      // A bug, not a request's fault; still, fail what is in flight rather than take the process down.
      spdlog::error("generate: engine step failed; failing {} running and {} waiting requests", running.size(),
                    waiting.size());
      const std::exception_ptr error = std::current_exception();
      for (SequencePtr& seq : running)
        if (seq) finish(std::move(seq), error);  // null: already completed by the interrupted sweep
      running.clear();
      while (!waiting.empty()) {
        SequencePtr seq = std::move(waiting.front());
        waiting.pop_front();
        finish(std::move(seq), error);
      }
    }
    publish();
  }
}

Engine::Engine(std::shared_ptr<const Model> model, const EngineOptions& options) {
  RAG_ASSERT(model);
  const ModelConfig& c = model->config();
  const int64_t block_bytes = c.kv_layout().block_bytes();
  if (options.kv_memory_bytes < block_bytes)
    fail(Errc::kInvalidArgument,
         "engine: KV memory of {} bytes holds no block; one block (16 positions of {} layers) takes {} bytes",
         options.kv_memory_bytes, c.layer_count, block_bytes);
  if (options.max_sequences < 1)
    fail(Errc::kInvalidArgument, "engine: max_sequences {} must be at least 1", options.max_sequences);
  if (options.step_tokens < 1) fail(Errc::kInvalidArgument, "engine: step_tokens {} must be at least 1", options.step_tokens);
  const int64_t block_count = std::min<int64_t>(options.kv_memory_bytes / block_bytes, INT32_MAX);
  EngineOptions effective = options;
  // Every running sequence decodes in every step, so no more may run than a step has tokens.
  effective.max_sequences = std::min(options.max_sequences, options.step_tokens);
  try {
    impl_ = std::make_unique<Impl>(std::move(model), effective, block_count);
  } catch (const std::bad_alloc&) {
    fail(Errc::kLimit, "engine: cannot reserve {} bytes of KV memory ({} blocks); give it less",
         block_count * block_bytes, block_count);
  }
  impl_->publish();
  spdlog::info("generate: engine with {} KV blocks of {} bytes ({} positions), {} tokens per step, {} sequences, "
               "prefix cache {}",
               block_count, block_bytes, block_count * kKvBlockTokens, effective.step_tokens,
               effective.max_sequences, effective.prefix_cache ? "on" : "off");
  impl_->thread = std::thread([impl = impl_.get()] { impl->loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  impl_->thread.join();
  // Every request has ended; with the prefix cache gone, a block still referenced was never released.
  impl_->cache.reset();
  if (const int64_t held = impl_->pool.block_count() - impl_->pool.free_count(); held > 0) {
    spdlog::error("generate: engine stopped with {} KV blocks never released", held);
    live_count("kv_blocks_leaked").add(held);
  }
}

Submission Engine::submit(Request request) {
  Impl& impl = *impl_;
  auto seq = std::make_unique<Sequence>();
  seq->submitted = Clock::now();
  seq->continuation = std::make_unique<Continuation>(*impl.model, request.prompt, request.options,
                                                     std::move(request.on_token));
  const auto prompt_tokens = static_cast<int64_t>(request.prompt.size());
  const int64_t pool_tokens = impl.pool.block_count() * kKvBlockTokens;
  if (prompt_tokens > pool_tokens)
    fail(Errc::kLimit, "engine: the prompt has {} tokens but the KV pool holds {} ({} bytes); shorten the prompt "
         "or give the engine more KV memory", prompt_tokens, pool_tokens, impl.options.kv_memory_bytes);
  if (request.public_prefix_tokens < 0)
    fail(Errc::kInvalidArgument, "engine: public_prefix_tokens {} is negative", request.public_prefix_tokens);
  seq->prompt_tokens = prompt_tokens;
  seq->public_tokens = std::min(request.public_prefix_tokens, prompt_tokens);
  seq->salt = std::move(request.cache_salt);
  seq->tokens = std::move(request.prompt);
  Submission out;
  out.completion = seq->promise.get_future();
  {
    std::lock_guard lock(impl.mutex);
    // Only a callback can get here during shutdown: the engine thread no longer takes requests.
    if (impl.stopping) fail(Errc::kBusy, "engine: shutting down; request not taken");
    out.id = seq->id = impl.next_id++;
    impl.incoming.push_back(std::move(seq));
  }
  impl.wake.notify_one();
  return out;
}

void Engine::cancel(RequestId id) {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->cancels.insert(id);
  }
  impl_->wake.notify_one();
}

void Engine::clear_prefix_cache() {
  std::promise<void> done;
  std::future<void> cleared = done.get_future();
  {
    std::lock_guard lock(impl_->mutex);
    impl_->clears.push_back(std::move(done));
  }
  impl_->wake.notify_one();
  cleared.get();
}

Completion Engine::run(Request request) { return submit(std::move(request)).completion.get(); }

EngineStats Engine::stats() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->published;
}

const EngineOptions& Engine::options() const { return impl_->options; }
const Model& Engine::model() const { return *impl_->model; }
int64_t Engine::block_bytes() const { return impl_->pool.layout().block_bytes(); }

}  // namespace rag::generate
