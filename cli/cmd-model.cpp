// `rag model SUBCOMMAND`: tools over GGUF model files. Each subcommand lives in its own model-*.cpp.
#include <cstdio>
#include <string_view>
#include <vector>

#include "cli/commands.h"

namespace rag::cli {
namespace {

struct ModelCommand {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

// Add a subcommand here and declare it in commands.h.
const std::vector<ModelCommand>& model_commands() {
  static const std::vector<ModelCommand> commands = {
      {"embed", cmd_model_embed, "embed texts or score passages with a BERT-family encoder (check a model)"},
      {"info", cmd_model_info, "describe a GGUF model: architecture, sizes, tensor types, tokenizer"},
      {"import-llama2c", cmd_model_import_llama2c, "convert a llama2.c checkpoint and tokenizer to GGUF"},
      {"quantize", cmd_model_quantize, "convert a model's weight matrices to q8_0, q4_0 or f16"},
      {"tokenize", cmd_model_tokenize, "print the token ids (or pieces) a model's tokenizer gives a text"},
  };
  return commands;
}

void print_help() {
  std::printf("usage: rag model SUBCOMMAND [options]   (rag model SUBCOMMAND --help for details)\n\nsubcommands:\n");
  for (const auto& c : model_commands()) std::printf("  %-16s %s\n", c.name, c.summary);
}

}  // namespace

int cmd_model(int argc, char** argv) {
  if (argc < 1 || std::string_view(argv[0]) == "--help" || std::string_view(argv[0]) == "-h") {
    print_help();
    return argc < 1 ? kExitUsage : kExitOk;
  }
  for (const auto& c : model_commands())
    if (std::string_view(argv[0]) == c.name) return c.run(argc - 1, argv + 1);
  std::fprintf(stderr, "rag model: unknown subcommand '%s'\n\n", argv[0]);
  print_help();
  return kExitUsage;
}

}  // namespace rag::cli
