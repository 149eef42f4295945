// `rag model tokenize FILE TEXT`: the token ids a GGUF model's tokenizer gives TEXT, space separated (the
// convention of llama.cpp's vocab test files), to check a model's tokenizer or compare with llama.cpp.
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "common/args.h"
#include "nn/gguf.h"
#include "nn/tokenizer.h"

namespace rag::cli {
namespace {

const CommandSpec& spec() {
  static const CommandSpec s = {
      "model tokenize",
      "FILE TEXT",
      "Tokenizes TEXT with the tokenizer in the GGUF FILE and prints the token ids on one line, space "
      "separated. No special tokens are added and special-token text in TEXT stays text unless --special.",
      {
          {"special", "", "add the model's BOS/EOS (CLS/SEP) and recognise special-token text such as <|im_start|>"},
          {"pieces", "", "print one token per line: id, then the token's text as stored in the vocabulary"},
      },
  };
  return s;
}

}  // namespace

int cmd_model_tokenize(int argc, char** argv) {
  const ParsedArgs args = parse_args(spec(), argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec()).c_str());
    return kExitOk;
  }
  if (args.positional.size() != 2) {
    std::fprintf(stderr, "rag model tokenize: expected a model file and one text\n\n%s", usage(spec()).c_str());
    return kExitUsage;
  }
  const auto file = nn::GgufFile::open(args.positional[0]);
  const auto tokenizer = nn::Tokenizer::from_gguf(*file);
  const bool special = args.has("special");
  const std::vector<int32_t> ids = tokenizer->encode(args.positional[1], special, special);
  if (args.has("pieces")) {
    for (int32_t id : ids) std::printf("%d %s\n", id, tokenizer->token_text(id).c_str());
    return kExitOk;
  }
  std::string line;
  for (int32_t id : ids) line += (line.empty() ? "" : " ") + std::to_string(id);
  std::printf("%s\n", line.c_str());
  return kExitOk;
}

}  // namespace rag::cli
