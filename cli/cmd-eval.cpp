// `rag eval beir DIR`: retrieval quality (nDCG@10, Recall@100, MRR@10) on a BEIR-layout folder, indexed into a
// temporary data dir that is removed afterwards (see index/eval.cpp).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "index/index.h"

namespace rag::cli {
namespace {

CommandSpec eval_spec() {
  return {"eval beir",
          "DIR",
          "Indexes DIR/corpus.jsonl (one chunk per document) into a temporary data dir, runs the judged queries\n"
          "through search and prints nDCG@10, Recall@100 and MRR@10 averaged over queries with a relevant\n"
          "judgement. Only --mode bm25 runs today; dense, hybrid and hybrid+rerank need models not built yet.",
          {{"queries", "FILE", "queries JSONL (default DIR/queries_train.jsonl if present, else DIR/queries.jsonl)"},
           {"qrels", "FILE", "qrels TSV with a header (default DIR/qrels/train.tsv if present, else test.tsv)"},
           {"mode", "MODE", "bm25 (default), dense, hybrid or hybrid+rerank"},
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
  index::BeirEvalOptions options;
  options.queries_path = args.get("queries");
  options.qrels_path = args.get("qrels");
  options.mode = args.get("mode", "bm25");
  options.k = static_cast<int>(args.get_int("k", 100, 1, index::kMaxK));
  index::BeirEvalResult r = index::eval_beir(args.positional[1], options);

  if (args.has("json")) {
    nlohmann::json out = {{"mode", r.mode},
                          {"queries", r.scores.queries},
                          {"ndcg@10", r.scores.ndcg10},
                          {"recall@100", r.scores.recall100},
                          {"mrr@10", r.scores.mrr10},
                          {"seconds", r.seconds}};
    std::printf("%s\n", out.dump().c_str());
    return kExitOk;
  }
  std::printf("%-8s %8s %8s %10s %8s %8s\n", "mode", "queries", "nDCG@10", "Recall@100", "MRR@10", "seconds");
  std::printf("%-8s %8lld %8.4f %10.4f %8.4f %8.1f\n", r.mode.c_str(), static_cast<long long>(r.scores.queries),
              r.scores.ndcg10, r.scores.recall100, r.scores.mrr10, r.seconds);
  return kExitOk;
}

}  // namespace rag::cli
