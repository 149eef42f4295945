// Query latency of retrieval (retrieve::Retriever, the path the service runs): BM25, vector and hybrid, at
// several corpus sizes, with ACL filters admitting 1%, 10% and 100% of the chunks, and recall@10 of the vector
// index against exact search over the same admitted chunks.
//
//   build/bench/retrieval [--sizes 10000,100000,1000000] [--dim 384] [--queries 200] [--work DIR] [--keep]
//                         [--vectors words|uniform] [--vector-index auto|flat|sq4|hnsw|ivf]
//
// Synthetic corpus: N chunks in documents of 10 chunks, 40-120 words each drawn from a Zipf(1.0) vocabulary of
// 50,000 words. Document i carries "group:all", plus "group:p10" when i % 10 == 0 and "group:p1" when
// i % 100 == 0, so principals holding one of those groups read 100%, 10% and 1% of the chunks. The data dir
// (DIR/n<N>-d<dim>-<vectors>, reused when it exists; --keep leaves it) is written through index/'s public API
// as ingest writes it (catalog, Xapian, catalog vectors, FAISS file of the kind --vector-index picks, kAuto by
// default, and its manifest). A kept data dir whose vector index is not of that kind gets a new one built in
// place from its catalog's vectors (minutes at 1M chunks; the keyword index takes most of an hour).
// Queries are 2-4 words of mid frequency (ranks 50-5049).
//
// Vectors (--vectors): "words" (default) gives a chunk the normalised idf-weighted sum of fixed random
// per-word unit vectors plus Gaussian noise (half the sum's norm), and a query the same sum over its words:
// clustered, low-intrinsic-dimension data whose neighbours share words, like real embeddings, so vector and
// BM25 results are related. "uniform" gives every chunk and query an independent random unit vector: the
// worst case for any approximate index (every neighbour barely nearer than a random point), kept for
// comparison. The goals (hybrid p50 < 20 ms at 1M chunks, recall@10 >= 0.95) are judged on "words", because
// only it has the neighbourhood structure that approximate search exists to exploit; "uniform" is reported
// beside it. The embedder is the generator itself (its cost is not what is measured here: a real encoder adds
// its own, see bench/kernels and `rag model embed`), so "embed" is ~0 and hybrid = max(BM25, vector) + fuse +
// hydrate. k = 10, 100 candidates per side, snippets of 240 bytes, no reranker.
//
// Prints one line per (size, filter, mode): wall p50, p95 and mean over the queries after 10 warm-up queries,
// the median CPU time of the process per query (all threads: on a shared machine the steadier measure),
// recall@10 of the dense results against VectorIndex::search_exact over the admitted rows, and the median of
// each stage.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "retrieve/retrieve.h"

namespace {

using namespace rag;
using Clock = std::chrono::steady_clock;

constexpr int kChunksPerDoc = 10;
constexpr int kVocab = 50000;
constexpr float kChunkNoise = 0.5f;  // "words" vectors: noise norm relative to the words' sum

struct Args {
  std::vector<int64_t> sizes = {10000, 100000};
  int dim = 384;
  int queries = 200;
  std::string work;
  bool keep = false;
  std::string vectors = "words";  // "words" (derived from the chunk's words) or "uniform" (independent random)
  index::VectorIndexKind kind = index::VectorIndexKind::kAuto;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(Errc::kInvalidArgument, "{} needs a value", s);
      return argv[++i];
    };
    if (s == "--sizes") {
      a.sizes.clear();
      std::string list = value();
      for (size_t p = 0; p < list.size();) {
        size_t c = list.find(',', p);
        a.sizes.push_back(std::stoll(list.substr(p, c - p)));
        p = c == std::string::npos ? list.size() : c + 1;
      }
    } else if (s == "--dim") {
      a.dim = std::stoi(value());
    } else if (s == "--queries") {
      a.queries = std::stoi(value());
    } else if (s == "--work") {
      a.work = value();
    } else if (s == "--keep") {
      a.keep = true;
    } else if (s == "--vectors") {
      a.vectors = value();
      if (a.vectors != "words" && a.vectors != "uniform")
        fail(Errc::kInvalidArgument, "--vectors: {} is neither words nor uniform", a.vectors);
    } else if (s == "--vector-index") {
      a.kind = index::parse_vector_index_kind(value());
    } else {
      fail(Errc::kInvalidArgument, "unknown option {} (see the header of bench/retrieval.cpp)", s);
    }
  }
  return a;
}

