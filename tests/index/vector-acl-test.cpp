// Permission filtering in both indexes: a principal set's candidates are the top-k over only what it may
// read, checked against a brute-force oracle built from the catalog's documents and vectors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "common/hash.h"
#include "index/index.h"
#include "tests/support/support.h"

namespace rag::index {
namespace {

// Deterministic vectors from a text's hash: unrelated texts get unrelated unit vectors.
class FakeEmbedder : public Embedder {
 public:
  int dim() const override { return 16; }
  const std::string& identity() const override { return identity_; }
  std::vector<float> embed(const std::vector<std::string>& texts) const override {
    std::vector<float> out;
    for (const auto& t : texts) {
      Hash128 h = hash_bytes(t);
      std::mt19937_64 rng(h.low ^ h.high);
      std::normal_distribution<float> normal;
      std::vector<float> v(16);
      double norm = 0;
      for (float& x : v) x = normal(rng), norm += double(x) * x;
      for (float& x : v) out.push_back(static_cast<float>(x / std::sqrt(norm)));
    }
    return out;
  }

 private:
  std::string identity_ = "fake/mean/d16/0000000000000000";
};

const std::vector<std::string> kPrincipals = {"user:ann", "user:bob", "group:eng", "group:hr", "group:all"};

struct Corpus {
  test::TempDir dir;
  std::string data;
  std::shared_ptr<FakeEmbedder> embedder = std::make_shared<FakeEmbedder>();
};

// 24 folders, each with a random .ragacl (or none: an empty ACL), 10 files of 1 chunk each.
void build(Corpus& c, VectorIndexKind kind) {
  std::mt19937 rng(11);
  for (int f = 0; f < 24; ++f) {
    std::string folder = c.dir / ("docs/f" + std::to_string(f));
    std::string acl;
    for (const auto& p : kPrincipals)
      if (rng() % 3 == 0) acl += p + "\n";
    if (f % 6 != 0) test::write_file(folder + "/.ragacl", acl.empty() ? "group:all\n" : acl);
    for (int i = 0; i < 10; ++i)
      test::write_file(folder + "/d" + std::to_string(i) + ".txt",
                       "common words in file " + std::to_string(f) + " number " + std::to_string(i));
  }
  IngestOptions options;
  options.roots = {c.dir / "docs"};
  options.threads = 2;
  options.embedder = c.embedder;
  options.vector_index = kind;
  c.data = c.dir / "data";
  ingest(c.data, options);
}

bool may_read(const DocumentRecord& d, const std::vector<std::string>& principals) {
  for (const auto& p : principals) {
    if (d.acl.empty() && p == kNoAclPrincipal) return true;
    if (std::count(d.acl.begin(), d.acl.end(), p)) return true;
  }
  return false;
}

// The oracle: every chunk the principals may read, scored by hand from the catalog's vectors.
std::vector<int64_t> oracle(const Corpus& c, const std::vector<float>& q, const std::vector<std::string>& principals,
                            int k) {
  Catalog catalog(catalog_path(c.data), Catalog::Mode::kRead);
  std::vector<std::pair<float, int64_t>> scored;
  catalog.for_each_chunk([&](const ChunkRecord& chunk, const DocumentRecord& d) {
    if (!may_read(d, principals)) return;
    auto v = catalog.vector(chunk.id, 16);
    float s = 0;
    for (int j = 0; j < 16; ++j) s += q[j] * v[j];
    scored.emplace_back(-s, chunk.id);
  });
  std::sort(scored.begin(), scored.end());
  std::vector<int64_t> out;
  for (size_t i = 0; i < scored.size() && static_cast<int>(i) < k; ++i) out.push_back(scored[i].second);
  return out;
}

std::vector<std::vector<std::string>> principal_sets() {
  return {{"user:ann"},
          {"user:bob", "group:eng"},
          {"group:hr"},
          {"group:all", "user:ann", "group:eng"},
          {kNoAclPrincipal},
          {"user:ann", kNoAclPrincipal},
          {"user:nobody"},
          {}};
}

TEST(VectorAcl, CandidatesEqualTheTopKOverOnlyReadableChunksInEveryKind) {
  for (auto kind : {VectorIndexKind::kFlat, VectorIndexKind::kSq4, VectorIndexKind::kHnsw, VectorIndexKind::kIvf}) {
    SCOPED_TRACE(std::string(vector_index_kind_name(kind)));
    Corpus c;
    build(c, kind);
    Searcher searcher(c.data);
    Catalog catalog(catalog_path(c.data), Catalog::Mode::kRead);
    std::map<int64_t, DocumentRecord> docs;
    catalog.for_each_chunk([&](const ChunkRecord& chunk, const DocumentRecord& d) { docs[chunk.id] = d; });
    for (int qi = 0; qi < 8; ++qi) {
      std::vector<float> q = c.embedder->embed({"query " + std::to_string(qi)});
      for (const auto& principals : principal_sets()) {
        SearchOptions options;
        options.k = 10;
        options.principals = principals;
        auto got = searcher.vector_candidates(std::span<const float>(q), options);
        std::vector<int64_t> ids;
        for (const auto& h : got) {
          ids.push_back(h.chunk_id);
          EXPECT_TRUE(may_read(docs.at(h.chunk_id), principals)) << h.chunk_id;
        }
        auto want = oracle(c, q, principals, 10);
        if (kind == VectorIndexKind::kIvf) {
          // IVF scores 8-bit codes: the same set, order within rounding.
          std::set<int64_t> a(ids.begin(), ids.end()), b(want.begin(), want.end());
          size_t common = 0;
          for (int64_t id : a) common += b.count(id);
          EXPECT_GE(common + 1, b.size());
        } else {
          EXPECT_EQ(ids, want);
        }
      }
    }
  }
}

TEST(KeywordAcl, CandidatesHoldOnlyReadableChunksAndEveryReadableMatch) {
  Corpus c;
  build(c, VectorIndexKind::kFlat);
  Searcher searcher(c.data);
  Catalog catalog(catalog_path(c.data), Catalog::Mode::kRead);
  std::map<int64_t, DocumentRecord> docs;
  catalog.for_each_chunk([&](const ChunkRecord& chunk, const DocumentRecord& d) { docs[chunk.id] = d; });
  for (const auto& principals : principal_sets()) {
    SearchOptions options;
    options.k = kMaxK;
    options.principals = principals;
    std::set<int64_t> got;
    for (const auto& h : searcher.keyword_candidates("common words", options)) got.insert(h.chunk_id);
    std::set<int64_t> want;
    for (const auto& [id, d] : docs)
      if (may_read(d, principals)) want.insert(id);
    EXPECT_EQ(got, want);
    // Top-k is the top-k of the readable: a small k never comes back short while readable matches remain.
    options.k = 5;
    EXPECT_EQ(searcher.keyword_candidates("common words", options).size(), std::min<size_t>(5, want.size()));
    std::set<int64_t> searched;
    for (const auto& h : searcher.search("common words", options)) searched.insert(h.chunk_id);
    for (int64_t id : searched) EXPECT_TRUE(want.count(id));
  }
  // Documents without an ACL: only with the sentinel.
  SearchOptions none;
  none.k = kMaxK;
  none.principals = std::vector<std::string>{"group:all", "user:ann", "user:bob", "group:eng", "group:hr"};
  for (const auto& h : searcher.keyword_candidates("common words", none)) EXPECT_FALSE(docs.at(h.chunk_id).acl.empty());
  none.principals = std::vector<std::string>{kNoAclPrincipal};
  auto only_none = searcher.keyword_candidates("common words", none);
  EXPECT_EQ(only_none.size(), 40u);  // folders 0, 6, 12, 18
  for (const auto& h : only_none) EXPECT_TRUE(docs.at(h.chunk_id).acl.empty());
}

}  // namespace
}  // namespace rag::index
