// `rag search "query"`: hybrid retrieval (BM25 and vectors, fused, optionally reranked) over the ingested chunks,
// as the service runs it (retrieve/retrieve.h). Takes no lock.
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "retrieve/retrieve.h"

namespace rag::cli {
namespace {

CommandSpec search_spec() {
  return {"search",
          "QUERY...",
          "Finds the chunks that best match QUERY and prints them with path, page, heading and a snippet.\n"
          "Keyword search (BM25: words are stemmed; \"quoted phrases\", title:word and heading:word work) and,\n"
          "when the data dir has vectors (rag ingest --embed-model), vector search run side by side and are\n"
          "fused; a cross-encoder (--rerank-model) then reorders the best. Without --as nothing is filtered:\n"
          "that is local admin use of the data dir; --as USER:GROUP,... shows only what that principal may read\n"
          "(documents without an ACL need the default group).",
          {data_option(),
           {"k", "N", fmt::format("number of results, 1..{} (default 10); -k N works too", index::kMaxK)},
           {"as", "USER[:GROUP,...]", "search as this principal (user:USER, group:GROUP...); default: no filter"},
           {"default-group", "NAME",
            "group whose members read documents without an ACL (default $RAG_DEFAULT_GROUP, else everyone)"},
           {"mode", "MODE", "hybrid (default; BM25 alone when there are no vectors), bm25 or dense"},
           {"embed-model", "FILE", "GGUF embedder (default: the one the data dir was ingested with)"},
           {"rerank-model", "FILE", "GGUF cross-encoder that reorders the best fused candidates (default: none)"},
           {"fusion", "KIND", "weighted (default: min-max normalised scores) or rrf (reciprocal rank)"},
           {"bm25-weight", "W", fmt::format("BM25's share in fusion, 0..1 (default {})", retrieve::kDefaultBm25Weight)},
           {"rrf-k", "K", "rank constant of rrf fusion (default 60)"},
           {"candidates", "N", fmt::format("candidates taken from each side, 1..{} (default 100)", retrieve::kMaxCandidates)},
           {"rerank-top-n", "N", "fused candidates the reranker scores (default 50)"},
           {"rerank-budget-ms", "MS", "time budget for reranking; the rest keep fused order (default: none)"},
           {"json", "", "print {\"results\": [...], \"mode\", \"models\", \"timings_ms\", \"notes\"} on stdout"}}};
}

nlohmann::json rank_json(int rank, double score) {
  if (rank <= 0) return nullptr;
  return {{"rank", rank}, {"score", score}};
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

  retrieve::RetrieveOptions options;
  options.k = static_cast<int>(args.get_int("k", 10, 1, index::kMaxK));
  if (args.has("as")) options.principal = retrieve::parse_principal(args.get("as"));
  options.mode = retrieve::parse_mode(args.get("mode", "hybrid"));
  options.fusion = retrieve::parse_fusion(args.get("fusion", "weighted"));
  options.bm25_weight = args.get_double("bm25-weight", retrieve::kDefaultBm25Weight, 0, 1);
  options.rrf_k = static_cast<int>(args.get_int("rrf-k", 60, 1, 100000));
  options.candidates = static_cast<int>(args.get_int("candidates", 100, 1, retrieve::kMaxCandidates));
  options.rerank_top_n = static_cast<int>(args.get_int("rerank-top-n", 50, 0, 2 * retrieve::kMaxCandidates));
  options.rerank_budget_ms = args.get_double("rerank-budget-ms", 0, 0, 3.6e6);
  bool json = args.has("json");
  bool bold = !json && ::isatty(1) == 1;
  if (!json) {
    options.highlight_begin = bold ? "\x1b[1m" : "";
    options.highlight_end = bold ? "\x1b[0m" : "";
  }

  retrieve::RetrieverConfig config;
  config.data_dir = data_dir(args);
  config.default_group = args.has("default-group") ? args.get("default-group") : retrieve::default_group_from_env();
  if (options.mode != retrieve::Mode::kBm25) {
    if (args.has("embed-model")) {
      config.embedder = index::open_embedder(args.get("embed-model"));
    } else {
      config.embedder = retrieve::open_recorded_embedder(config.data_dir);
    }
  }
  if (args.has("rerank-model")) config.reranker = rerank::open_reranker(args.get("rerank-model"));
  retrieve::Retriever retriever(config);
  retrieve::Retrieval r = retriever.retrieve(query, options);

  if (json) {
    nlohmann::json results = nlohmann::json::array();
    for (const auto& c : r.candidates) {
      results.push_back({{"chunk_id", c.chunk_id},
                         {"doc_id", c.doc_id},
                         {"path", c.path},
                         {"title", c.title},
                         {"page", c.page > 0 ? nlohmann::json(c.page) : nlohmann::json(nullptr)},
                         {"heading", c.heading},
                         {"score", c.score},
                         {"snippet", c.snippet},
                         {"bm25", rank_json(c.bm25_rank, c.bm25_score)},
                         {"vector", rank_json(c.vector_rank, c.vector_score)},
                         {"fused", rank_json(c.fused_rank, c.fused_score)},
                         {"rerank", rank_json(c.rerank_rank, c.rerank_score)}});
    }
    const auto& t = r.timings;
    nlohmann::json out = {{"results", results},
                          {"mode", retrieve::mode_name(r.mode)},
                          {"models", {{"embedder", r.models.embedder}, {"reranker", r.models.reranker}}},
                          {"reranked", r.reranked},
                          {"rerank_cut", r.rerank_cut},
                          {"timings_ms",
                           {{"embed", t.embed_ms}, {"bm25", t.bm25_ms}, {"vector", t.vector_ms}, {"fuse", t.fuse_ms},
                            {"rerank", t.rerank_ms}, {"hydrate", t.hydrate_ms}, {"total", t.total_ms}}},
                          {"notes", r.notes}};
    std::printf("%s\n", out.dump().c_str());
    return kExitOk;
  }
  // A data dir without vectors is the plain BM25 setup: its fallback is news only to someone who asked for more.
  if (args.has("mode") || args.has("embed-model") || args.has("rerank-model"))
    for (const auto& note : r.notes) std::fprintf(stderr, "note: %s\n", note.c_str());
  if (r.candidates.empty()) std::printf("no results\n");
  for (size_t i = 0; i < r.candidates.size(); ++i) {
    const auto& c = r.candidates[i];
    std::string where = c.path;
    if (c.page > 0) where += fmt::format("  p. {}", c.page);
    if (!c.heading.empty()) where += "  " + c.heading;
    std::printf("%zu. %.3f  %s\n   %s\n", i + 1, c.score, where.c_str(), c.snippet.c_str());
  }
  return kExitOk;
}

}  // namespace rag::cli
