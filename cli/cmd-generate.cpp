// `rag generate --model FILE [PROMPT]`: continues PROMPT (or, without one, starts from BOS alone) with the
// generator model and streams the text to stdout as it is produced, then a newline. Timings and the finish
// reason go to the log.
#include <chrono>
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "common/log.h"
#include "generate/generate.h"

namespace rag::cli {
namespace {

const CommandSpec& spec() {
  static const CommandSpec s = {
      "generate",
      "[PROMPT]",
      "Continues PROMPT with the Llama/Qwen2 decoder in --model (GGUF) and streams the continuation to stdout. "
      "Without PROMPT it starts from the BOS token alone. Greedy unless --temperature is above 0. Special "
      "tokens are added as the model's vocabulary asks (BOS for Llama); their spellings in PROMPT stay text.",
      {
          {"model", "FILE", "the decoder model (GGUF; required)"},
          {"temperature", "T", "sampling temperature; 0 picks the most likely token (default 0)"},
          {"top-k", "K", "sample among the K most likely tokens; 0 for all (default 40)"},
          {"top-p", "P", "then among the fewest tokens whose probability reaches P (default 0.95)"},
          {"seed", "S", "random seed for sampling (default 0)"},
          {"max-tokens", "N", "tokens to generate at most (default 256)"},
          {"frequency-penalty", "F", "lower each token's logit by F per time it was generated, in [-2, 2] (default 0)"},
          {"presence-penalty", "F", "lower the logit of every token generated so far by F, in [-2, 2] (default 0)"},
          {"stop", "STRING", "stop when the text contains STRING, which is not printed (repeatable)", true},
          {"kv-type", "TYPE", kKvTypeHelp},
      },
  };
  return s;
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  const ParsedArgs args = parse_args(spec(), argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec()).c_str());
    return kExitOk;
  }
  if (!args.has("model") || args.positional.size() > 1) {
    std::fprintf(stderr, "rag generate: expected --model FILE and at most one PROMPT (quote it)\n\n%s",
                 usage(spec()).c_str());
    return kExitUsage;
  }
  generate::GenerateOptions options;
  options.sampling.temperature = static_cast<float>(args.get_double("temperature", 0.0, 0.0, 100.0));
  options.sampling.top_k = static_cast<int>(args.get_int("top-k", 40, 0, 1 << 30));
  options.sampling.top_p = static_cast<float>(args.get_double("top-p", 0.95, 1e-6, 1.0));
  options.sampling.seed = static_cast<uint64_t>(args.get_int("seed", 0, 0, INT64_MAX));
  options.max_tokens = args.get_int("max-tokens", 256, 0, 1 << 24);
  options.sampling.frequency_penalty = static_cast<float>(args.get_double("frequency-penalty", 0.0, -2.0, 2.0));
  options.sampling.presence_penalty = static_cast<float>(args.get_double("presence-penalty", 0.0, -2.0, 2.0));
  for (const std::string& stop : args.get_all("stop")) {
    if (stop.empty()) {
      std::fprintf(stderr, "rag generate: --stop needs a non-empty STRING\n");
      return kExitUsage;
    }
    options.stop_strings.push_back(stop);
  }

  const generate::KvCacheType kv_cache = generate::parse_kv_cache_type(args.get("kv-type", "auto"));
  const auto model = generate::load_model(args.get("model"), kv_cache);
  const std::string prompt_text = args.positional.empty() ? "" : args.positional[0];
  std::vector<int32_t> prompt = generate::tokenize(*model, prompt_text, true);
  if (prompt.empty()) {
    const int32_t bos = generate::model_info(*model).bos_id;
    if (bos < 0) fail(Errc::kInvalidArgument, "{}: the model has no BOS token to start from; give a PROMPT", args.get("model"));
    prompt.push_back(bos);
  }

  const auto start = std::chrono::steady_clock::now();
  const generate::Generation result =
      generate::generate(*model, prompt, options, [](int32_t, std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        return true;
      });
  std::fputc('\n', stdout);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info("generate: {} prompt tokens, {} generated in {:.3f} s ({:.1f} tokens/s), finish reason {}",
               prompt.size(), result.tokens.size(), seconds,
               seconds > 0 ? static_cast<double>(result.tokens.size()) / seconds : 0.0, generate::finish_reason(result.stop));
  return kExitOk;
}

}  // namespace rag::cli
