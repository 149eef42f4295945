// `rag eval beir` over every retrieval mode: the corpus goes into a temporary data dir (one chunk per document,
// as index/eval.cpp explains), is embedded when the mode needs vectors, and every judged query runs through
// Retriever::retrieve, the path the service uses. Loaders and metrics are index/'s (index/eval.cpp).
//
// The vectors are written as ingest writes them (catalog chunk_vectors, then a FAISS file and its manifest in
// generation 1) through index/'s public API, with index::embed_passage(title, "", text) as the passage.
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "common/error.h"
#include "common/log.h"
#include "retrieve/retrieve.h"

namespace rag::retrieve {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::string_view kPathPrefix = "beir:";

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

std::string first_existing(const std::string& a, const std::string& b) { return file_exists(a) ? a : b; }

// A scratch dir removed on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(std::string parent) {
    if (parent.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      parent = tmp && *tmp ? tmp : "/tmp";
    }
    std::string pattern = parent + "/rag-eval-XXXXXX";
    if (!::mkdtemp(pattern.data())) fail(Errc::kIo, "{}: cannot create a temporary dir", pattern);
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void build_index(const std::string& data_dir, const std::vector<index::BeirDocument>& corpus,
                 const index::Embedder* embedder) {
  index::WriteLock lock(data_dir, false);
  index::Catalog catalog(index::catalog_path(data_dir), index::Catalog::Mode::kWrite);
  std::error_code ec;
  std::filesystem::create_directories(index::generation_path(data_dir, 1), ec);
  if (ec) fail(Errc::kIo, "{}: cannot create: {}", index::generation_path(data_dir, 1), ec.message());
  index::KeywordIndex keywords(index::keyword_path(data_dir, 1), index::KeywordIndex::Mode::kWrite);
  keywords.begin_batch();
  catalog.begin();
  catalog.add_root("beir:");
  std::vector<int64_t> chunk_ids;
  chunk_ids.reserve(corpus.size());
  for (const index::BeirDocument& d : corpus) {
    index::DocumentRecord record;
    record.root = "beir:";
    record.path = std::string(kPathPrefix) + d.id;
    record.type = "text";
    record.title = d.title;
    record.size = static_cast<int64_t>(d.title.size() + d.text.size());
    int64_t doc_id = catalog.put_document(record);
    ingest::Chunk chunk;
    chunk.text = d.text;
    chunk.end = d.text.size();
    std::vector<int64_t> removed;
    std::vector<int64_t> ids = catalog.replace_chunks(doc_id, {chunk}, removed);
    RAG_ASSERT(ids.size() == 1);
    keywords.replace({ids[0], doc_id, d.title, "", d.text, {}});
    chunk_ids.push_back(ids[0]);
  }

  std::vector<float> rows;
  if (embedder) {
    const int dim = embedder->dim();
    rows.reserve(corpus.size() * static_cast<size_t>(dim));
    auto last_log = Clock::now();
    for (size_t begin = 0; begin < corpus.size(); begin += index::kEmbedBatch) {
      size_t end = std::min(corpus.size(), begin + index::kEmbedBatch);
      std::vector<std::string> texts;
      for (size_t i = begin; i < end; ++i) texts.push_back(index::embed_passage(corpus[i].title, "", corpus[i].text));
      std::vector<float> v = embedder->embed(texts);
      RAG_ASSERT(v.size() == texts.size() * static_cast<size_t>(dim));
      rows.insert(rows.end(), v.begin(), v.end());
      if (Clock::now() - last_log > std::chrono::seconds(5)) {
        spdlog::info("eval: embedded {}/{} documents", end, corpus.size());
        last_log = Clock::now();
      }
    }
    catalog.put_vectors(chunk_ids, rows, dim);
    catalog.set_meta("embedder_identity", embedder->identity());
    catalog.set_meta("embedder_dim", std::to_string(dim));
  }
  catalog.commit();
  keywords.commit(catalog.change_counter());

  if (embedder) {
    const int dim = embedder->dim();
    index::VectorIndexParams params;
    std::unique_ptr<index::VectorIndex> vectors =
        index::VectorIndex::build(dim, index::VectorIndexKind::kAuto, params, chunk_ids, rows);
    index::save_vectors(*vectors, data_dir, 1, catalog.change_counter(), embedder->identity());
  }
  index::publish_generation(data_dir, 1);
}

}  // namespace

