// `rag search "query" [-k N]`: keyword (BM25) search over the ingested chunks. Takes no lock.
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "index/index.h"

namespace rag::cli {
namespace {

CommandSpec search_spec() {
  return {"search",
          "QUERY...",
          "Searches the ingested chunks by keywords (BM25) and prints the best matches with path, page,\n"
          "heading and a snippet. Words are stemmed; \"quoted phrases\", title:word and heading:word work.",
          {data_option(),
           {"k", "N", fmt::format("number of results, 1..{} (default 10); -k N works too", index::kMaxK)},
           {"json", "", "print {\"results\": [...]} on stdout"}}};
}

}  // namespace

int cmd_search(int argc, char** argv) {
  CommandSpec spec = search_spec();
  ParsedArgs args = parse_args(spec, argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec).c_str());
    return kExitOk;
  }
  if (args.positional.empty()) fail(Errc::kInvalidArgument, "rag search: give a query (see --help)");
  std::string query;
  for (const auto& word : args.positional) query += (query.empty() ? "" : " ") + word;

  index::SearchOptions options;
  options.k = static_cast<int>(args.get_int("k", 10, 1, index::kMaxK));
  bool json = args.has("json");
  bool bold = !json && ::isatty(1) == 1;
  if (!json) {
    options.highlight_begin = bold ? "\x1b[1m" : "";
    options.highlight_end = bold ? "\x1b[0m" : "";
  }
  std::vector<index::SearchHit> hits = index::search(data_dir(args), query, options);

  if (json) {
    nlohmann::json results = nlohmann::json::array();
    for (const auto& h : hits) {
      results.push_back({{"chunk_id", h.chunk_id},
                         {"doc_id", h.doc_id},
                         {"path", h.path},
                         {"title", h.title},
                         {"page", h.page > 0 ? nlohmann::json(h.page) : nlohmann::json(nullptr)},
                         {"heading", h.heading},
                         {"score", h.score},
                         {"snippet", h.snippet}});
    }
    std::printf("%s\n", nlohmann::json{{"results", results}}.dump().c_str());
    return kExitOk;
  }
  if (hits.empty()) std::printf("no results\n");
  for (size_t i = 0; i < hits.size(); ++i) {
    const auto& h = hits[i];
    std::string where = h.path;
    if (h.page > 0) where += fmt::format("  p. {}", h.page);
    if (!h.heading.empty()) where += "  " + h.heading;
    std::printf("%zu. %.3f  %s\n   %s\n", i + 1, h.score, where.c_str(), h.snippet.c_str());
  }
  return kExitOk;
}

}  // namespace rag::cli
