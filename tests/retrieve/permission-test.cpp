// Randomized permission test (DESIGN.md "Permissions"): users, groups and documents with random ACLs (empty
// ones and the default group included). For every principal, several queries and every mode (BM25, vector,
// hybrid under both fusions, hybrid + rerank):
//   1. nothing unreadable comes back;
//   2. the top k equals the oracle: the unfiltered full rankings of the same index (every chunk a candidate),
//      cut to the readable chunks, fused with the public fuse() and reranked by the same fake reranker. Exact,
//      because filtering before ranking must give what ranking everything and then dropping the unreadable does;
//   3. vector and vector + rerank top k equal the top k over a second data dir holding only that principal's
//      readable documents. (BM25 is compared through 2 only: its IDF and average length come from the whole
//      collection, so an index of fewer documents scores them differently by design.)
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include <fmt/format.h>

#include "retrieve/retrieve.h"
#include "tests/retrieve/fakes.h"
#include "tests/support/support.h"

namespace rag::retrieve {
namespace {

constexpr int kUsers = 6;
constexpr int kGroups = 4;   // g0..g3, plus the default group "everyone"
constexpr int kDocs = 36;
const char* const kWords[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
                              "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
                              "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray"};

struct Doc {
  std::string name;              // "d07.txt"
  std::string text;
  std::vector<std::string> acl;  // empty: no ACL (readable by holders of the default group)
};

struct World {
  std::vector<Principal> principals;
  std::vector<Doc> docs;
};

World make_world(uint32_t seed) {
  std::mt19937 rng(seed);
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  World w;
  for (int u = 0; u < kUsers; ++u) {
    Principal p{"u" + std::to_string(u), {}};
    for (int g = 0; g < kGroups; ++g)
      if (chance(0.35)) p.groups.push_back("g" + std::to_string(g));
    if (chance(0.5)) p.groups.push_back("everyone");
    w.principals.push_back(p);
  }
  for (int d = 0; d < kDocs; ++d) {
    Doc doc;
    doc.name = fmt::format("d{:02}.txt", d);
    int n = 8 + static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) doc.text += std::string(kWords[rng() % std::size(kWords)]) + (i + 1 < n ? " " : ".\n");
    double r = std::uniform_real_distribution<double>(0, 1)(rng);
    if (r < 0.25) {
      // no ACL
    } else if (r < 0.35) {
      doc.acl = {"group:everyone"};
    } else {
      int entries = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < entries; ++e)
        doc.acl.push_back(chance(0.5) ? "user:u" + std::to_string(rng() % kUsers) : "group:g" + std::to_string(rng() % kGroups));
    }
    w.docs.push_back(doc);
  }
  return w;
}

bool readable(const Doc& doc, const Principal& p) {
  std::vector<std::string> mine = principal_strings(p, "everyone");
  if (doc.acl.empty()) return std::count(mine.begin(), mine.end(), index::kNoAclPrincipal) > 0;
  for (const auto& a : doc.acl)
    if (std::count(mine.begin(), mine.end(), a)) return true;
  return false;
}

// One folder per document, so each can have its own .ragacl.
std::string build(const test::TempDir& dir, const std::string& name, const std::vector<Doc>& docs,
                  const std::shared_ptr<const index::Embedder>& embedder) {
  for (const Doc& d : docs) {
    std::string folder = dir / (name + "-docs/" + d.name.substr(0, 3));
    test::write_file(folder + "/" + d.name, d.text);
    if (!d.acl.empty()) {
      std::string acl;
      for (const auto& a : d.acl) acl += a + "\n";
      test::write_file(folder + "/.ragacl", acl);
    }
  }
  index::IngestOptions options;
  options.roots = {dir / (name + "-docs")};
  options.threads = 1;
  options.embedder = embedder;
  index::ingest(dir / (name + "-data"), options);
  return dir / (name + "-data");
}

std::string file_name(const std::string& path) { return path.substr(path.rfind('/') + 1); }

std::vector<std::string> names(const Retrieval& r) {
  std::vector<std::string> out;
  for (const auto& c : r.candidates) out.push_back(file_name(c.path));
  return out;
}

struct Variant {
  const char* what;
  Mode mode;
  Fusion fusion;
  bool rerank;
};

