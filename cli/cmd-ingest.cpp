// `rag ingest PATH... [--data DIR]`: brings the data dir in step with folders of files (index/index.h).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "common/log.h"
#include "index/index.h"

namespace rag::cli {
namespace {

constexpr double kBarIntervalS = 0.1;  // terminal redraws at most 10 times a second
constexpr double kLogIntervalS = 5;    // plain progress lines when stderr is not a terminal
constexpr int64_t kMaxFileMb = 1 << 20;

CommandSpec ingest_spec() {
  return {"ingest",
          "PATH...",
          "Ingests folders and files: parses them (PDF, HTML, Markdown, text), chunks them and indexes the\n"
          "chunks. Re-ingesting skips unchanged files, replaces changed ones and removes files that are gone.\n"
          "Files that fail are recorded with their reason; the exit status is then 3. Queries see the changes of\n"
          "one run all at once, when it publishes its new index generation (older ones: see --keep).\n"
          "Exit status: 0 ok, 1 failed (the live generation is untouched), 2 bad arguments, 3 completed with\n"
          "failures, 75 another writer (ingest or rebuild) holds the data dir's lock.",
          {data_option(),
           {"acl", "PRINCIPAL", "readers of documents without a .ragacl, e.g. group:eng", true},
           {"max-file-mb", "N", "skip (and record as failed) files larger than N MiB (default 100)"},
           {"wait", "", "wait for another writer to finish instead of exiting with 75"},
           {"keep", "N", "index generations to keep, the live one included (default 3, at least 2)"},
           {"log", "FILE", "also append log lines to FILE"},
           {"prune", "", "remove documents whose files are gone (default: on for roots ingested before)"},
           {"no-prune", "", "keep documents whose files are gone"},
           {"threads", "N", "parser threads (default: one per core)"},
           {"embed-model", "FILE", "embed chunks with this GGUF embedding model (remembered by the data dir)"},
           {"reembed", "", "re-embed every chunk with --embed-model (to switch models); PATH optional"},
           {"vector-index", "KIND", "vector index: auto (default: flat, sq4 above 100k chunks, HNSW above 4M), flat, sq4, hnsw, ivf"},
           {"json", "", "print one JSON summary object on stdout"},
           {"quiet", "", "print nothing on success (failures, warnings and errors still go to stderr)"}}};
}

std::string mb(int64_t bytes) { return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6); }

std::string clock_text(double seconds) {
  auto s = static_cast<int64_t>(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                   : fmt::format("{}:{:02}", s / 60, s % 60);
}

std::string progress_text(const index::IngestProgress& p) {
  double files_rate = p.seconds > 0 ? static_cast<double>(p.files_done) / p.seconds : 0;
  double mb_rate = p.seconds > 0 ? static_cast<double>(p.bytes_done) / 1e6 / p.seconds : 0;
  std::string eta = "?";
  if (p.bytes_done > 0 && p.bytes_total >= p.bytes_done)
    eta = clock_text(p.seconds * static_cast<double>(p.bytes_total - p.bytes_done) / static_cast<double>(p.bytes_done));
  return fmt::format("{}/{} files, {} pages, {}, {:.1f} files/s, {:.1f} MB/s, ETA {}", p.files_done, p.files_total,
                     p.pages, mb(p.bytes_done), files_rate, mb_rate, eta);
}

// Draws a one-line bar on a terminal, or a log line every few seconds otherwise.
class ProgressDisplay {
 public:
  explicit ProgressDisplay(bool enabled) : enabled_(enabled), terminal_(::isatty(2) == 1) {}

  void update(const index::IngestProgress& p) {
    if (!enabled_) return;
    bool last = p.files_done == p.files_total;
    double interval = terminal_ ? kBarIntervalS : kLogIntervalS;
    if (!last && p.seconds - last_draw_ < interval) return;
    if (last && !terminal_) return;  // the summary line follows
    last_draw_ = p.seconds;
    if (!terminal_) {
      spdlog::info("ingest: {}", progress_text(p));
      return;
    }
    constexpr int kWidth = 24;
    int filled = p.files_total > 0 ? static_cast<int>(kWidth * p.files_done / p.files_total) : kWidth;
    std::fprintf(stderr, "\r[%s%s] %s\x1b[K", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, ' ').c_str(), progress_text(p).c_str());
    drawn_ = true;
  }
  void finish() {
    if (drawn_) std::fprintf(stderr, "\n");
  }

 private:
  bool enabled_;
  bool terminal_;
  bool drawn_ = false;
  double last_draw_ = -1;
};

nlohmann::json summary_json(const index::IngestSummary& s) {
  nlohmann::json failures = nlohmann::json::array();
  for (const auto& f : s.failures) failures.push_back({{"path", f.path}, {"reason", f.reason}});
  return {{"new", s.new_files},   {"updated", s.updated}, {"unchanged", s.unchanged}, {"removed", s.removed},
          {"failed", s.failed},   {"chunks", s.chunks},   {"pages", s.pages},         {"bytes", s.bytes},
          {"embedded", s.embedded}, {"vectors", s.vectors}, {"generation", s.generation},
          {"files", s.files},     {"seconds", s.seconds}, {"failures", failures}};
}

}  // namespace

