// Index generations: every writing ingest and every rebuild publishes a new generation; readers stay on
// theirs; a query sees all of a run or none; a failed run leaves the live generation; verify finds each
// disagreement and --repair (rebuild from the catalog) fixes it.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "common/error.h"
#include "index/index.h"
#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"

namespace rag::index {
namespace {

namespace fs = std::filesystem;

IngestSummary run(const test::TempDir& dir, std::shared_ptr<const Embedder> embedder = nullptr,
                  const std::string& model_path = "", int keep = kDefaultKeepGenerations) {
  IngestOptions options;
  options.roots = {dir / "docs"};
  options.threads = 2;
  options.embedder = std::move(embedder);
  options.embedder_path = model_path;
  options.keep_generations = keep;
  return ingest(dir / "data", options);
}

std::set<int64_t> generation_dirs(const std::string& data) {
  std::set<int64_t> out;
  for (const auto& e : fs::directory_iterator(data + "/gen")) out.insert(std::stoll(e.path().filename().string()));
  return out;
}

// Paths of the hits for `query`, as one sorted set.
std::set<std::string> paths(Searcher& s, const std::string& query) {
  SearchOptions options;
  options.k = 100;
  std::set<std::string> out;
  for (const auto& h : s.search(query, options)) out.insert(fs::path(h.path).filename().string());
  return out;
}

std::string tiny_model(const test::TempDir& dir) {
  test::TinyBertSpec spec;
  spec.seed = 3;
  spec.context = 256;
  std::string path = dir / "model.gguf";
  test::write_tiny_bert(path, spec);
  return path;
}

// Fails every call from the `fail_from`-th on: an embedder (or its machine) dying part way through a run.
class FailingEmbedder : public Embedder {
 public:
  FailingEmbedder(std::shared_ptr<const Embedder> inner, int fail_from) : inner_(std::move(inner)), left_(fail_from) {}
  int dim() const override { return inner_->dim(); }
  const std::string& identity() const override { return inner_->identity(); }
  std::vector<float> embed(const std::vector<std::string>& texts) const override {
    if (--left_ <= 0) throw Error(Errc::kIo, "embedder: device lost");
    return inner_->embed(texts);
  }

