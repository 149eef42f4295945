// `rag model embed FILE TEXT...`: runs a BERT-family GGUF model on the command line, to check a user's
// embedder or reranker before configuring it: embeddings (dimension, norm, first values, or the vectors as
// JSON) or, with --pair QUERY, cross-encoder scores of each TEXT as a passage for QUERY.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "nn/encoder.h"

namespace rag::cli {
namespace {

const CommandSpec& spec() {
  static const CommandSpec s = {
      "model embed",
      "FILE TEXT...",
      "Runs the BERT-family encoder in FILE (GGUF) on each TEXT. An embedding model prints, for each text, its "
      "token count, the embedding's dimension and L2 norm and its first values; a reranker needs --pair and "
      "prints the relevance score of each TEXT as a passage for the query.",
      {
          {"pair", "QUERY", "score each TEXT as a passage for QUERY with a cross-encoder (reranker) model"},
          {"json", "", "print JSON: the model, and the full vectors or the scores"},
          {"values", "N", "first values to print per embedding (default 8)"},
      },
  };
  return s;
}

}  // namespace

int cmd_model_embed(int argc, char** argv) {
  const ParsedArgs args = parse_args(spec(), argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec()).c_str());
    return kExitOk;
  }
  if (args.positional.size() < 2) {
    std::fprintf(stderr, "rag model embed: expected a model file and at least one text\n\n%s", usage(spec()).c_str());
    return kExitUsage;
  }
  const int64_t shown = args.get_int("values", 8, 0, 1 << 16);
  const std::vector<std::string> texts(args.positional.begin() + 1, args.positional.end());
  const auto encoder = nn::Encoder::open(args.positional[0]);
  const bool json = args.has("json");

  nlohmann::json out = {{"model", args.positional[0]},
                        {"identity", encoder->identity()},
                        {"pooling", nn::pooling_name(encoder->pooling())},
                        {"max_tokens", encoder->max_tokens()}};
  if (args.has("pair")) {
    const std::string query = args.get("pair");
    const std::vector<float> scores = encoder->score_pairs(query, texts);
    if (json) {
      out["query"] = query;
      out["scores"] = scores;
      std::printf("%s\n", out.dump(2).c_str());
      return kExitOk;
    }
    std::printf("%s (%s)\n", encoder->identity().c_str(), nn::pooling_name(encoder->pooling()).data());
    for (size_t i = 0; i < texts.size(); ++i) {
      const size_t tokens = encoder->tokenize_pair(query, texts[i]).ids.size();
      std::printf("%2zu  score %+.6f  tokens %zu  %s\n", i, scores[i], tokens, texts[i].c_str());
    }
    return kExitOk;
  }
  if (encoder->is_reranker()) {
    fail(Errc::kInvalidArgument, "{} is a reranker: give the query with --pair QUERY", args.positional[0]);
  }

  const std::vector<float> vectors = encoder->embed(texts);
  const size_t dim = static_cast<size_t>(encoder->dim());
  if (json) {
    out["dim"] = dim;
    out["embeddings"] = nlohmann::json::array();
    for (size_t i = 0; i < texts.size(); ++i) {
      out["embeddings"].push_back(std::vector<float>(vectors.begin() + i * dim, vectors.begin() + (i + 1) * dim));
    }
    std::printf("%s\n", out.dump().c_str());
    return kExitOk;
  }
  std::printf("%s (%s pooling)\n", encoder->identity().c_str(), nn::pooling_name(encoder->pooling()).data());
  for (size_t i = 0; i < texts.size(); ++i) {
    const float* v = vectors.data() + i * dim;
    double norm = 0.0;
    for (size_t j = 0; j < dim; ++j) norm += static_cast<double>(v[j]) * v[j];
    std::printf("%2zu  tokens %zu  dim %zu  norm %.6f  [", i, encoder->tokenize(texts[i]).ids.size(), dim,
                std::sqrt(norm));
    for (size_t j = 0; j < std::min(dim, static_cast<size_t>(shown)); ++j) std::printf("%s%+.5f", j ? " " : "", v[j]);
    std::printf("%s]  %s\n", static_cast<size_t>(shown) < dim ? " ..." : "", texts[i].c_str());
  }
  if (texts.size() > 1) {
    std::printf("cosine similarity to text 0:");
    for (size_t i = 1; i < texts.size(); ++i) {
      double dot = 0.0;
      for (size_t j = 0; j < dim; ++j) dot += static_cast<double>(vectors[j]) * vectors[i * dim + j];
      std::printf(" %zu:%.4f", i, dot);
    }
    std::printf("\n");
  }
  return kExitOk;
}

}  // namespace rag::cli