int cmd_ingest(int argc, char** argv) {
  CommandSpec spec = ingest_spec();
  ParsedArgs args = parse_args(spec, argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec).c_str());
    return kExitOk;
  }
  if (args.positional.empty() && !args.has("reembed"))
    fail(Errc::kInvalidArgument, "rag ingest: give at least one folder or file (see --help)");
  if (args.has("reembed") && !args.has("embed-model"))
    fail(Errc::kInvalidArgument, "rag ingest: --reembed needs --embed-model FILE (the model to embed with)");
  if (args.has("prune") && args.has("no-prune"))
    fail(Errc::kInvalidArgument, "rag ingest: --prune and --no-prune contradict each other");

  index::IngestOptions options;
  options.roots = args.positional;
  options.acl = args.get_all("acl");
  options.max_file_bytes = args.get_int("max-file-mb", 100, 1, kMaxFileMb) << 20;
  options.wait_for_lock = args.has("wait");
  options.keep_generations = static_cast<int>(args.get_int("keep", index::kDefaultKeepGenerations, 2, 1000));
  if (args.has("quiet")) quiet_stderr_log();
  if (args.has("log")) add_log_file(args.get("log"));
  if (args.has("prune")) options.prune = true;
  if (args.has("no-prune")) options.prune = false;
  options.threads = static_cast<int>(args.get_int("threads", 0, 0, 1024));
  if (args.has("embed-model")) {
    std::string model = args.get("embed-model");
    std::error_code ec;
    std::string absolute = std::filesystem::absolute(model, ec).lexically_normal().string();
    options.embedder = index::open_embedder(model);
    options.embedder_path = ec ? model : absolute;
  }
  options.reembed = args.has("reembed");
  if (args.has("vector-index")) options.vector_index = index::parse_vector_index_kind(args.get("vector-index"));
  bool json = args.has("json");
  ProgressDisplay display(!args.has("quiet"));
  options.on_progress = [&](const index::IngestProgress& p) { display.update(p); };

  std::string data = data_dir(args);
  index::IngestSummary s;
  try {
    s = index::ingest(data, options);
  } catch (...) {
    display.finish();
    throw;
  }
  display.finish();

  double seconds = s.seconds > 0 ? s.seconds : 1e-9;
  if (json) {
    std::printf("%s\n", summary_json(s).dump().c_str());
  } else {
    for (const auto& f : s.failures) std::fprintf(stderr, "failed: %s\n", f.reason.c_str());
  }
  if (!json && !args.has("quiet")) {
    std::printf("ingested into %s: %lld new, %lld updated, %lld unchanged, %lld removed, %lld failed; %lld chunks, "
                "%lld pages, %s in %.2f s (%.1f files/s)\n",
                data.c_str(), static_cast<long long>(s.new_files), static_cast<long long>(s.updated),
                static_cast<long long>(s.unchanged), static_cast<long long>(s.removed),
                static_cast<long long>(s.failed), static_cast<long long>(s.chunks), static_cast<long long>(s.pages),
                mb(s.bytes).c_str(), s.seconds, static_cast<double>(s.files) / seconds);
    if (s.vectors > 0 || s.embedded > 0)
      std::printf("vectors: %lld chunks embedded, %lld in the vector index\n", static_cast<long long>(s.embedded),
                  static_cast<long long>(s.vectors));
  }
  if (s.failed > 0) {
    std::fprintf(stderr, "rag ingest: completed with %lld failures\n", static_cast<long long>(s.failed));
    return kExitPartial;
  }
  return kExitOk;
}

}  // namespace rag::cli
