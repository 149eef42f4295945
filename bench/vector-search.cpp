// Vector search latency and recall: index::VectorIndex over synthetic clustered unit vectors (dimension 384
// by default), each kind at each size, with ACL-like filters admitting 100%, 10% and 1% of the chunks.
//
//   vector-search [--sizes 10000,100000,1000000] [--kinds flat,sq4,hnsw,ivf] [--dim 384] [--queries 200]
//                 [--shares 1,0.1,0.01] [--ef N] [--ef-construction N] [--probe N] [--lists N]
//                 [--exact-fraction F]
//
// Prints one row per (size, kind, share): build seconds, filter build milliseconds (chunk ids -> row bitmap,
// what Searcher caches per principal set), p50/p95 query milliseconds, and recall@10 against exact search
// over the same admitted vectors. Single queries, one at a time, as a server thread issues them. Building a
// 1M-vector HNSW index takes many minutes on a few cores: choose sizes and kinds by flag.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "index/index.h"

using namespace rag;
using namespace rag::index;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

// Clustered unit vectors: `clusters` random centres, each point a centre plus noise, normalised. Real
// sentence embeddings cluster by topic; uniform random vectors in 384 dimensions have no near neighbours
// and would measure nothing useful.
void clustered(size_t n, int dim, uint32_t seed, std::vector<float>& out, int clusters = 1000) {
  std::mt19937 centre_rng(12345);
  std::normal_distribution<float> normal;
  std::vector<float> centres(static_cast<size_t>(clusters) * dim);
  for (float& x : centres) x = normal(centre_rng);
  out.resize(n * dim);
#pragma omp parallel
  {
    std::mt19937 rng(seed + 7919 * static_cast<uint32_t>(omp_get_thread_num()));
    std::normal_distribution<float> noise;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
      size_t c = rng() % clusters;
      double norm = 0;
      float* row = out.data() + i * dim;
      for (int j = 0; j < dim; ++j) {
        row[j] = centres[c * dim + j] + 0.8f * noise(rng);
        norm += double(row[j]) * row[j];
      }
      for (int j = 0; j < dim; ++j) row[j] = static_cast<float>(row[j] / std::sqrt(norm));
    }
  }
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> sizes = {"10000", "100000"};
  std::vector<std::string> kinds = {"flat", "hnsw", "ivf"};
  std::vector<std::string> shares = {"1", "0.1", "0.01"};
  int dim = 384, queries = 200;
  VectorIndexParams params;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--sizes") sizes = split(value());
    else if (a == "--kinds") kinds = split(value());
    else if (a == "--shares") shares = split(value());
    else if (a == "--dim") dim = std::stoi(value());
    else if (a == "--queries") queries = std::stoi(value());
    else if (a == "--ef") params.hnsw_ef_search = std::stoi(value());
    else if (a == "--probe") params.ivf_probe = std::stoi(value());
    else if (a == "--lists") params.ivf_lists = std::stoi(value());
    else if (a == "--ef-construction") params.hnsw_ef_construction = std::stoi(value());
    else if (a == "--exact-fraction") params.exact_fraction = std::stod(value());
    else {
      std::fprintf(stderr, "usage: vector-search [--sizes N,..] [--kinds flat,hnsw,ivf] [--shares 1,0.1,0.01] "
                           "[--dim D] [--queries Q] [--ef N] [--ef-construction N] [--probe N] [--lists N] "
                           "[--exact-fraction F]\n");
      return 2;
    }
  }
  // Above the sizes we run, so flat stays flat when asked for; exact scoring of tiny sets stays on.
  params.flat_max_vectors = int64_t{1} << 40;
  std::printf("%9s %5s %8s %6s %9s %8s %8s %9s\n", "vectors", "kind", "build_s", "share", "filter_ms", "p50_ms",
              "p95_ms", "recall@10");
  try {
    for (const auto& size_text : sizes) {
      size_t n = std::stoull(size_text);
      std::vector<float> rows, query_rows;
      clustered(n, dim, 1, rows);
      clustered(static_cast<size_t>(queries), dim, 99, query_rows);
      std::vector<int64_t> ids(n);
      for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int64_t>(i) * 2 + 1;  // gaps, like real chunk ids
      // The truth: exact search over the same admitted vectors.
      auto truth_index = VectorIndex::build(dim, VectorIndexKind::kFlat, params, ids, rows);
      std::mt19937 rng(5);
      std::vector<std::vector<int64_t>> admitted;
      for (const auto& share_text : shares) {
        double share = std::stod(share_text);
        std::vector<int64_t> a;
        for (int64_t id : ids)
          if (share >= 1 || std::uniform_real_distribution<double>()(rng) < share) a.push_back(id);
        admitted.push_back(std::move(a));
      }
      for (const auto& kind_text : kinds) {
        VectorIndexKind kind = parse_vector_index_kind(kind_text);
        auto start = Clock::now();
        std::unique_ptr<VectorIndex> built;
        const VectorIndex* index = truth_index.get();
        if (kind != VectorIndexKind::kFlat) {
          built = VectorIndex::build(dim, kind, params, ids, rows);
          index = built.get();
        }
        double build_s = kind == VectorIndexKind::kFlat ? 0.0 : seconds_since(start);
        for (size_t s = 0; s < shares.size(); ++s) {
          bool all = std::stod(shares[s]) >= 1;
          start = Clock::now();
          VectorFilter filter = index->filter(admitted[s]);
          double filter_ms = seconds_since(start) * 1e3;
          VectorFilter truth_filter = truth_index->filter(admitted[s]);
          std::vector<double> times;
          double recall = 0;
          for (int q = 0; q < queries; ++q) {
            std::span<const float> query(query_rows.data() + static_cast<size_t>(q) * dim, dim);
            auto t = Clock::now();
            auto got = index->search(query, 10, all ? nullptr : &filter);
            times.push_back(seconds_since(t) * 1e3);
            auto want = truth_index->search_exact(query, 10, all ? nullptr : &truth_filter);
            std::set<int64_t> truth;
            for (const auto& h : want) truth.insert(h.chunk_id);
            size_t found = 0;
            for (const auto& h : got) found += truth.count(h.chunk_id);
            recall += want.empty() ? 1.0 : static_cast<double>(found) / static_cast<double>(want.size());
          }
          std::printf("%9zu %5s %8.1f %6s %9.2f %8.3f %8.3f %9.4f\n", n, kind_text.c_str(), build_s,
                      shares[s].c_str(), all ? 0.0 : filter_ms, percentile(times, 0.5), percentile(times, 0.95),
                      recall / queries);
          std::fflush(stdout);
        }
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "vector-search: %s\n", e.what());
    return 1;
  }
  return 0;
}
