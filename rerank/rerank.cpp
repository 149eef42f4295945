// rerank(): batches within a time budget. See rerank.h.
#include "rerank/rerank.h"

#include <algorithm>

#include "common/error.h"

namespace rag::rerank {

std::string_view cut_utf8(std::string_view text, size_t max_bytes) {
  if (max_bytes == 0 || text.size() <= max_bytes) return text;
  size_t end = max_bytes;
  // Step back over continuation bytes (10xxxxxx) so the cut lands before a lead byte.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

RerankResult rerank(const Reranker& reranker, std::string_view query, const std::vector<std::string>& passages,
                    const RerankOptions& options) {
  RAG_ASSERT(options.batch >= 1);
  auto now = [&] { return options.clock ? options.clock() : std::chrono::steady_clock::now(); };
  const auto start = now();
  auto elapsed_ms = [&] { return std::chrono::duration<double, std::milli>(now() - start).count(); };

  RerankResult result;
  result.scores.reserve(passages.size());
  const size_t batch = static_cast<size_t>(options.batch);
  std::vector<std::string> cut;
  for (size_t begin = 0; begin < passages.size(); begin += batch) {
    if (begin > 0 && options.budget_ms > 0 && elapsed_ms() >= options.budget_ms) {
      result.cut = true;
      break;
    }
    const size_t end = std::min(passages.size(), begin + batch);
    cut.clear();
    for (size_t i = begin; i < end; ++i) cut.emplace_back(cut_utf8(passages[i], options.max_passage_bytes));
    std::vector<float> scores = reranker.score(query, cut);
    if (scores.size() != cut.size())
      fail(Errc::kInternal, "reranker {}: returned {} scores for {} passages", reranker.name(), scores.size(),
           cut.size());
    result.scores.insert(result.scores.end(), scores.begin(), scores.end());
  }
  result.ms = elapsed_ms();
  return result;
}

}  // namespace rag::rerank