 private:
  std::shared_ptr<const Embedder> inner_;
  mutable std::atomic<int> left_;
};

TEST(Generations, AWritingRunPublishesANewGenerationAndANoOpRunDoesNot) {
  test::TempDir dir;
  test::write_file(dir / "docs/a.txt", "alpha words");
  EXPECT_EQ(run(dir).generation, 1);
  EXPECT_EQ(current_generation(dir / "data"), 1);
  EXPECT_EQ(run(dir).generation, 1);  // nothing changed: no copy, no new generation
  EXPECT_EQ(generation_dirs(dir / "data"), (std::set<int64_t>{1}));
  for (int i = 0; i < 4; ++i) {
    test::write_file(dir / "docs/a.txt", "alpha words, version " + std::to_string(i));
    EXPECT_EQ(run(dir, nullptr, "", 2).generation, 2 + i);
  }
  // keep = 2: the live generation and the one before it.
  EXPECT_EQ(generation_dirs(dir / "data"), (std::set<int64_t>{4, 5}));
  EXPECT_TRUE(verify(dir / "data").ok());
}

TEST(Generations, AReaderStaysOnItsGenerationWhileARunReplacesRemovesAndAdds) {
  test::TempDir dir;
  test::write_file(dir / "docs/changed.txt", "the zebra text before the change");
  test::write_file(dir / "docs/removed.txt", "a zebra that will be removed");
  run(dir);
  Searcher before(dir / "data");
  test::write_file(dir / "docs/changed.txt", "the zebra text after the change");
  fs::remove(dir / "docs/removed.txt");
  test::write_file(dir / "docs/added.txt", "a zebra that was added");
  run(dir);
  Searcher after(dir / "data");

  // The old reader hydrates the replaced and removed chunks (soft removal), with their old text.
  EXPECT_EQ(paths(before, "zebra"), (std::set<std::string>{"changed.txt", "removed.txt"}));
  auto old_hits = before.search("before");
  ASSERT_EQ(old_hits.size(), 1u);
  EXPECT_NE(old_hits[0].snippet.find("**before** the change"), std::string::npos) << old_hits[0].snippet;
  EXPECT_EQ(paths(after, "zebra"), (std::set<std::string>{"changed.txt", "added.txt"}));
  EXPECT_TRUE(after.search("before").empty());

  // Removed rows live until no kept generation holds them: three more generations purge them.
  Catalog catalog(catalog_path(dir / "data"), Catalog::Mode::kRead);
  int64_t removed_chunk = old_hits[0].chunk_id;
  ASSERT_TRUE(catalog.chunk(removed_chunk));
  for (int i = 0; i < 3; ++i) {
    test::write_file(dir / "docs/other.txt", "filler " + std::to_string(i));
    run(dir);
  }
  EXPECT_FALSE(catalog.chunk(removed_chunk));
  EXPECT_EQ(catalog.document_count(), 3);
}

TEST(Generations, ConcurrentQueriesSeeAllOfARunOrNoneOfIt) {
  test::TempDir dir;
  constexpr int kDocs = 30;
  for (int i = 0; i < kDocs; ++i) test::write_file(dir / ("docs/old" + std::to_string(i) + ".txt"), "oldword text");
  run(dir);
  std::atomic<bool> done{false};
  std::atomic<int> queries{0}, mixed{0};
  std::thread reader([&] {
    while (!done) {
      Searcher s(dir / "data");
      size_t old_count = paths(s, "oldword").size(), new_count = paths(s, "newword").size();
      bool before = old_count == kDocs && new_count == 0, after = old_count == 0 && new_count == kDocs;
      if (!before && !after) ++mixed;
      ++queries;
    }
  });
  for (int i = 0; i < kDocs; ++i) {
    fs::remove(dir / ("docs/old" + std::to_string(i) + ".txt"));
    test::write_file(dir / ("docs/new" + std::to_string(i) + ".txt"), "newword text");
  }
  IngestOptions options;
  options.roots = {dir / "docs"};
  options.threads = 2;
  options.batch_bytes = 1;  // a catalog and Xapian commit per file: many states a reader could catch
  ingest(dir / "data", options);
  while (queries < 20) std::this_thread::yield();
  done = true;
  reader.join();
  EXPECT_EQ(mixed, 0) << "of " << queries << " queries";
  Searcher s(dir / "data");
  EXPECT_EQ(paths(s, "newword").size(), size_t{kDocs});
}

TEST(Generations, AFailedRunLeavesTheLiveGenerationAndTheNextRunPublishesWhatItCommitted) {
  test::TempDir dir;
  std::string model = tiny_model(dir);
  auto embedder = open_embedder(model);
  test::write_file(dir / "docs/first.txt", "first document");
  run(dir, embedder, model);
  for (int i = 0; i < 40; ++i)
    test::write_file(dir / ("docs/more" + std::to_string(i) + ".txt"), "extra text number " + std::to_string(i));
  IngestOptions options;
  options.roots = {dir / "docs"};
  options.threads = 1;
  options.batch_bytes = 1;  // catalog commits before the failure
  options.embedder = std::make_shared<FailingEmbedder>(embedder, 10);
  options.embedder_path = model;
  EXPECT_THROW(ingest(dir / "data", options), Error);

  EXPECT_EQ(current_generation(dir / "data"), 1);
  EXPECT_EQ(generation_dirs(dir / "data"), (std::set<int64_t>{1}));  // the unpublished one is gone
  Searcher live(dir / "data");
  EXPECT_TRUE(live.search("extra").empty());
  VerifyReport report = verify(dir / "data");
  EXPECT_TRUE(report.ok()) << report.problems[0];
  EXPECT_GT(report.catalog_change, report.generation_change);  // committed but not published
  ASSERT_FALSE(report.notes.empty());

  IngestSummary next = run(dir, embedder, model);
  EXPECT_EQ(next.generation, 2);
  Searcher s(dir / "data");
  EXPECT_EQ(paths(s, "extra").size(), 40u);
  EXPECT_EQ(s.vector_info().manifest->vectors, 41);
  EXPECT_TRUE(verify(dir / "data").ok());
}

TEST(Rebuild, PublishesAFreshGenerationThatAnswersTheSameAndReembeds) {
  test::TempDir dir;
  std::string model = tiny_model(dir);
  for (int i = 0; i < 12; ++i)
    test::write_file(dir / ("docs/d" + std::to_string(i) + ".md"), "# Doc " + std::to_string(i) + "\n\nshared words\n");
  run(dir, open_embedder(model), model);
  std::set<std::string> before;
  {
    Searcher s(dir / "data");
    before = paths(s, "shared");
  }
  RebuildOptions options;
  options.keep_generations = 2;
  RebuildSummary r = rebuild(dir / "data", options);
  EXPECT_EQ(r.generation, 2);
  EXPECT_EQ(r.chunks, 12);
  EXPECT_EQ(r.vectors, 12);
  EXPECT_EQ(r.embedded, 12);
  options.reembed = false;
  EXPECT_EQ(rebuild(dir / "data", options).embedded, 0);
  EXPECT_EQ(generation_dirs(dir / "data"), (std::set<int64_t>{2, 3}));
  Searcher s(dir / "data");
  EXPECT_EQ(paths(s, "shared"), before);
  EXPECT_EQ(s.vector_info().generation, 3);
  EXPECT_TRUE(verify(dir / "data").ok());
}

TEST(Rebuild, ClearErrorsForALockedOrEmptyDataDir) {
  test::TempDir dir;
  try {
    rebuild(dir / "nothing");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kNotFound);
    EXPECT_NE(std::string(e.what()).find("rag ingest"), std::string::npos);
  }
  test::write_file(dir / "docs/a.txt", "words");
  run(dir);
  WriteLock held(dir / "data", false);
  try {
    rebuild(dir / "data");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kBusy);
  }
  RebuildOptions one;
  one.keep_generations = 1;
  EXPECT_THROW(rebuild(dir / "data", one), Error);
}

