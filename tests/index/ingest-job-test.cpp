#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>

#include "common/error.h"
#include "index/index.h"
#include "index/keyword-index-impl.h"
#include "tests/support/support.h"

namespace rag::index {
namespace {

SearchOptions top(int k) {
  SearchOptions options;
  options.k = k;
  return options;
}

IngestOptions options_for(std::vector<std::string> roots, std::vector<std::string> acl) {
  IngestOptions options;
  options.roots = std::move(roots);
  options.acl = std::move(acl);
  return options;
}

struct Counts {
  int64_t new_files, updated, unchanged, removed, failed;
  bool operator==(const Counts&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Counts& c) {
  return os << "{new " << c.new_files << ", updated " << c.updated << ", unchanged " << c.unchanged << ", removed "
            << c.removed << ", failed " << c.failed << "}";
}

Counts counts(const IngestSummary& s) { return {s.new_files, s.updated, s.unchanged, s.removed, s.failed}; }

IngestSummary run(const std::string& data, const std::string& root, IngestOptions options = {}) {
  options.roots = {root};
  if (options.threads == 0) options.threads = 2;
  return ingest(data, options);
}

std::vector<std::string> hit_paths(const std::string& data, const std::string& query, SearchOptions options = {}) {
  std::vector<std::string> out;
  for (const auto& h : index::search(data, query, options)) out.push_back(h.path);
  return out;
}

const std::string kBinary("\x00\x01\x02\x03 not text \xff\xfe", 16);

TEST(IngestJob, NewUnchangedModifiedTouchedDeletedCountExactly) {
  test::TempDir dir;
  std::string docs = dir / "docs", data = dir / "data";
  test::write_file(docs + "/a.md", "# Alpha\n\nAardvarks are animals.\n");
  test::write_file(docs + "/b.txt", "Bees make honey.\n");
  test::write_file(docs + "/sub/c.txt", "Cats sleep a lot.\n");

  struct Step {
    const char* what;
    std::function<void()> change;
    Counts expected;
  } steps[] = {
      {"first ingest", [] {}, {3, 0, 0, 0, 0}},
      {"nothing changed", [] {}, {0, 0, 3, 0, 0}},
      {"b modified", [&] { test::write_file(docs + "/b.txt", "Bumblebees make more honey.\n"); }, {0, 1, 2, 0, 0}},
      {"a touched, same bytes",
       [&] {
         std::filesystem::last_write_time(docs + "/a.md",
                                          std::filesystem::last_write_time(docs + "/a.md") - std::chrono::hours(1));
       },
       {0, 0, 3, 0, 0}},
      {"c deleted, d added",
       [&] {
         std::filesystem::remove(docs + "/sub/c.txt");
         test::write_file(docs + "/d.txt", "Dogs bark.\n");
       },
       {1, 0, 2, 1, 0}},
  };
  for (const auto& step : steps) {
    step.change();
    IngestSummary s = run(data, docs);
    EXPECT_EQ(counts(s), step.expected) << step.what;
    EXPECT_TRUE(s.failures.empty()) << step.what;
  }
  Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
  EXPECT_EQ(catalog.document_count(), 3);
  EXPECT_FALSE(catalog.document_by_path(docs + "/sub/c.txt").has_value());
  EXPECT_TRUE(hit_paths(data, "cats").empty());
  EXPECT_EQ(hit_paths(data, "bumblebees"), std::vector<std::string>{docs + "/b.txt"});
  EXPECT_EQ(hit_paths(data, "dogs"), std::vector<std::string>{docs + "/d.txt"});
  // The catalog and the keyword index hold the same chunks.
  KeywordIndex keywords(keyword_path(data, current_generation(data)), KeywordIndex::Mode::kRead);
  EXPECT_EQ(keywords.size(), catalog.chunk_count());
  EXPECT_EQ(keywords.committed_change(), catalog.change_counter());
}

TEST(IngestJob, NoPruneKeepsDocumentsOfDeletedFiles) {
  test::TempDir dir;
  std::string docs = dir / "docs", data = dir / "data";
  test::write_file(docs + "/a.txt", "apples");
  test::write_file(docs + "/b.txt", "bananas");
  run(data, docs);
  std::filesystem::remove(docs + "/b.txt");
  IngestOptions keep;
  keep.prune = false;
  EXPECT_EQ(counts(run(data, docs, keep)), (Counts{0, 0, 1, 0, 0}));
  EXPECT_EQ(hit_paths(data, "bananas").size(), 1u);
  EXPECT_EQ(counts(run(data, docs)), (Counts{0, 0, 1, 1, 0}));
  EXPECT_TRUE(hit_paths(data, "bananas").empty());
}

TEST(IngestJob, FailuresAreRecordedAndTheRestIsIndexed) {
  test::TempDir dir;
  std::string docs = dir / "docs", data = dir / "data";
  test::write_file(docs + "/good.txt", "Giraffes are tall.");
  test::write_file(docs + "/junk.bin", kBinary);
  test::write_file(docs + "/empty.txt", "");
  test::write_file(docs + "/big.txt", std::string(2 << 20, 'w') + " ");
  IngestOptions options;
  options.max_file_bytes = 1 << 20;
  IngestSummary s = run(data, docs, options);
  EXPECT_EQ(counts(s), (Counts{1, 0, 0, 0, 3}));
  ASSERT_EQ(s.failures.size(), 3u);
  EXPECT_EQ(s.failures[0].path, docs + "/big.txt");
  EXPECT_NE(s.failures[0].reason.find("--max-file-mb"), std::string::npos) << s.failures[0].reason;
  EXPECT_EQ(s.failures[1].path, docs + "/empty.txt");
  EXPECT_EQ(s.failures[2].path, docs + "/junk.bin");
  for (const auto& f : s.failures) EXPECT_EQ(f.reason.find('\n'), std::string::npos);

  Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
  auto junk = catalog.document_by_path(docs + "/junk.bin");
  ASSERT_TRUE(junk.has_value());
  EXPECT_EQ(junk->status, "error");
  EXPECT_EQ(junk->error, s.failures[2].reason);
  EXPECT_EQ(junk->chunk_count, 0);
  EXPECT_EQ(hit_paths(data, "giraffes"), std::vector<std::string>{docs + "/good.txt"});

  // Failed files are retried on every run, so they stay counted as failed until fixed.
  EXPECT_EQ(counts(run(data, docs, options)), (Counts{0, 0, 1, 0, 3}));
  test::write_file(docs + "/junk.bin", "now it is text about jackals");
  EXPECT_EQ(counts(run(data, docs, options)), (Counts{0, 1, 1, 0, 2}));
  EXPECT_EQ(Catalog(catalog_path(data), Catalog::Mode::kRead).document_by_path(docs + "/junk.bin")->status, "ok");
  EXPECT_EQ(hit_paths(data, "jackals").size(), 1u);
}

TEST(IngestJob, AChangedFileThatNowFailsKeepsItsPreviousChunks) {
  test::TempDir dir;
  std::string docs = dir / "docs", data = dir / "data";
  test::write_file(docs + "/a.txt", "Okapis live in forests.");
  run(data, docs);
  int64_t old_chunks = Catalog(catalog_path(data), Catalog::Mode::kRead).chunk_count();

  test::write_file(docs + "/a.txt", kBinary);
  IngestSummary s = run(data, docs);
  EXPECT_EQ(counts(s), (Counts{0, 0, 0, 0, 1}));
  {
    Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
    auto doc = catalog.document_by_path(docs + "/a.txt");
    ASSERT_TRUE(doc.has_value());
    EXPECT_EQ(doc->status, "error");
    EXPECT_FALSE(doc->error.empty());
    EXPECT_EQ(doc->chunk_count, old_chunks);
    EXPECT_EQ(catalog.chunk_count(), old_chunks);
  }
  EXPECT_EQ(hit_paths(data, "okapis"), std::vector<std::string>{docs + "/a.txt"});

  // Restoring the old bytes brings the row back to 'ok' without re-chunking.
  test::write_file(docs + "/a.txt", "Okapis live in forests.");
  EXPECT_EQ(counts(run(data, docs)), (Counts{0, 0, 1, 0, 0}));
  EXPECT_EQ(Catalog(catalog_path(data), Catalog::Mode::kRead).document_by_path(docs + "/a.txt")->status, "ok");
}

// Every term of one chunk's Xapian document with its wdf and positions, as text. The id terms ("Q<chunk id>",
// "D<doc id>") differ between runs that assign ids in another order: they are checked against the catalog
// ids and left out.
std::vector<std::string> indexed_terms(const KeywordIndex& keywords, const ChunkRecord& chunk) {
  std::vector<std::string> out;
  Xapian::Document doc = keywords.impl().reader.get_document(static_cast<Xapian::docid>(chunk.id));
  bool has_q = false, has_d = false;
  for (auto it = doc.termlist_begin(); it != doc.termlist_end(); ++it) {
    std::string term = *it;
    if (term == "Q" + std::to_string(chunk.id)) has_q = true;
    if (term == "D" + std::to_string(chunk.doc_id)) has_d = true;
    if (term[0] == 'Q' || term[0] == 'D') continue;
    std::string line = term + " wdf " + std::to_string(it.get_wdf()) + " at";
    for (auto p = it.positionlist_begin(); p != it.positionlist_end(); ++p) line += " " + std::to_string(*p);
    out.push_back(std::move(line));
  }
  EXPECT_TRUE(has_q && has_d) << "chunk " << chunk.id << " lacks its id terms";
  EXPECT_EQ(Xapian::sortable_unserialise(doc.get_value(kSlotDocId)), static_cast<double>(chunk.doc_id));
  return out;
}

TEST(IngestJob, ThreadsAndBatchSizeDoNotChangeTheResult) {
  test::TempDir dir;
  std::string docs = dir / "docs";
  for (int i = 0; i < 40; ++i) {
    std::string body = "# Report " + std::to_string(i) + "\n\n";
    for (int p = 0; p < 5; ++p)
      body += "Paragraph " + std::to_string(p) + " mentions widget" + std::to_string(i % 7) +
              " and the quarterly numbers for region " + std::to_string(p * i % 11) + ".\n\n";
    test::write_file(docs + "/r" + std::to_string(i) + ".md", body);
  }
  // HTML with a title, nested headings and a body long enough for several chunks: prefixed title and heading
  // terms and body positions past the first chunk.
  for (int i = 0; i < 6; ++i) {
    std::string body = "<html><head><title>Manual page " + std::to_string(i) + "</title></head><body>";
    for (int h = 0; h < 3; ++h) {
      body += "<h1>Chapter " + std::to_string(h) + "</h1><h2>Running the server</h2>";
      for (int p = 0; p < 8; ++p)
        body += "<p>The write ahead log keeps changes durable; section " + std::to_string(p) +
                " explains checkpoints, vacuum and replication slots in detail.</p>";
    }
    test::write_file(docs + "/m" + std::to_string(i) + ".html", body + "</body></html>");
  }
  test::write_file(docs + "/bad.bin", kBinary);
  // The slow oracle: one thread, one file per batch. The fast path: several threads, large batches.
  IngestOptions slow;
  slow.threads = 1;
  slow.batch_bytes = 1;
  IngestOptions fast;
  fast.threads = 4;
  fast.batch_bytes = 1ll << 30;
  IngestSummary a = run(dir / "slow", docs, slow);
  IngestSummary b = run(dir / "fast", docs, fast);
  EXPECT_EQ(counts(a), counts(b));
  EXPECT_EQ(a.chunks, b.chunks);
  EXPECT_EQ(a.failed, 1);
  Catalog ca(catalog_path(dir / "slow"), Catalog::Mode::kRead), cb(catalog_path(dir / "fast"), Catalog::Mode::kRead);
  for (int i = 0; i < 40; ++i) {
    std::string path = docs + "/r" + std::to_string(i) + ".md";
    auto da = ca.document_by_path(path), db = cb.document_by_path(path);
    ASSERT_TRUE(da && db) << path;
    auto xa = ca.chunks_of(da->id), xb = cb.chunks_of(db->id);
    ASSERT_EQ(xa.size(), xb.size()) << path;
    for (size_t c = 0; c < xa.size(); ++c) EXPECT_EQ(xa[c].text, xb[c].text);
  }
  // Every chunk of every document: the same Xapian terms, wdf and positions in both runs.
  KeywordIndex ka(keyword_path(dir / "slow", current_generation(dir / "slow")), KeywordIndex::Mode::kRead);
  KeywordIndex kb(keyword_path(dir / "fast", current_generation(dir / "fast")), KeywordIndex::Mode::kRead);
  EXPECT_EQ(ka.size(), a.chunks);
  EXPECT_EQ(kb.size(), b.chunks);
  size_t compared = 0;
  for (const auto& da : ca.documents_under(docs)) {
    auto db = cb.document_by_path(da.path);
    ASSERT_TRUE(db) << da.path;
    auto xa = ca.chunks_of(da.id), xb = cb.chunks_of(db->id);
    ASSERT_EQ(xa.size(), xb.size()) << da.path;
    for (size_t c = 0; c < xa.size(); ++c) {
      std::vector<std::string> ta = indexed_terms(ka, xa[c]), tb = indexed_terms(kb, xb[c]);
      EXPECT_FALSE(ta.empty()) << da.path << " chunk " << c;
      EXPECT_EQ(ta, tb) << da.path << " chunk " << c;
      ++compared;
    }
  }
  EXPECT_EQ(static_cast<int64_t>(compared), a.chunks);
  for (const char* query : {"widget3", "quarterly region", "report 17", "\"write ahead log\"", "title:manual",
                            "heading:server checkpoints"}) {
    // k above the corpus size: a cut inside a run of equal scores would depend on docid order.
    auto ha = index::search(dir / "slow", query, top(100)), hb = index::search(dir / "fast", query, top(100));
    ASSERT_EQ(ha.size(), hb.size()) << query;
    // Equal scores rank by docid, which depends on insertion order: compare in (score, path) order.
    auto order = [](const SearchHit& x, const SearchHit& y) {
      return x.score != y.score ? x.score > y.score : x.path < y.path;
    };
    std::sort(ha.begin(), ha.end(), order);
    std::sort(hb.begin(), hb.end(), order);
    for (size_t i = 0; i < ha.size(); ++i) {
      EXPECT_EQ(ha[i].path, hb[i].path) << query;
      EXPECT_DOUBLE_EQ(ha[i].score, hb[i].score) << query;
    }
  }
}

// Body terms keep positions when their documents are built on the parser threads: a quoted phrase matches
// only the chunk that has its words in order.
TEST(IngestJob, PhraseQueriesMatchBodyTextBuiltInParallel) {
  test::TempDir dir;
  std::string docs = dir / "docs";
  test::write_file(docs + "/in-order.md", "# Storage\n\nThe write ahead log makes commits durable.\n");
  test::write_file(docs + "/scattered.md", "# Notes\n\nThe log was ahead of the write position.\n");
  for (int i = 0; i < 10; ++i)
    test::write_file(docs + "/filler" + std::to_string(i) + ".md", "# Filler\n\nNothing about storage here.\n");
  IngestOptions options;
  options.threads = 4;
  run(dir / "data", docs, options);
  EXPECT_EQ(hit_paths(dir / "data", "\"write ahead log\""), std::vector<std::string>{docs + "/in-order.md"});
  EXPECT_EQ(hit_paths(dir / "data", "\"log ahead write\""), std::vector<std::string>{});
  std::vector<std::string> both = hit_paths(dir / "data", "write ahead log");
  std::sort(both.begin(), both.end());
  EXPECT_EQ(both, (std::vector<std::string>{docs + "/in-order.md", docs + "/scattered.md"}));
}

TEST(IngestJob, KeywordIndexBehindTheCatalogIsRebuiltByTheNextWriter) {
  test::TempDir dir;
  std::string docs = dir / "docs", data = dir / "data";
  test::write_file(docs + "/a.txt", "Narwhals have tusks.");
  test::write_file(docs + "/b.txt", "Walruses have tusks too.");
  run(data, docs);
  // Simulate a crash after the catalog committed but before Xapian did: Xapian lost everything.
  {
    KeywordIndex keywords(keyword_path(data, current_generation(data)), KeywordIndex::Mode::kWrite);
    keywords.remove_all();
    keywords.commit(0);
  }
  EXPECT_TRUE(hit_paths(data, "tusks").empty());
  EXPECT_EQ(counts(run(data, docs)), (Counts{0, 0, 2, 0, 0}));
  EXPECT_EQ(hit_paths(data, "tusks").size(), 2u);
  Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
  KeywordIndex keywords(keyword_path(data, current_generation(data)), KeywordIndex::Mode::kRead);
  EXPECT_EQ(keywords.committed_change(), catalog.change_counter());
  EXPECT_EQ(keywords.size(), catalog.chunk_count());
}

TEST(IngestJob, AclFromRagaclOrOptionBecomesTermsAndFiltersSearch) {
  test::TempDir dir;
  std::string docs = dir / "docs", data = dir / "data";
  test::write_file(docs + "/open.txt", "Quokkas smile at everyone.");
  test::write_file(docs + "/eng/.ragacl", "group:eng\n");
  test::write_file(docs + "/eng/plan.txt", "Quokkas in the engineering plan.");
  test::write_file(docs + "/hr/.ragacl", "user:ann\n");
  test::write_file(docs + "/hr/pay.txt", "Quokkas salary review.");
  IngestOptions options;
  options.acl = {"group:all"};
  run(data, docs, options);
  Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
  EXPECT_EQ(catalog.document_by_path(docs + "/open.txt")->acl, std::vector<std::string>{"group:all"});
  EXPECT_EQ(catalog.document_by_path(docs + "/eng/plan.txt")->acl, std::vector<std::string>{"group:eng"});

  // Oracle: a filtered search equals the unfiltered one restricted to the documents the principal may read.
  auto all = index::search(data, "quokkas", top(10));
  ASSERT_EQ(all.size(), 3u);
  struct Case {
    std::vector<std::string> principals;
  } cases[] = {{{"group:eng"}}, {{"user:ann", "group:all"}}, {{"user:bob"}}, {{}}};
  for (const auto& c : cases) {
    std::vector<std::string> expected;
    for (const auto& h : all) {
      auto acl = catalog.document(h.doc_id)->acl;
      for (const auto& p : c.principals)
        if (std::find(acl.begin(), acl.end(), p) != acl.end()) {
          expected.push_back(h.path);
          break;
        }
    }
    SearchOptions options;
    options.principals = c.principals;
    EXPECT_EQ(hit_paths(data, "quokkas", options), expected);
  }
}

TEST(IngestJob, RejectsBadOptionsBeforeTouchingTheDataDir) {
  test::TempDir dir;
  struct Case {
    IngestOptions options;
    Errc code;
  } cases[] = {
      {options_for({}, {}), Errc::kInvalidArgument},
      {options_for({dir / "missing"}, {}), Errc::kNotFound},
      {options_for({dir.path()}, {"has space"}), Errc::kInvalidArgument},
  };
  for (const auto& c : cases) {
    try {
      ingest(dir / "data", c.options);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), c.code) << e.what();
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "data"));
}

}  // namespace
}  // namespace rag::index