std::string word(int i) {
  static const char* kSyllables[] = {"ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "gu", "ba", "ve", "zo", "fi", "hu", "ja"};
  std::string w;
  do {
    w += kSyllables[i % 16];
    i /= 16;
  } while (i > 0);
  return w + "x";  // no stemming surprises: every word ends the same way
}

class ZipfWords {
 public:
  explicit ZipfWords(uint32_t seed) : rng_(seed) {
    cdf_.resize(kVocab);
    double sum = 0;
    for (int i = 0; i < kVocab; ++i) cdf_[static_cast<size_t>(i)] = sum += 1.0 / (i + 1);
    for (double& c : cdf_) c /= sum;
  }
  int next() {
    double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    return static_cast<int>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }
  std::mt19937& rng() { return rng_; }

 private:
  std::mt19937 rng_;
  std::vector<double> cdf_;
};

void random_unit(std::mt19937& rng, float* v, int dim) {
  std::normal_distribution<float> n(0, 1);
  double norm = 0;
  for (int i = 0; i < dim; ++i) v[i] = n(rng), norm += double(v[i]) * v[i];
  for (int i = 0; i < dim; ++i) v[i] = static_cast<float>(v[i] / std::sqrt(norm));
}

// The vectors of the synthetic corpus and of the queries. "uniform": an independent random unit vector per chunk
// and per query text. "words": the normalised idf-weighted sum of a fixed random unit vector per word, plus
// Gaussian noise for chunks, so chunks sharing rare words are near each other and a query is near the chunks
// holding its words, as with real embeddings.
class SyntheticEmbedder : public index::Embedder {
 public:
  SyntheticEmbedder(int dim, bool from_words)
      : dim_(dim),
        from_words_(from_words),
        identity_(std::string(from_words ? "bench-words" : "bench-random") + "/mean/d" + std::to_string(dim) + "/0") {
    if (!from_words_) return;
    word_vectors_.resize(static_cast<size_t>(kVocab) * static_cast<size_t>(dim_));
    for (int w = 0; w < kVocab; ++w) {
      std::mt19937 rng(static_cast<uint32_t>(1000003u * static_cast<uint32_t>(w) + 17u));
      random_unit(rng, word_vectors_.data() + static_cast<size_t>(w) * static_cast<size_t>(dim_), dim_);
      rank_of_.emplace(word(w), w);
    }
  }
  int dim() const override { return dim_; }
  const std::string& identity() const override { return identity_; }
  std::vector<float> embed(const std::vector<std::string>& texts) const override {
    std::vector<float> out(texts.size() * static_cast<size_t>(dim_));
    for (size_t t = 0; t < texts.size(); ++t) {
      float* v = out.data() + t * static_cast<size_t>(dim_);
      std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>()(texts[t])));
      if (!from_words_) {
        random_unit(rng, v, dim_);
        continue;
      }
      std::vector<int> ranks;
      for (size_t p = 0; p < texts[t].size();) {
        size_t e = std::min(texts[t].find(' ', p), texts[t].size());
        auto it = rank_of_.find(texts[t].substr(p, e - p));
        if (it != rank_of_.end()) ranks.push_back(it->second);
        p = e + 1;
      }
      words_vector(ranks, 0, rng, v);
    }
    return out;
  }
  // v = normalise(sum of idf(w) * word vector(w) + noise of `noise` times that sum's norm); idf of a
  // Zipf(1) rank r is about log(r + 1) + const.
  void words_vector(const std::vector<int>& ranks, float noise, std::mt19937& rng, float* v) const {
    std::fill(v, v + dim_, 0.0f);
    for (int r : ranks) {
      const float weight = std::log(2.0f + static_cast<float>(r));
      const float* wv = word_vectors_.data() + static_cast<size_t>(r) * static_cast<size_t>(dim_);
      for (int i = 0; i < dim_; ++i) v[i] += weight * wv[i];
    }
    double norm = 0;
    for (int i = 0; i < dim_; ++i) norm += double(v[i]) * v[i];
    if (noise > 0) {
      std::normal_distribution<float> n(0, noise * static_cast<float>(std::sqrt(norm / dim_)));
      norm = 0;
      for (int i = 0; i < dim_; ++i) v[i] += n(rng), norm += double(v[i]) * v[i];
    }
    if (norm == 0) return random_unit(rng, v, dim_);
    for (int i = 0; i < dim_; ++i) v[i] = static_cast<float>(v[i] / std::sqrt(norm));
  }
  bool from_words() const { return from_words_; }

 private:
  int dim_;
  bool from_words_;
  std::string identity_;
  std::vector<float> word_vectors_;  // kVocab × dim, row w = the unit vector of word(w)
  std::unordered_map<std::string, int> rank_of_;
};