TEST(Verify, NamesEachDisagreementAndARebuildRepairsIt) {
  test::TempDir dir;
  std::string model = tiny_model(dir);
  test::write_file(dir / "docs/a.txt", "alpha");
  test::write_file(dir / "docs/b.txt", "beta");
  run(dir, open_embedder(model), model);
  std::string data = dir / "data";
  VerifyReport good = verify(data);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good.chunks, 2);
  EXPECT_EQ(good.keyword_chunks, 2);
  EXPECT_EQ(good.vectors, 2);

  // A chunk missing from the keyword index.
  int64_t gen = current_generation(data);
  {
    Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
    KeywordIndex keywords(keyword_path(data, gen), KeywordIndex::Mode::kWrite);
    int64_t id = catalog.chunk_ids_live_at(catalog.change_counter()).front();
    keywords.remove(id);
    keywords.commit(keywords.committed_change());
  }
  VerifyReport bad = verify(data);
  ASSERT_EQ(bad.problems.size(), 1u);
  EXPECT_NE(bad.problems[0].find("keyword index lacks 1"), std::string::npos) << bad.problems[0];
  RebuildOptions repair;
  repair.reembed = false;
  rebuild(data, repair);
  EXPECT_TRUE(verify(data).ok());

  // A damaged FAISS file, then a missing manifest.
  gen = current_generation(data);
  test::write_file(vectors_path(data, gen), "not faiss");
  bad = verify(data);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.problems[0].find("vectors.faiss"), std::string::npos) << bad.problems[0];
  fs::remove(manifest_path(data, gen));
  bad = verify(data);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.problems[0].find("no vector index"), std::string::npos) << bad.problems[0];
  rebuild(data, repair);
  EXPECT_TRUE(verify(data).ok());

  // CURRENT naming garbage.
  test::write_file(data + "/CURRENT", "garbage\n");
  bad = verify(data);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.problems[0].find("CURRENT"), std::string::npos) << bad.problems[0];
  rebuild(data, repair);  // what the error says to do
  EXPECT_TRUE(verify(data).ok());
}

}  // namespace
}  // namespace rag::index
