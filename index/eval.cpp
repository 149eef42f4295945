// Retrieval evaluation on BEIR-layout folders.
//
//   <dir>/corpus.jsonl            {"_id", "title", "text"} per line
//   <dir>/queries_train.jsonl     {"_id", "text"} per line (else queries.jsonl)
//   <dir>/qrels/train.tsv         header line, then query-id \t corpus-id \t score (else test.tsv)
//
// Loaders and metrics; retrieve/eval.cpp runs the queries (`rag eval beir`).
//
// Metrics (as in BEIR / pytrec_eval): nDCG@10 with graded gains, discount 1/log2(rank+1), the ideal from all
// judged relevant documents; Recall@100 = relevant retrieved in the top 100 / relevant judged; MRR@10 = 1/rank of
// the first relevant hit in the top 10. Means over queries with at least one relevant judgement.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "index/index.h"

namespace rag::index {
namespace {

std::ifstream open_input(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) fail(Errc::kNotFound, "{}: no such file", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(Errc::kIo, "{}: cannot open", path);
  return in;
}

bool blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(), [](unsigned char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// Calls `visit(object, line_number)` for every non-blank line of a JSONL file.
template <typename Visit>
void for_each_json_line(const std::string& path, Visit visit) {
  std::ifstream in = open_input(path);
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (blank(line)) continue;
    nlohmann::json object = nlohmann::json::parse(line, nullptr, false);
    if (object.is_discarded() || !object.is_object())
      fail(Errc::kCorrupt, "{}: line {}: not a JSON object", path, number);
    visit(object, number);
  }
  if (in.bad()) fail(Errc::kIo, "{}: read error after line {}", path, number);
}

std::string string_field(const nlohmann::json& object, const char* field, bool required, const std::string& path,
                         int64_t line) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) {
    if (required) fail(Errc::kCorrupt, "{}: line {}: missing field \"{}\"", path, line, field);
    return {};
  }
  if (!it->is_string()) fail(Errc::kCorrupt, "{}: line {}: field \"{}\" is not a string", path, line, field);
  return it->get<std::string>();
}

}  // namespace

std::vector<BeirDocument> load_beir_corpus(const std::string& path) {
  std::vector<BeirDocument> out;
  for_each_json_line(path, [&](const nlohmann::json& o, int64_t line) {
    out.push_back({string_field(o, "_id", true, path, line), string_field(o, "title", false, path, line),
                   string_field(o, "text", true, path, line)});
    if (out.back().id.empty()) fail(Errc::kCorrupt, "{}: line {}: empty \"_id\"", path, line);
  });
  return out;
}

std::vector<BeirQuery> load_beir_queries(const std::string& path) {
  std::vector<BeirQuery> out;
  for_each_json_line(path, [&](const nlohmann::json& o, int64_t line) {
    out.push_back({string_field(o, "_id", true, path, line), string_field(o, "text", true, path, line)});
  });
  return out;
}

Qrels load_qrels(const std::string& path) {
  std::ifstream in = open_input(path);
  Qrels out;
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (number == 1 || blank(line)) continue;  // the header
    std::vector<std::string> fields;
    size_t start = 0;
    for (;;) {
      size_t tab = line.find('\t', start);
      fields.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    if (fields.size() != 3 || fields[0].empty() || fields[1].empty())
      fail(Errc::kCorrupt, "{}: line {}: want query-id<TAB>corpus-id<TAB>score, got {} fields", path, number,
           fields.size());
    int score = 0;
    try {
      size_t used = 0;
      score = std::stoi(fields[2], &used);
      if (used != fields[2].size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      fail(Errc::kCorrupt, "{}: line {}: score '{}' is not an integer", path, number, fields[2]);
    }
    out[fields[0]][fields[1]] = score;
  }
  if (in.bad()) fail(Errc::kIo, "{}: read error after line {}", path, number);
  return out;
}

double ndcg_at(const std::vector<std::string>& ranking, const std::map<std::string, int>& judged, int k) {
  double dcg = 0;
  for (size_t i = 0; i < ranking.size() && i < static_cast<size_t>(k); ++i) {
    auto it = judged.find(ranking[i]);
    if (it != judged.end() && it->second > 0) dcg += it->second / std::log2(static_cast<double>(i) + 2);
  }
  std::vector<int> gains;
  for (const auto& [id, grade] : judged)
    if (grade > 0) gains.push_back(grade);
  std::sort(gains.rbegin(), gains.rend());
  double ideal = 0;
  for (size_t i = 0; i < gains.size() && i < static_cast<size_t>(k); ++i)
    ideal += gains[i] / std::log2(static_cast<double>(i) + 2);
  return ideal > 0 ? dcg / ideal : 0;
}

double recall_at(const std::vector<std::string>& ranking, const std::map<std::string, int>& judged, int k) {
  int64_t relevant = 0, found = 0;
  for (const auto& [id, grade] : judged) relevant += grade > 0;
  for (size_t i = 0; i < ranking.size() && i < static_cast<size_t>(k); ++i) {
    auto it = judged.find(ranking[i]);
    found += it != judged.end() && it->second > 0;
  }
  return relevant > 0 ? static_cast<double>(found) / static_cast<double>(relevant) : 0;
}

double mrr_at(const std::vector<std::string>& ranking, const std::map<std::string, int>& judged, int k) {
  for (size_t i = 0; i < ranking.size() && i < static_cast<size_t>(k); ++i) {
    auto it = judged.find(ranking[i]);
    if (it != judged.end() && it->second > 0) return 1.0 / static_cast<double>(i + 1);
  }
  return 0;
}

EvalScores score_rankings(const std::map<std::string, std::vector<std::string>>& rankings, const Qrels& qrels) {
  EvalScores s;
  static const std::vector<std::string> kNone;
  for (const auto& [query, judged] : qrels) {
    if (std::none_of(judged.begin(), judged.end(), [](const auto& j) { return j.second > 0; })) continue;
    auto it = rankings.find(query);
    const std::vector<std::string>& ranking = it == rankings.end() ? kNone : it->second;
    ++s.queries;
    s.ndcg10 += ndcg_at(ranking, judged, 10);
    s.recall100 += recall_at(ranking, judged, 100);
    s.mrr10 += mrr_at(ranking, judged, 10);
  }
  if (s.queries > 0) {
    double n = static_cast<double>(s.queries);
    s.ndcg10 /= n;
    s.recall100 /= n;
    s.mrr10 /= n;
  }
  return s;
}

}  // namespace rag::index