// CPU time of the whole process (every thread): on a shared machine a better measure of the work a query
// costs than its wall time.
double cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Writes generation 1's FAISS file and manifest for these vectors.
void write_vectors(const std::string& data_dir, const index::Catalog& catalog, const SyntheticEmbedder& embedder,
                   index::VectorIndexKind kind, std::span<const int64_t> ids, std::span<const float> rows) {
  auto start = Clock::now();
  auto vectors = index::VectorIndex::build(embedder.dim(), kind, {}, ids, rows);
  index::save_vectors(*vectors, data_dir, 1, catalog.change_counter(), embedder.identity());
  std::fprintf(stderr, "  %s index over %lld vectors built in %.0f s\n",
               std::string(index::vector_index_kind_name(vectors->kind())).c_str(),
               static_cast<long long>(vectors->size()), seconds_since(start));
}

void build(const std::string& data_dir, int64_t n, const SyntheticEmbedder& embedder, index::VectorIndexKind kind) {
  auto start = Clock::now();
  const int dim = embedder.dim();
  index::WriteLock lock(data_dir, false);
  index::Catalog catalog(index::catalog_path(data_dir), index::Catalog::Mode::kWrite);
  std::filesystem::create_directories(index::generation_path(data_dir, 1));
  index::KeywordIndex keywords(index::keyword_path(data_dir, 1), index::KeywordIndex::Mode::kWrite);
  ZipfWords words(7);
  std::vector<int64_t> ids;
  std::vector<float> rows;
  ids.reserve(static_cast<size_t>(n));
  rows.reserve(static_cast<size_t>(n) * static_cast<size_t>(dim));
  const int64_t docs = (n + kChunksPerDoc - 1) / kChunksPerDoc;
  const int64_t per_batch = 20000 / kChunksPerDoc;  // documents per transaction
  for (int64_t d0 = 0; d0 < docs; d0 += per_batch) {
    catalog.begin();
    keywords.begin_batch();
    std::vector<int64_t> batch_ids;
    for (int64_t d = d0; d < std::min(docs, d0 + per_batch); ++d) {
      index::DocumentRecord doc;
      doc.root = "bench:";
      doc.path = "bench:" + std::to_string(d);
      doc.type = "text";
      doc.title = word(words.next()) + " " + word(words.next());
      doc.acl = {"group:all"};
      if (d % 10 == 0) doc.acl.push_back("group:p10");
      if (d % 100 == 0) doc.acl.push_back("group:p1");
      std::sort(doc.acl.begin(), doc.acl.end());
      int64_t doc_id = catalog.put_document(doc);
      std::vector<ingest::Chunk> chunks;
      std::vector<std::vector<int>> chunk_ranks;
      for (int c = 0; c < kChunksPerDoc && d * kChunksPerDoc + c < n; ++c) {
        ingest::Chunk chunk;
        int len = 40 + static_cast<int>(words.rng()() % 81);
        std::vector<int> ranks;
        for (int w = 0; w < len; ++w) {
          ranks.push_back(words.next());
          chunk.text += (w ? " " : "") + word(ranks.back());
        }
        chunk_ranks.push_back(std::move(ranks));
        chunk.end = chunk.text.size();
        chunks.push_back(std::move(chunk));
      }
      std::vector<int64_t> removed;
      std::vector<int64_t> chunk_ids = catalog.replace_chunks(doc_id, chunks, removed);
      for (size_t c = 0; c < chunks.size(); ++c) {
        keywords.replace({chunk_ids[c], doc_id, doc.title, "", chunks[c].text, doc.acl});
        ids.push_back(chunk_ids[c]);
        batch_ids.push_back(chunk_ids[c]);
        rows.resize(rows.size() + static_cast<size_t>(dim));
        float* row = rows.data() + rows.size() - static_cast<size_t>(dim);
        if (embedder.from_words())
          embedder.words_vector(chunk_ranks[c], kChunkNoise, words.rng(), row);
        else
          random_unit(words.rng(), row, dim);
      }
    }
    catalog.put_vectors(batch_ids, std::span<const float>(rows).subspan(rows.size() - batch_ids.size() * dim), dim);
    catalog.commit();
    keywords.commit(catalog.change_counter());
    std::fprintf(stderr, "\r  built %lld/%lld chunks (%.0f s)", static_cast<long long>(ids.size()),
                 static_cast<long long>(n), seconds_since(start));
  }
  catalog.begin();
  catalog.set_meta("embedder_identity", embedder.identity());
  catalog.set_meta("embedder_dim", std::to_string(dim));
  catalog.commit();
  std::fprintf(stderr, "\n");
  write_vectors(data_dir, catalog, embedder, kind, ids, rows);
  index::publish_generation(data_dir, 1);
  std::fprintf(stderr, "  built in %.0f s\n", seconds_since(start));
}

