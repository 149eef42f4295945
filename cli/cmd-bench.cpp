// `rag bench SUBCOMMAND`: whole-job benchmarks. Each subcommand prints its figures (or one JSON object with
// --json); microbenchmarks live in bench/.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "index/index.h"

namespace rag::cli {
namespace {

struct BenchCommand {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

int bench_ingest(int argc, char** argv);

// Add a subcommand here (and declare it in commands.h when it lives in another file).
const std::vector<BenchCommand>& bench_commands() {
  static const std::vector<BenchCommand> commands = {
      {"ingest", bench_ingest, "ingest a folder into a fresh temporary data dir and report files/s, MB/s"},
  };
  return commands;
}

void print_help() {
  std::printf("usage: rag bench SUBCOMMAND [options]   (rag bench SUBCOMMAND --help for details)\n\nsubcommands:\n");
  for (const auto& c : bench_commands()) std::printf("  %-16s %s\n", c.name, c.summary);
}

// A data dir under $TMPDIR removed on destruction, so a benchmark never touches the user's index.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/rag-bench-XXXXXX";
    if (!::mkdtemp(pattern.data())) fail(Errc::kIo, "{}: cannot create a scratch folder", pattern);
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

int bench_ingest(int argc, char** argv) {
  CommandSpec spec{"bench ingest",
                   "DIR...",
                   "Ingests DIR into a fresh temporary data dir (deleted afterwards) and prints throughput:\n"
                   "files/s, pages/s, MB/s and chunks/s, with totals and seconds.",
                   {{"threads", "N", "parser threads (default: one per core)"},
                    {"batch-mb", "N", "chunk text per writer batch, MiB (one catalog transaction and one Xapian commit)"},
                    {"json", "", "print one JSON object on stdout"}}};
  ParsedArgs args = parse_args(spec, argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec).c_str());
    return kExitOk;
  }
  if (args.positional.empty()) fail(Errc::kInvalidArgument, "rag bench ingest: give a folder (see --help)");
  index::IngestOptions options;
  options.roots = args.positional;
  options.threads = static_cast<int>(args.get_int("threads", 0, 0, 1024));
  if (args.has("batch-mb")) options.batch_bytes = args.get_int("batch-mb", 32, 1, int64_t{1} << 20) << 20;
  ScratchDir scratch;
  index::IngestSummary s = index::ingest(scratch.path() + "/data", options);
  double seconds = s.seconds > 0 ? s.seconds : 1e-9;
  double files_s = static_cast<double>(s.files) / seconds;
  double pages_s = static_cast<double>(s.pages) / seconds;
  double mb_s = static_cast<double>(s.bytes) / 1e6 / seconds;
  double chunks_s = static_cast<double>(s.chunks) / seconds;
  if (args.has("json")) {
    nlohmann::json out = {{"files", s.files},   {"failed", s.failed}, {"pages", s.pages},     {"bytes", s.bytes},
                          {"chunks", s.chunks}, {"seconds", s.seconds}, {"files_per_s", files_s},
                          {"pages_per_s", pages_s}, {"mb_per_s", mb_s}, {"chunks_per_s", chunks_s}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("ingest: %lld files (%lld failed), %lld pages, %.1f MB, %lld chunks in %.2f s\n",
                static_cast<long long>(s.files), static_cast<long long>(s.failed), static_cast<long long>(s.pages),
                static_cast<double>(s.bytes) / 1e6, static_cast<long long>(s.chunks), s.seconds);
    std::printf("ingest: %.1f files/s, %.1f pages/s, %.2f MB/s, %.1f chunks/s\n", files_s, pages_s, mb_s, chunks_s);
  }
  return kExitOk;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  if (argc < 1 || std::string_view(argv[0]) == "--help" || std::string_view(argv[0]) == "-h") {
    print_help();
    return argc < 1 ? kExitUsage : kExitOk;
  }
  for (const auto& c : bench_commands())
    if (std::string_view(argv[0]) == c.name) return c.run(argc - 1, argv + 1);
  std::fprintf(stderr, "rag bench: unknown subcommand '%s'\n\n", argv[0]);
  print_help();
  return kExitUsage;
}

}  // namespace rag::cli
