// `rag eval beir DIR`: retrieval quality (nDCG@10, Recall@100, MRR@10) on a BEIR-layout folder, indexed (and
// embedded when the mode needs it) into a temporary data dir that is removed afterwards (see retrieve/eval.cpp).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "retrieve/retrieve.h"

namespace rag::cli {
namespace {

CommandSpec eval_spec() {
  return {"eval beir",
          "DIR",
          "Indexes DIR/corpus.jsonl (one chunk per document) into a temporary data dir, runs the judged queries\n"
          "through retrieval and prints nDCG@10, Recall@100 and MRR@10 averaged over queries with a relevant\n"
          "judgement. dense and hybrid embed the corpus with --embed-model; hybrid+rerank also reorders the best\n"
          "fused candidates with --rerank-model.",
          {{"queries", "FILE", "queries JSONL (default DIR/queries_train.jsonl if present, else DIR/queries.jsonl)"},
           {"qrels", "FILE", "qrels TSV with a header (default DIR/qrels/train.tsv if present, else test.tsv)"},
           {"mode", "MODE", "bm25 (default), dense, hybrid or hybrid+rerank"},
           {"embed-model", "FILE", "GGUF embedder; needed by dense, hybrid and hybrid+rerank"},
           {"rerank-model", "FILE", "GGUF cross-encoder; needed by hybrid+rerank"},
           {"fusion", "KIND", "weighted (default) or rrf"},
           {"bm25-weight", "W", fmt::format("BM25's share in fusion, 0..1 (default {})", retrieve::kDefaultBm25Weight)},
           {"rrf-k", "K", "rank constant of rrf fusion (default 60)"},
           {"candidates", "N", "candidates per side (default 100, at least -k)"},
           {"rerank-top-n", "N", "fused candidates the reranker scores (default 50)"},
           {"k", "N", fmt::format("hits retrieved per query, 1..{} (default 100); -k N works too", index::kMaxK)},
           {"json", "", "print one JSON object on stdout"}}};
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  CommandSpec spec = eval_spec();
  ParsedArgs args = parse_args(spec, argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec).c_str());
    return kExitOk;
  }
  if (args.positional.size() != 2 || args.positional[0] != "beir")
    fail(Errc::kInvalidArgument, "rag eval: want `rag eval beir DIR` (see --help)");
  retrieve::BeirEvalOptions options;
  options.queries_path = args.get("queries");
  options.qrels_path = args.get("qrels");
  options.mode = args.get("mode", "bm25");
  options.embed_model = args.get("embed-model");
  options.rerank_model = args.get("rerank-model");
  options.k = static_cast<int>(args.get_int("k", 100, 1, index::kMaxK));
  retrieve::RetrieveOptions& r = options.retrieve;
  r.fusion = retrieve::parse_fusion(args.get("fusion", "weighted"));
  r.bm25_weight = args.get_double("bm25-weight", retrieve::kDefaultBm25Weight, 0, 1);
  r.rrf_k = static_cast<int>(args.get_int("rrf-k", 60, 1, 100000));
  r.candidates = static_cast<int>(args.get_int("candidates", 100, 1, retrieve::kMaxCandidates));
  r.rerank_top_n = static_cast<int>(args.get_int("rerank-top-n", 50, 0, 2 * retrieve::kMaxCandidates));
  retrieve::BeirEvalResult result = retrieve::eval_beir(args.positional[1], options);

  const bool fused = options.mode == "hybrid" || options.mode == "hybrid+rerank";
  if (args.has("json")) {
    nlohmann::json out = {{"mode", result.mode},
                          {"queries", result.scores.queries},
                          {"ndcg@10", result.scores.ndcg10},
                          {"recall@100", result.scores.recall100},
                          {"mrr@10", result.scores.mrr10},
                          {"models", {{"embedder", result.models.embedder}, {"reranker", result.models.reranker}}},
                          {"index_seconds", result.index_seconds},
                          {"seconds", result.seconds}};
    if (fused) {
      out["fusion"] = retrieve::fusion_name(r.fusion);
      out["bm25_weight"] = r.bm25_weight;
      if (r.fusion == retrieve::Fusion::kRrf) out["rrf_k"] = r.rrf_k;
    }
    std::printf("%s\n", out.dump().c_str());
    return kExitOk;
  }
  std::printf("%-13s %8s %8s %10s %8s %8s\n", "mode", "queries", "nDCG@10", "Recall@100", "MRR@10", "seconds");
  std::printf("%-13s %8lld %8.4f %10.4f %8.4f %8.1f\n", result.mode.c_str(),
              static_cast<long long>(result.scores.queries), result.scores.ndcg10, result.scores.recall100,
              result.scores.mrr10, result.seconds);
  return kExitOk;
}

}  // namespace rag::cli
