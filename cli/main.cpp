// `rag`: one binary, one subcommand per job. Errors from any stage are caught here and printed as one
// line that says what to do; nothing escapes as a crash.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "cli/commands.h"
#include "common/error.h"
#include "common/log.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

int cmd_version(int, char**) {
  std::printf("rag %s\n", RAG_VERSION);
  return rag::cli::kExitOk;
}

// Add a subcommand here and declare it in commands.h.
constexpr Command kCommands[] = {
    {"ask", rag::cli::cmd_ask, "answer a question from the documents, with numbered citations"},
    {"bench", rag::cli::cmd_bench, "benchmark whole jobs (rag bench --help lists them)"},
    {"eval", rag::cli::cmd_eval, "retrieval quality on a BEIR folder: nDCG@10, Recall@100, MRR@10"},
    {"generate", rag::cli::cmd_generate, "continue a prompt with the generator model, streaming the text"},
    {"ingest", rag::cli::cmd_ingest, "ingest folders and files: parse, chunk, index; skips unchanged files"},
    {"model", rag::cli::cmd_model, "inspect, convert, quantize and tokenize with GGUF models"},
    {"rebuild", rag::cli::cmd_rebuild, "build a new index generation from the catalog and switch to it atomically"},
    {"search", rag::cli::cmd_search, "hybrid (BM25 + vector) search over the ingested chunks, filtered by --as"},
    {"serve", rag::cli::cmd_serve, "the HTTP service: ask, search, OpenAI-compatible chat and embeddings, metrics"},
    {"verify", rag::cli::cmd_verify, "check that catalog, keyword and vector indexes agree; --repair restores them"},
    {"version", cmd_version, "print the version"},
};

void print_help() {
  std::printf("usage: rag COMMAND [options]   (rag COMMAND --help for details)\n\ncommands:\n");
  for (const auto& c : kCommands) std::printf("  %-10s %s\n", c.name, c.summary);
}

}  // namespace

int main(int argc, char** argv) {
  rag::init_logging();
  // A file-size limit (RLIMIT_FSIZE, a quota) must fail the write with EFBIG and a clear error, not kill us.
  std::signal(SIGXFSZ, SIG_IGN);
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    print_help();
    return argc < 2 ? rag::cli::kExitUsage : rag::cli::kExitOk;
  }
  std::string_view name = argv[1];
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(argc - 2, argv + 2);
    } catch (const rag::Error& e) {
      std::fprintf(stderr, "rag %s: %s\n", c.name, e.what());
      if (e.code() == rag::Errc::kInvalidArgument) return rag::cli::kExitUsage;
      return e.code() == rag::Errc::kBusy ? rag::cli::kExitBusy : rag::cli::kExitFailed;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "rag %s: internal error: %s\n", c.name, e.what());
      return rag::cli::kExitFailed;
    }
  }
  std::fprintf(stderr, "rag: unknown command '%s'\n\n", argv[1]);
  print_help();
  return rag::cli::kExitUsage;
}
