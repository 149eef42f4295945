#include "server/generator.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>

#include "common/error.h"

namespace rag::server {

using Clock = std::chrono::steady_clock;

Generator::Generator(const std::string& model_path, int64_t kv_memory_bytes, generate::KvCacheType kv_cache)
    : model_(generate::load_model(model_path, kv_cache)) {
  const generate::ModelInfo info = generate::model_info(*model_);
  name_ = std::filesystem::path(model_path).filename().string();
  context_ = info.context_length;
  // Llama 3's template starts with its own BOS; ChatML models get the vocabulary's (none for Qwen2).
  if (generate::chat_template(*model_) == generate::ChatTemplate::kChatMl) bos_ = generate::tokenize(*model_, "", true);
  end_of_turn_ = generate::end_of_turn_tokens(*model_);
  generate::EngineOptions options;
  options.kv_memory_bytes = kv_memory_bytes;
  engine_ = std::make_unique<generate::Engine>(model_, options);
}

Generator::~Generator() = default;

std::vector<int32_t> Generator::tokens(const std::vector<generate::ChatMessage>& messages) const {
  std::vector<int32_t> out = bos_;
  std::vector<int32_t> chat = generate::tokenize_chat(*model_, messages, true);
  out.insert(out.end(), chat.begin(), chat.end());
  return out;
}

generate::EngineStats Generator::stats() const { return engine_->stats(); }

namespace {

// Text handed from the engine thread to the request thread.
struct Pipe {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::string> pieces;
};

}  // namespace

GenerateOutcome Generator::run(const GenerateCall& call, const std::function<bool(std::string_view)>& on_text,
                               const RequestControl& control) {
  GenerateOutcome out;
  generate::Request request;
  request.prompt = tokens(call.messages);
  if (call.public_messages > 0) {
    // The public prefix is where the prompt stops agreeing with the public messages alone.
    std::vector<generate::ChatMessage> head(call.messages.begin(),
                                            call.messages.begin() + static_cast<std::ptrdiff_t>(call.public_messages));
    std::vector<int32_t> public_tokens = bos_;
    std::vector<int32_t> chat = generate::tokenize_chat(*model_, head, false);
    public_tokens.insert(public_tokens.end(), chat.begin(), chat.end());
    size_t n = 0;
    while (n < public_tokens.size() && n < request.prompt.size() && public_tokens[n] == request.prompt[n]) ++n;
    request.public_prefix_tokens = static_cast<int64_t>(n);
  }
  request.cache_salt = call.cache_salt;
  request.options = call.options;
  request.options.stop_tokens.insert(request.options.stop_tokens.end(), end_of_turn_.begin(), end_of_turn_.end());
  auto pipe = std::make_shared<Pipe>();
  request.on_token = [pipe](int32_t, std::string_view text) {
    if (!text.empty()) {
      std::lock_guard<std::mutex> lock(pipe->mutex);
      pipe->pieces.emplace_back(text);
    }
    pipe->cv.notify_one();
    return true;
  };
  generate::Submission submission = engine_->submit(std::move(request));
  bool stopped = false;  // we asked the engine to end it
  for (;;) {
    std::deque<std::string> pieces;
    bool finished = false;
    {
      std::unique_lock<std::mutex> lock(pipe->mutex);
      // Wake for text, else poll the completion and the deadline every few milliseconds.
      pipe->cv.wait_for(lock, std::chrono::milliseconds(5), [&] { return !pipe->pieces.empty(); });
      pieces.swap(pipe->pieces);
    }
    if (pieces.empty() && submission.completion.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      // All text is queued before the completion is fulfilled: take what arrived since the swap above.
      finished = true;
      std::lock_guard<std::mutex> lock(pipe->mutex);
      pieces.swap(pipe->pieces);
    }
    for (const std::string& piece : pieces) {
      if (stopped) break;
      if (on_text && !on_text(piece)) {
        out.cancelled = true;
        stopped = true;
        engine_->cancel(submission.id);
      }
    }
    if (!stopped && control.expired()) {
      out.timed_out = Clock::now() >= control.deadline;
      out.cancelled = !out.timed_out;
      stopped = true;
      engine_->cancel(submission.id);
    }
    if (finished) break;
  }
  generate::Completion done = submission.completion.get();
  out.generation = std::move(done.generation);
  out.prompt_tokens = done.prompt_tokens;
  out.cached_tokens = done.cached_tokens;
  out.queue_ms = done.queue_seconds * 1000.0;
  if (done.first_token_seconds > 0) out.prefill_ms = (done.first_token_seconds - done.queue_seconds) * 1000.0;
  return out;
}

}  // namespace rag::server