// A kept data dir's vectors as the wanted kind: rebuilt from the catalog's vectors when they are not.
void reindex_vectors_if_needed(const std::string& data_dir, const SyntheticEmbedder& embedder,
                               index::VectorIndexKind kind) {
  auto manifest = index::read_manifest(data_dir, 1);
  if (!manifest) fail(Errc::kCorrupt, "{}: generation 1 has no vector manifest; delete it to rebuild", data_dir);
  const auto wanted =
      kind == index::VectorIndexKind::kAuto ? index::auto_vector_index_kind(manifest->vectors, {}) : kind;
  if (index::parse_vector_index_kind(manifest->kind) == wanted) return;
  std::fprintf(stderr, "%s: vectors are %s, %s wanted: rebuilding them from the catalog\n", data_dir.c_str(),
               manifest->kind.c_str(), std::string(index::vector_index_kind_name(wanted)).c_str());
  index::WriteLock lock(data_dir, false);
  index::Catalog catalog(index::catalog_path(data_dir), index::Catalog::Mode::kRead);
  std::vector<int64_t> ids;
  std::vector<float> rows;
  catalog.for_each_vector(embedder.dim(), [&](int64_t id, const float* v) {
    ids.push_back(id);
    rows.insert(rows.end(), v, v + embedder.dim());
  });
  write_vectors(data_dir, catalog, embedder, wanted, ids, rows);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Args args = parse(argc, argv);
    spdlog::set_level(spdlog::level::warn);
    std::string work = args.work;
    if (work.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      work = std::string(tmp && *tmp ? tmp : "/tmp") + "/rag-bench-retrieval";
    }
    auto embedder = std::make_shared<SyntheticEmbedder>(args.dim, args.vectors == "words");
    std::printf("%-9s %-7s %-7s %8s %8s %8s %8s %8s   %s\n", "chunks", "filter", "mode", "p50 ms", "p95 ms", "mean ms",
                "cpu50 ms", "recall10", "median stage ms: bm25 vector fuse hydrate");
    for (int64_t n : args.sizes) {
      std::string data_dir = work + "/n" + std::to_string(n) + "-d" + std::to_string(args.dim) + "-" + args.vectors;
      if (!std::filesystem::exists(data_dir + "/CURRENT")) {
        std::filesystem::remove_all(data_dir);
        std::fprintf(stderr, "building %lld chunks in %s\n", static_cast<long long>(n), data_dir.c_str());
        build(data_dir, n, *embedder, args.kind);
      } else {
        reindex_vectors_if_needed(data_dir, *embedder, args.kind);
      }
      retrieve::Retriever retriever({data_dir, embedder, nullptr, "all"});
      // The oracle for recall@10: the same vectors, scored exactly over the rows the principal may read.
      const int64_t gen = index::current_generation(data_dir);
      auto manifest = index::read_manifest(data_dir, gen);
      if (!manifest) fail(Errc::kCorrupt, "{}: generation {} has no vector manifest; delete it to rebuild", data_dir, gen);
      auto exact = index::VectorIndex::load(index::vectors_path(data_dir, gen), manifest->hash);  // as flat: no copy
      index::Catalog catalog(index::catalog_path(data_dir), index::Catalog::Mode::kRead);
      std::printf("# %s: %s index %s\n", data_dir.c_str(), manifest->kind.c_str(), manifest->params.c_str());
      ZipfWords qwords(99);
      std::vector<std::string> queries;
      for (int q = 0; q < args.queries + 10; ++q) {
        int len = 2 + static_cast<int>(qwords.rng()() % 3);
        std::string text;
        for (int w = 0; w < len; ++w) text += (w ? " " : "") + word(50 + static_cast<int>(qwords.rng()() % 5000));
        queries.push_back(text);
      }
      struct Filter {
        const char* name;
        const char* group;
      } filters[] = {{"1%", "p1"}, {"10%", "p10"}, {"100%", "all"}};
      for (const Filter& f : filters) {
        for (retrieve::Mode mode : {retrieve::Mode::kBm25, retrieve::Mode::kDense, retrieve::Mode::kHybrid}) {
          retrieve::RetrieveOptions o;
          o.k = 10;
          o.mode = mode;
          o.principal = retrieve::Principal{"bench", {f.group}};
          std::vector<double> total, cpu_total, bm25, vec, fuse, hydrate;
          const bool measure_recall = mode == retrieve::Mode::kDense;
          index::VectorFilter filter;
          if (measure_recall)
            filter = exact->filter(catalog.chunk_ids_readable_by(retrieve::principal_strings(*o.principal, "all")));
          double found = 0, wanted = 0;
          for (size_t q = 0; q < queries.size(); ++q) {
            const double cpu0 = cpu_ms();
            retrieve::Retrieval r = retriever.retrieve(queries[q], o);
            const double cpu = cpu_ms() - cpu0;
            if (q < 10) continue;  // warm-up
            if (measure_recall) {
              std::vector<float> qv = embedder->embed({queries[q]});
              std::vector<index::ScoredChunk> truth = exact->search_exact(qv, o.k, &filter);
              for (const index::ScoredChunk& t : truth) {
                wanted += 1;
                for (const retrieve::Candidate& c : r.candidates) found += c.chunk_id == t.chunk_id;
              }
            }
            total.push_back(r.timings.total_ms);
            cpu_total.push_back(cpu);
            bm25.push_back(r.timings.bm25_ms);
            vec.push_back(r.timings.vector_ms);
            fuse.push_back(r.timings.fuse_ms);
            hydrate.push_back(r.timings.hydrate_ms);
          }
          double mean = 0;
          for (double t : total) mean += t / static_cast<double>(total.size());
          std::string recall = measure_recall ? fmt::format("{:.3f}", wanted > 0 ? found / wanted : 1.0) : "";
          std::printf("%-9lld %-7s %-7s %8.2f %8.2f %8.2f %8.2f %8s   %.2f %.2f %.2f %.2f\n", static_cast<long long>(n),
                      f.name, std::string(retrieve::mode_name(mode)).c_str(), percentile(total, 0.5),
                      percentile(total, 0.95), mean, percentile(cpu_total, 0.5), recall.c_str(), percentile(bm25, 0.5), percentile(vec, 0.5), percentile(fuse, 0.5),
                      percentile(hydrate, 0.5));
          std::fflush(stdout);
        }
      }
      if (!args.keep) std::filesystem::remove_all(data_dir);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "retrieval: %s\n", e.what());
    return 1;
  }
}
