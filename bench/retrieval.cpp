// Query latency of retrieval (retrieve::Retriever, the path the service runs): BM25, vector and hybrid, at
// several corpus sizes, with ACL filters admitting 1%, 10% and 100% of the chunks.
//
//   build/bench/retrieval [--sizes 10000,100000,1000000] [--dim 384] [--queries 200] [--work DIR] [--keep]
//
// Synthetic corpus: N chunks in documents of 10 chunks, 40-120 words each drawn from a Zipf(1.0) vocabulary of
// 50,000 words, one random unit vector per chunk (dim --dim). Document i carries "group:all", plus "group:p10"
// when i % 10 == 0 and "group:p1" when i % 100 == 0, so principals holding one of those groups read 100%, 10% and
// 1% of the chunks. The data dir is written through index/'s public API as ingest writes it (catalog, Xapian,
// catalog vectors, FAISS file of the kind kAuto picks and its manifest). Queries are 2-4 words of mid frequency;
// the embedder is a stand-in that returns a random unit vector per query (its cost is not what is measured here:
// a real encoder adds its own, see bench/kernels and `rag model embed`), so "embed" is ~0 and hybrid = max(BM25,
// vector) + fuse + hydrate. k = 10, 100 candidates per side, snippets of 240 bytes, no reranker.
// Prints one line per (size, filter, mode): p50, p95 and mean over the queries after 10 warm-up queries, and the
// median of each stage.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "retrieve/retrieve.h"

namespace {

using namespace rag;
using Clock = std::chrono::steady_clock;

constexpr int kChunksPerDoc = 10;
constexpr int kVocab = 50000;

struct Args {
  std::vector<int64_t> sizes = {10000, 100000};
  int dim = 384;
  int queries = 200;
  std::string work;
  bool keep = false;
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

class RandomEmbedder : public index::Embedder {
 public:
  explicit RandomEmbedder(int dim) : dim_(dim), identity_("bench-random/mean/d" + std::to_string(dim) + "/0") {}
  int dim() const override { return dim_; }
  const std::string& identity() const override { return identity_; }
  std::vector<float> embed(const std::vector<std::string>& texts) const override {
    std::vector<float> out(texts.size() * static_cast<size_t>(dim_));
    for (size_t t = 0; t < texts.size(); ++t) {
      std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>()(texts[t])));
      random_unit(rng, out.data() + t * static_cast<size_t>(dim_), dim_);
    }
    return out;
  }

 private:
  int dim_;
  std::string identity_;
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void build(const std::string& data_dir, int64_t n, const index::Embedder& embedder) {
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
      for (int c = 0; c < kChunksPerDoc && d * kChunksPerDoc + c < n; ++c) {
        ingest::Chunk chunk;
        int len = 40 + static_cast<int>(words.rng()() % 81);
        for (int w = 0; w < len; ++w) chunk.text += (w ? " " : "") + word(words.next());
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
        random_unit(words.rng(), rows.data() + rows.size() - static_cast<size_t>(dim), dim);
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
  auto t_faiss = Clock::now();
  auto vectors = index::VectorIndex::build(dim, index::VectorIndexKind::kAuto, {}, ids, rows);
  index::VectorManifest m;
  m.change_counter = catalog.change_counter();
  m.embedder = embedder.identity();
  m.dim = dim;
  m.vectors = vectors->size();
  m.rows = vectors->rows();
  m.kind = std::string(index::vector_index_kind_name(vectors->kind()));
  m.params = vectors->describe();
  m.hash = vectors->save(index::vectors_path(data_dir, 1));
  index::write_manifest(data_dir, 1, m);
  index::publish_generation(data_dir, 1);
  std::fprintf(stderr, "\n  %s index over %lld vectors built in %.0f s; total %.0f s\n", m.kind.c_str(),
               static_cast<long long>(m.vectors), seconds_since(t_faiss), seconds_since(start));
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
    auto embedder = std::make_shared<RandomEmbedder>(args.dim);
    std::printf("%-9s %-7s %-7s %8s %8s %8s   %s\n", "chunks", "filter", "mode", "p50 ms", "p95 ms", "mean ms",
                "median stage ms: bm25 vector fuse hydrate");
    for (int64_t n : args.sizes) {
      std::string data_dir = work + "/n" + std::to_string(n) + "-d" + std::to_string(args.dim);
      if (!std::filesystem::exists(data_dir + "/CURRENT")) {
        std::filesystem::remove_all(data_dir);
        std::fprintf(stderr, "building %lld chunks in %s\n", static_cast<long long>(n), data_dir.c_str());
        build(data_dir, n, *embedder);
      }
      retrieve::Retriever retriever({data_dir, embedder, nullptr, "all"});
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
          std::vector<double> total, bm25, vec, fuse, hydrate;
          for (size_t q = 0; q < queries.size(); ++q) {
            retrieve::Retrieval r = retriever.retrieve(queries[q], o);
            if (q < 10) continue;  // warm-up
            total.push_back(r.timings.total_ms);
            bm25.push_back(r.timings.bm25_ms);
            vec.push_back(r.timings.vector_ms);
            fuse.push_back(r.timings.fuse_ms);
            hydrate.push_back(r.timings.hydrate_ms);
          }
          double mean = 0;
          for (double t : total) mean += t / static_cast<double>(total.size());
          std::printf("%-9lld %-7s %-7s %8.2f %8.2f %8.2f   %.2f %.2f %.2f %.2f\n", static_cast<long long>(n), f.name,
                      std::string(retrieve::mode_name(mode)).c_str(), percentile(total, 0.5), percentile(total, 0.95),
                      mean, percentile(bm25, 0.5), percentile(vec, 0.5), percentile(fuse, 0.5),
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
