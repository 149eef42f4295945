// `rag ask "question"`: one answer with numbered citations, through the same pipeline as POST /v1/ask.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "server/server.h"

namespace rag::cli {

server::Config service_config(const ParsedArgs& args);  // cmd-serve.cpp

namespace {

const CommandSpec& spec() {
  static const CommandSpec s = {
      "ask",
      "QUESTION...",
      "Answers QUESTION from the documents the asking principal may read, citing them as [n]. Without\n"
      "--generate-model the answer is extractive: the best matching sentences, quoted, each with its [n].",
      {data_option(),
       {"as", "USER[:GROUP,...]", "ask as this principal (default local, holding the default group)"},
       {"default-group", "NAME", "group that may read documents without an ACL (default everyone)"},
       {"embed-model", "FILE", "BERT-family embedder (GGUF)"},
       {"rerank-model", "FILE", "cross-encoder reranker (GGUF)"},
       {"generate-model", "FILE", "Llama/Qwen2 generator (GGUF)"},
       {"sources", "N", "passages given to the generator, 1..20 (default 5)"},
       {"max-tokens", "N", "tokens to generate at most (default 256)"},
       {"temperature", "T", "sampling temperature; 0 is greedy (default 0)"},
       {"seed", "S", "random seed for sampling (default 0)"},
       {"kv-mem", "MIB", fmt::format(kKvMemHelp, 256)},
       {"kv-type", "TYPE", kKvTypeHelp},
       {"json", "", "print the answer, citations, timings and models as JSON"}}};
  return s;
}

server::Principal parse_principal(const std::string& text, const std::string& default_group) {
  server::Principal p;
  const size_t colon = text.find(':');
  p.user = text.substr(0, colon);
  if (p.user.empty()) fail(Errc::kInvalidArgument, "rag ask: --as needs a user name: USER or USER:GROUP,GROUP");
  if (colon != std::string::npos) {
    std::string groups = text.substr(colon + 1);
    size_t start = 0;
    while (start <= groups.size()) {
      size_t comma = groups.find(',', start);
      if (comma == std::string::npos) comma = groups.size();
      if (comma > start) p.groups.push_back(groups.substr(start, comma - start));
      start = comma + 1;
    }
  } else {
    p.groups.push_back(default_group);
  }
  return p;
}

}  // namespace

int cmd_ask(int argc, char** argv) {
  const ParsedArgs args = parse_args(spec(), argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec()).c_str());
    return kExitOk;
  }
  if (args.positional.empty()) fail(Errc::kInvalidArgument, "rag ask: give a question (see --help)");
  server::AskRequest request;
  for (const auto& word : args.positional) request.question += (request.question.empty() ? "" : " ") + word;
  server::Config config = service_config(args);
  request.max_tokens = args.get_int("max-tokens", 256, 1, config.max_tokens);
  request.temperature = static_cast<float>(args.get_double("temperature", 0.0, 0.0, 2.0));
  request.seed = static_cast<uint64_t>(args.get_int("seed", 0, 0, INT64_MAX));
  const server::Principal principal = parse_principal(args.get("as", "local"), config.default_group);
  for (const auto& g : principal.groups)
    if (g.empty()) fail(Errc::kInvalidArgument, "rag ask: --as has an empty group name");
  const bool json = args.has("json");

  server::Service service(config);
  const bool stream = !json && service.models().generator != "none";
  server::Answer answer = service.ask(request, principal, [&](std::string_view text) {
    if (stream) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    }
    return true;
  });

  if (json) {
    nlohmann::json citations = nlohmann::json::array();
    for (const auto& c : answer.citations)
      citations.push_back({{"n", c.n}, {"doc_id", c.doc_id}, {"chunk_id", c.chunk_id}, {"path", c.path}, {"title", c.title},
                           {"page", c.page > 0 ? nlohmann::json(c.page) : nlohmann::json(nullptr)}, {"heading", c.heading},
                           {"snippet", c.snippet}, {"score", c.score}});
    const auto& t = answer.timings;
    nlohmann::json out = {
        {"answer", answer.text},
        {"supported", answer.supported},
        {"citations", citations},
        {"finish_reason", answer.finish_reason},
        {"timings", {{"retrieve_ms", t.retrieve_ms}, {"rerank_ms", t.rerank_ms}, {"prefill_ms", t.prefill_ms},
                     {"first_token_ms", t.first_token_ms}, {"total_ms", t.total_ms}}},
        {"models", {{"embedder", answer.models.embedder}, {"reranker", answer.models.reranker}, {"generator", answer.models.generator}}},
        {"index_generation", answer.generation}};
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return kExitOk;
  }
  if (!stream) std::printf("%s", answer.text.c_str());
  std::printf("\n");
  if (!answer.citations.empty()) std::printf("\n");
  for (const auto& c : answer.citations) {
    std::string where = c.path;
    if (c.page > 0) where += fmt::format("  p. {}", c.page);
    std::printf("[%d] %s  %s\n", c.n, c.title.c_str(), where.c_str());
  }
  if (answer.models.generator == "none") std::printf("\n(generator: none, extractive answer)\n");
  return kExitOk;
}

}  // namespace rag::cli