BeirEvalResult eval_beir(const std::string& dir, const BeirEvalOptions& options) {
  const auto start = Clock::now();
  RetrieveOptions retrieve = options.retrieve;
  bool rerank = false;
  if (options.mode == "hybrid+rerank") {
    retrieve.mode = Mode::kHybrid;
    rerank = true;
  } else if (options.mode == "bm25" || options.mode == "dense" || options.mode == "hybrid") {
    retrieve.mode = parse_mode(options.mode);
  } else {
    fail(Errc::kInvalidArgument, "mode '{}': want bm25, dense, hybrid or hybrid+rerank", options.mode);
  }
  if (options.k < 1 || options.k > index::kMaxK)
    fail(Errc::kInvalidArgument, "k: {} is out of range [1, {}]", options.k, index::kMaxK);
  if (retrieve.mode != Mode::kBm25 && options.embed_model.empty())
    fail(Errc::kInvalidArgument, "mode {} needs an embedding model: give --embed-model FILE (a BERT-family GGUF)",
         options.mode);
  if (rerank && options.rerank_model.empty())
    fail(Errc::kInvalidArgument, "mode {} needs a cross-encoder: give --rerank-model FILE (a BERT-family GGUF)",
         options.mode);

  RetrieverConfig config;
  if (retrieve.mode != Mode::kBm25) config.embedder = index::open_embedder(options.embed_model);
  if (rerank) config.reranker = rerank::open_reranker(options.rerank_model);
  if (!rerank) retrieve.rerank_top_n = 0;

  std::string queries_path = !options.queries_path.empty()
                                 ? options.queries_path
                                 : first_existing(dir + "/queries_train.jsonl", dir + "/queries.jsonl");
  std::string qrels_path = !options.qrels_path.empty()
                               ? options.qrels_path
                               : first_existing(dir + "/qrels/train.tsv", dir + "/qrels/test.tsv");
  std::vector<index::BeirDocument> corpus = index::load_beir_corpus(dir + "/corpus.jsonl");
  std::vector<index::BeirQuery> queries = index::load_beir_queries(queries_path);
  index::Qrels qrels = index::load_qrels(qrels_path);
  std::map<std::string, bool> asked;
  for (const auto& q : queries) asked[q.id] = true;
  std::erase_if(qrels, [&](const auto& entry) { return !asked.count(entry.first); });
  spdlog::info("eval: mode {}, {} documents, {} queries ({}), {} judged queries ({})", options.mode, corpus.size(),
               queries.size(), queries_path, qrels.size(), qrels_path);

  ScratchDir scratch(options.work_dir);
  config.data_dir = scratch.path() + "/data";
  build_index(config.data_dir, corpus, config.embedder.get());
  BeirEvalResult result;
  result.mode = options.mode;
  result.index_seconds = std::chrono::duration<double>(Clock::now() - start).count();

  Retriever retriever(config);
  retrieve.k = options.k;
  retrieve.candidates = std::max(retrieve.candidates, options.k);
  retrieve.snippet_bytes = 0;
  retrieve.principal.reset();
  std::map<std::string, std::vector<std::string>> rankings;
  for (const auto& q : queries) {
    if (!qrels.count(q.id)) continue;
    std::vector<std::string>& ranking = rankings[q.id];
    Retrieval r = retriever.retrieve(q.text, retrieve);
    if (result.models.embedder == "none") result.models.embedder = r.models.embedder;
    if (result.models.reranker == "none") result.models.reranker = r.models.reranker;
    for (const Candidate& c : r.candidates)
      ranking.push_back(c.path.substr(std::min(kPathPrefix.size(), c.path.size())));
  }
  result.scores = index::score_rankings(rankings, qrels);
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace rag::retrieve
