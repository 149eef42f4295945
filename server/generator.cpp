#include "server/generator.h"

#include <chrono>
#include <filesystem>

namespace rag::server {

Generator::Generator(const std::string& model_path) : model_(generate::load_model(model_path)) {
  const generate::ModelInfo info = generate::model_info(*model_);
  name_ = std::filesystem::path(model_path).filename().string();
  context_ = info.context_length;
}

int64_t Generator::count_tokens(std::string_view text) const {
  return static_cast<int64_t>(generate::tokenize(*model_, text, true).size());
}

GenerateOutcome Generator::run(const GenerateCall& call, const generate::TokenCallback& on_token) {
  GenerateOutcome out;
  const std::vector<int32_t> prompt = generate::tokenize(*model_, call.prompt, true);
  out.prompt_tokens = static_cast<int64_t>(prompt.size());
  std::lock_guard<std::mutex> lock(mutex_);
  const auto start = std::chrono::steady_clock::now();
  bool first = true;
  out.generation = generate::generate(*model_, prompt, call.options, [&](int32_t token, std::string_view text) {
    if (first) {
      out.prefill_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      first = false;
    }
    return on_token ? on_token(token, text) : true;
  });
  tokens_ += static_cast<int64_t>(out.generation.tokens.size());
  micros_ += std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
  return out;
}

int64_t Generator::tokens_generated() const { return tokens_.load(); }

double Generator::generate_seconds() const { return static_cast<double>(micros_.load()) / 1e6; }

}  // namespace rag::server
