#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <exception>
#include <thread>

#include "common/error.h"
#include "index/index.h"
#include "tests/support/pdf-writer.h"
#include "tests/support/support.h"

namespace rag::index {
namespace {

SearchOptions top(int k) {
  SearchOptions options;
  options.k = k;
  return options;
}

std::string ingest_folder(const test::TempDir& dir) {
  IngestOptions options;
  options.roots = {dir / "docs"};
  options.threads = 2;
  ingest(dir / "data", options);
  return dir / "data";
}

TEST(Search, TitleAndHeadingMatchesRankAboveBodyMatches) {
  struct Case {
    const char* what;
    std::string winner_name, winner_text, loser_name, loser_text;
  } cases[] = {
      {"title from the file name", "zebra.txt", "Notes on stripes and savannas.", "other.txt",
       "A zebra appears in this body text once, among other animals."},
      {"markdown heading", "a.md", "# Animals\n\n## Zebra\n\nStriped horses.\n", "b.md",
       "# Animals\n\n## Horses\n\nA zebra is mentioned in passing among many horses.\n"},
  };
  for (const auto& c : cases) {
    test::TempDir dir;
    test::write_file(dir / "docs/" + c.winner_name, c.winner_text);
    test::write_file(dir / "docs/" + c.loser_name, c.loser_text);
    auto hits = index::search(ingest_folder(dir), "zebra");
    ASSERT_EQ(hits.size(), 2u) << c.what;
    EXPECT_EQ(hits[0].path, dir / "docs/" + c.winner_name) << c.what;
    EXPECT_GT(hits[0].score, hits[1].score) << c.what;
  }
}

TEST(Search, HitsCarryPathTitlePageHeadingAndMarkedSnippet) {
  test::TempDir dir;
  test::write_file(dir / "docs/guide.md", "# Setup guide\n\n## Linux\n\nInstall the kernel headers & run make < 5 min.\n");
  // Page 1 fills a chunk; the chunk with the word carries overlap from page 1, so it may cite page 1 (the
  // chunker gives a chunk the page of its first text): search reports the catalog's page either way.
  std::string front;
  for (int i = 0; i < 16; ++i) front += "Front matter paragraph " + std::to_string(i) + " about nothing in particular at all.\n\n";
  test::write_pdf(dir / "docs/manual.pdf", {front, "Second page: kernel tuning notes."}, "Kernel manual");
  std::string data = ingest_folder(dir);
  // The PDF's title names the word, so both its chunks match; the one with the word in its body ranks first.
  auto hits = index::search(data, "kernel", top(10));
  ASSERT_EQ(hits.size(), 3u);
  for (size_t i = 1; i < hits.size(); ++i) EXPECT_GE(hits[i - 1].score, hits[i].score);
  const SearchHit* md = nullptr;
  std::vector<const SearchHit*> pdf;
  for (const auto& h : hits) {
    if (h.path.ends_with(".pdf")) pdf.push_back(&h);
    else md = &h;
  }
  ASSERT_TRUE(md && pdf.size() == 2);
  EXPECT_EQ(md->page, 0);
  EXPECT_EQ(md->title, "Setup guide");
  EXPECT_EQ(md->heading, "Setup guide > Linux");
  EXPECT_NE(md->snippet.find("**kernel**"), std::string::npos) << md->snippet;
  // Snippets are plain text: Xapian's HTML escaping is undone.
  EXPECT_NE(md->snippet.find("& run make < 5"), std::string::npos) << md->snippet;
  EXPECT_GE(pdf[0]->page, 1);
  EXPECT_LE(pdf[0]->page, 2);
  EXPECT_NE(pdf[0]->snippet.find("**kernel** tuning"), std::string::npos) << pdf[0]->snippet;
  EXPECT_EQ(pdf[1]->page, 1);
  EXPECT_EQ(pdf[0]->title, "Kernel manual");
  EXPECT_EQ(pdf[0]->doc_id, pdf[1]->doc_id);
  Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
  EXPECT_EQ(catalog.chunk(pdf[0]->chunk_id)->doc_id, pdf[0]->doc_id);
  EXPECT_EQ(catalog.chunk(pdf[0]->chunk_id)->page, pdf[0]->page);

  EXPECT_EQ(index::search(data, "kernel", top(1)).size(), 1u);
  EXPECT_TRUE(index::search(data, "nonexistentword").empty());
  EXPECT_EQ(index::search(data, "title:setup").size(), 1u);
  EXPECT_EQ(index::search(data, "kernel AND").size(), 3u);  // a syntax error reads the words literally
}

TEST(Search, BadRequestsAndMissingIndexAreClearErrors) {
  test::TempDir dir;
  try {
    index::search(dir / "nothing", "x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kNotFound);
    EXPECT_NE(std::string(e.what()).find("rag ingest"), std::string::npos);
  }
  test::write_file(dir / "docs/a.txt", "words");
  std::string data = ingest_folder(dir);
  struct Case {
    std::string query;
    int k;
  } cases[] = {{"", 10}, {"   ", 10}, {"words", 0}, {"words", kMaxK + 1}, {std::string(5000, 'a'), 10}};
  for (const auto& c : cases) {
    try {
      index::search(data, c.query, top(c.k));
      ADD_FAILURE() << c.query.substr(0, 10) << " k=" << c.k;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kInvalidArgument);
    }
  }
}

TEST(Search, AReaderKeepsAnsweringFromItsGenerationWhileAWriterPublishes) {
  test::TempDir dir;
  for (int i = 0; i < 30; ++i) test::write_file(dir / ("docs/f" + std::to_string(i) + ".txt"), "stable pelican text");
  std::string data = ingest_folder(dir);
  Searcher searcher(data);  // opened once: stays on generation 1 while the writer publishes 2 and 3
  std::atomic<bool> done{false};
  std::exception_ptr writer_error;
  std::thread writer([&] {
    try {
      for (int round = 0; round < kDefaultKeepGenerations - 1; ++round) {
        for (int i = 0; i < 30; ++i)
          test::write_file(dir / ("docs/f" + std::to_string(i) + ".txt"),
                           "stable pelican text round " + std::to_string(round) + std::string(i, 'x'));
        ingest_folder(dir);
      }
    } catch (...) {
      writer_error = std::current_exception();
    }
    done = true;
  });
  int searches = 0, wrong = 0;
  while (!done) {
    // Every chunk is replaced each round; the reader's generation still has exactly one per file.
    auto hits = searcher.search("pelican", top(100));
    if (hits.size() != 30u) ++wrong;
    for (const auto& h : hits)
      if (h.snippet.find("round") != std::string::npos) ++wrong;
    ++searches;
  }
  writer.join();
  if (writer_error) std::rethrow_exception(writer_error);
  EXPECT_GT(searches, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(searcher.search("pelican", top(100)).size(), 30u);
  EXPECT_TRUE(searcher.search("round", top(100)).empty());
  Searcher fresh(data);  // a new reader opens the live generation
  EXPECT_EQ(fresh.search("round", top(100)).size(), 30u);
}

TEST(WriteLock, SecondWriterInAnotherProcessIsBusyUnlessItWaits) {
  test::TempDir dir;
  int ready[2], release[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(release), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int code = 0;
    try {
      WriteLock lock(dir.path(), false);
      char c = 1;
      if (write(ready[1], &c, 1) != 1) code = 2;
      if (read(release[0], &c, 1) != 1) code = 3;
    } catch (...) {
      code = 1;
    }
    _exit(code);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  try {
    WriteLock second(dir.path(), false);
    ADD_FAILURE() << "second writer got the lock";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kBusy);
    EXPECT_NE(std::string(e.what()).find("locked by pid " + std::to_string(child)), std::string::npos) << e.what();
  }
  // With wait, the second writer gets the lock once the first lets go.
  std::thread letgo([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    char one = 1;
    (void)!write(release[1], &one, 1);
  });
  { WriteLock waited(dir.path(), true); }
  letgo.join();
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  for (int fd : {ready[0], ready[1], release[0], release[1]}) close(fd);
  // An ingest while the lock is held fails the same way, and --wait is what IngestOptions::wait_for_lock is.
  WriteLock held(dir.path(), false);
  test::write_file(dir / "docs/a.txt", "x");
  try {
    IngestOptions options;
    options.roots = {dir / "docs"};
    ingest(dir.path(), options);
    ADD_FAILURE() << "ingest ran under a held lock";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kBusy);
  }
}

TEST(DataDir, CurrentIsPublishedAtomicallyAndValidated) {
  test::TempDir dir;
  EXPECT_EQ(current_generation(dir.path()), 0);
  publish_generation(dir.path(), 3);
  EXPECT_EQ(current_generation(dir.path()), 3);
  EXPECT_FALSE(std::filesystem::exists(dir / "CURRENT.tmp"));
  for (const char* bad : {"", "x", "-1", "0", "12abc", "99999999999999999999"}) {
    test::write_file(dir / "CURRENT", bad);
    try {
      current_generation(dir.path());
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kCorrupt) << bad;
    }
  }
}

}  // namespace
}  // namespace rag::index
