// `rag rebuild [--data DIR]`: a complete new index generation from the catalog, published atomically, and
// `rag verify [--data DIR] [--repair]`: do catalog, keyword index and vector index agree? (index/index.h)
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "common/log.h"
#include "index/index.h"

namespace rag::cli {
namespace {

constexpr int kMaxKeep = 1000;

Option keep_option() {
  return {"keep", "N", "generations to keep, the live one included (default 3, at least 2)"};
}

// --quiet and --log FILE, shared by the writers cron runs.
void apply_log_options(const ParsedArgs& args) {
  if (args.has("quiet")) quiet_stderr_log();
  if (args.has("log")) add_log_file(args.get("log"));
}

CommandSpec rebuild_spec() {
  return {"rebuild",
          "",
          "Builds a complete new index generation (keyword index, vector index, manifest) from the catalog beside\n"
          "the live one, re-embedding every chunk with the data dir's embedder, then makes it live with one atomic\n"
          "rename. A running `rag serve` switches to it without a restart; queries in flight finish on the old one.\n"
          "Keeps the newest --keep generations and deletes older ones. Safe to run from cron:\n"
          "Exit status: 0 done, 1 failed (the live generation is untouched), 2 bad arguments, 75 another writer\n"
          "(ingest or rebuild) holds the data dir's lock.",
          {data_option(),
           keep_option(),
           {"keep-vectors", "", "build the vector index from the stored vectors instead of re-embedding"},
           {"vector-index", "KIND", "vector index: auto (default), flat, sq4, hnsw, ivf"},
           {"wait", "", "wait for another writer to finish instead of exiting with 75"},
           {"log", "FILE", "also append log lines to FILE"},
           {"json", "", "print one JSON summary object on stdout"},
           {"quiet", "", "print nothing on success (warnings and errors still go to stderr)"}}};
}

CommandSpec verify_spec() {
  return {"verify",
          "",
          "Checks that the catalog, the live generation's keyword index and vector index, and its manifest agree:\n"
          "the same chunk ids, counts, change counter and embedder. Prints each disagreement.\n"
          "--repair restores agreement by rebuilding the generation from the catalog (the catalog is the truth).\n"
          "Exit status: 0 all agree (or repaired), 1 they disagree or the check failed, 75 --repair found the\n"
          "data dir locked by a writer.",
          {data_option(),
           {"repair", "", "rebuild from the catalog when anything disagrees (stored vectors, no re-embedding)"},
           keep_option(),
           {"json", "", "print the report as one JSON object on stdout"},
           {"quiet", "", "print nothing when all agree"}}};
}

nlohmann::json report_json(const index::VerifyReport& r) {
  return {{"ok", r.ok()},
          {"generation", r.generation},
          {"generation_change", r.generation_change},
          {"catalog_change", r.catalog_change},
          {"chunks", r.chunks},
          {"keyword_chunks", r.keyword_chunks},
          {"vectors", r.vectors},
          {"problems", r.problems},
          {"notes", r.notes}};
}

void print_report(const index::VerifyReport& r, const std::string& data) {
  for (const auto& p : r.problems) std::printf("problem: %s\n", p.c_str());
  for (const auto& n : r.notes) std::printf("note: %s\n", n.c_str());
  std::printf("%s: generation %lld (catalog change %lld): %lld chunks, %lld in the keyword index", data.c_str(),
              static_cast<long long>(r.generation), static_cast<long long>(r.generation_change),
              static_cast<long long>(r.chunks), static_cast<long long>(r.keyword_chunks));
  if (r.vectors >= 0) std::printf(", %lld vectors", static_cast<long long>(r.vectors));
  std::printf(": %s\n", r.ok() ? "all agree" : "DISAGREE");
}

}  // namespace

int cmd_rebuild(int argc, char** argv) {
  CommandSpec spec = rebuild_spec();
  ParsedArgs args = parse_args(spec, argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec).c_str());
    return kExitOk;
  }
  if (!args.positional.empty()) fail(Errc::kInvalidArgument, "rag rebuild: takes no PATH (see --help)");
  apply_log_options(args);
  index::RebuildOptions options;
  options.wait_for_lock = args.has("wait");
  options.reembed = !args.has("keep-vectors");
  options.keep_generations = static_cast<int>(args.get_int("keep", index::kDefaultKeepGenerations, 2, kMaxKeep));
  if (args.has("vector-index")) options.vector_index = index::parse_vector_index_kind(args.get("vector-index"));
  std::string data = data_dir(args);
  index::RebuildSummary s = index::rebuild(data, options);
  if (args.has("json")) {
    std::printf("%s\n", nlohmann::json{{"generation", s.generation}, {"chunks", s.chunks}, {"vectors", s.vectors},
                                       {"embedded", s.embedded}, {"purged", s.purged}, {"seconds", s.seconds}}
                            .dump()
                            .c_str());
  } else if (!args.has("quiet")) {
    std::printf("rebuilt %s: generation %lld live with %lld chunks, %lld vectors (%lld embedded) in %.2f s\n",
                data.c_str(), static_cast<long long>(s.generation), static_cast<long long>(s.chunks),
                static_cast<long long>(s.vectors), static_cast<long long>(s.embedded), s.seconds);
  }
  return kExitOk;
}

int cmd_verify(int argc, char** argv) {
  CommandSpec spec = verify_spec();
  ParsedArgs args = parse_args(spec, argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec).c_str());
    return kExitOk;
  }
  if (!args.positional.empty()) fail(Errc::kInvalidArgument, "rag verify: takes no PATH (see --help)");
  if (args.has("quiet")) quiet_stderr_log();
  std::string data = data_dir(args);
  index::VerifyReport r = index::verify(data);
  if (!r.ok() && args.has("repair")) {
    if (!args.has("json")) print_report(r, data);
    index::RebuildOptions options;
    options.reembed = false;
    options.keep_generations = static_cast<int>(args.get_int("keep", index::kDefaultKeepGenerations, 2, kMaxKeep));
    index::RebuildSummary s = index::rebuild(data, options);
    if (!args.has("json"))
      std::printf("repaired: generation %lld rebuilt from the catalog\n", static_cast<long long>(s.generation));
    r = index::verify(data);
  }
  if (args.has("json")) std::printf("%s\n", report_json(r).dump().c_str());
  else if (!r.ok() || !args.has("quiet")) print_report(r, data);
  return r.ok() ? kExitOk : kExitFailed;
}

}  // namespace rag::cli