TEST(Permissions, FilteredRetrievalEqualsRetrievalOverOnlyTheReadableDocuments) {
  const World world = make_world(20261123);
  test::TempDir dir;
  auto embedder = std::make_shared<const fake::BagEmbedder>();
  auto reranker = std::make_shared<const fake::OverlapReranker>();
  const std::string all = build(dir, "all", world.docs, embedder);
  Retriever retriever({all, embedder, reranker, "everyone"});

  std::map<std::string, const Doc*> by_name;
  for (const Doc& d : world.docs) by_name[d.name] = &d;
  const std::vector<std::string> queries = {"alpha bravo", "kilo lima mike", "golf hotel india juliet"};
  const Variant variants[] = {{"bm25", Mode::kBm25, Fusion::kWeighted, false},
                              {"dense", Mode::kDense, Fusion::kWeighted, false},
                              {"dense+rerank", Mode::kDense, Fusion::kWeighted, true},
                              {"hybrid weighted", Mode::kHybrid, Fusion::kWeighted, false},
                              {"hybrid rrf", Mode::kHybrid, Fusion::kRrf, false},
                              {"hybrid+rerank", Mode::kHybrid, Fusion::kWeighted, true}};
  const int k = 5;
  int checked = 0;

  for (const Principal& p : world.principals) {
    std::vector<Doc> mine;
    std::set<std::string> allowed;
    for (const Doc& d : world.docs)
      if (readable(d, p)) mine.push_back(d), allowed.insert(d.name);
    SCOPED_TRACE(p.user + " reads " + std::to_string(mine.size()) + " documents");
    std::unique_ptr<Retriever> own;
    if (!mine.empty()) own = std::make_unique<Retriever>(RetrieverConfig{build(dir, p.user, mine, embedder), embedder, reranker, "everyone"});

    for (const auto& query : queries) {
      // The oracle's inputs: every chunk ranked on each side, no filter.
      RetrieveOptions full;
      full.k = kDocs;
      full.candidates = kDocs;
      full.rerank_top_n = 0;
      full.snippet_bytes = 0;
      full.mode = Mode::kBm25;
      Retrieval full_bm25 = retriever.retrieve(query, full);
      full.mode = Mode::kDense;
      Retrieval full_dense = retriever.retrieve(query, full);
      auto side = [&](const Retrieval& r, bool keyword) {
        std::vector<index::ScoredChunk> out;
        for (const auto& c : r.candidates)
          if (allowed.count(file_name(c.path))) out.push_back({c.chunk_id, keyword ? c.bm25_score : c.vector_score});
        return out;
      };
      std::map<int64_t, std::string> name_of;
      for (const auto& c : full_dense.candidates) name_of[c.chunk_id] = file_name(c.path);

      for (const Variant& v : variants) {
        SCOPED_TRACE(std::string(v.what) + " '" + query + "'");
        RetrieveOptions o;
        o.k = k;
        o.mode = v.mode;
        o.fusion = v.fusion;
        o.candidates = kDocs;  // every readable chunk is a candidate, as in the oracle
        o.rerank_top_n = v.rerank ? kDocs : 0;
        o.principal = p;
        Retrieval got = retriever.retrieve(query, o);
        for (const auto& c : got.candidates) EXPECT_TRUE(allowed.count(file_name(c.path))) << c.path;

        // Oracle 2.
        std::vector<Candidate> expect;
        if (v.mode == Mode::kBm25 || v.mode == Mode::kDense) {
          auto list = side(v.mode == Mode::kBm25 ? full_bm25 : full_dense, v.mode == Mode::kBm25);
          for (const auto& s : list) expect.push_back({}), expect.back().chunk_id = s.chunk_id;
        } else {
          expect = fuse(side(full_bm25, true), side(full_dense, false), v.fusion, o.bm25_weight, o.rrf_k);
        }
        if (v.rerank && !expect.empty()) {
          std::vector<std::string> passages;
          for (const auto& c : expect) {
            const Doc* d = by_name.at(name_of.at(c.chunk_id));
            passages.push_back(index::embed_passage(d->name.substr(0, 3), "", d->text));
          }
          std::vector<float> s = reranker->score(query, passages);
          for (size_t i = 0; i < expect.size(); ++i) expect[i].rerank_score = s[i];
          std::stable_sort(expect.begin(), expect.end(),
                           [](const Candidate& a, const Candidate& b) { return a.rerank_score > b.rerank_score; });
        }
        std::vector<std::string> want;
        for (size_t i = 0; i < expect.size() && i < static_cast<size_t>(k); ++i) want.push_back(name_of.at(expect[i].chunk_id));
        EXPECT_EQ(names(got), want);

        // Oracle 3: vectors and reranking do not depend on the rest of the collection.
        if (v.mode == Mode::kDense) {
          o.principal.reset();
          std::vector<std::string> separate = own ? names(own->retrieve(query, o)) : std::vector<std::string>{};
          EXPECT_EQ(names(got), separate);
        }
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, kUsers * 3 * 6);
}

}  // namespace
}  // namespace rag::retrieve
