#include <gtest/gtest.h>

#include <functional>

#include "common/error.h"
#include "index/index.h"
#include "tests/support/support.h"

namespace rag::index {
namespace {

ingest::Chunk make_chunk(int ordinal, std::string text, int page = 0) {
  ingest::Chunk c;
  c.ordinal = ordinal;
  c.text = std::move(text);
  c.heading_path = "Top > Sub";
  c.page = page;
  c.begin = static_cast<size_t>(ordinal) * 100;
  c.end = c.begin + c.text.size();
  return c;
}

DocumentRecord make_doc(const std::string& path) {
  DocumentRecord d;
  d.root = "/r";
  d.path = path;
  d.type = "text";
  d.title = "T";
  d.size = 10;
  d.mtime_ns = 20;
  d.content_hash = "abc";
  d.acl = {"group:eng", "user:ann"};
  return d;
}

TEST(Catalog, MigratesAnEmptyFileToTheCurrentSchemaAndReopens) {
  test::TempDir dir;
  std::string path = dir / "catalog.db";
  int64_t doc_id = 0;
  {
    Catalog catalog(path, Catalog::Mode::kWrite);
    EXPECT_EQ(catalog.schema_version(), Catalog::kSchemaVersion);
    EXPECT_EQ(catalog.change_counter(), 0);
    catalog.begin();
    doc_id = catalog.put_document(make_doc("/r/a.txt"));
    catalog.commit();
  }
  {
    Catalog again(path, Catalog::Mode::kWrite);  // migrations do not run twice
    EXPECT_EQ(again.schema_version(), Catalog::kSchemaVersion);
    EXPECT_EQ(again.document_count(), 1);
  }
  Catalog reader(path, Catalog::Mode::kRead);
  auto doc = reader.document(doc_id);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->path, "/r/a.txt");
  EXPECT_EQ(doc->status, "ok");
  EXPECT_EQ(doc->acl, (std::vector<std::string>{"group:eng", "user:ann"}));
  EXPECT_EQ(reader.change_counter(), 1);
}

TEST(Catalog, ReaderOfAMissingCatalogIsNotFound) {
  test::TempDir dir;
  try {
    Catalog catalog(dir / "absent.db", Catalog::Mode::kRead);
    FAIL() << "opened a missing catalog";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kNotFound);
  }
}

TEST(Catalog, GarbageFileIsCorrupt) {
  test::TempDir dir;
  test::write_file(dir / "catalog.db", std::string(8192, 'x'));
  try {
    Catalog catalog(dir / "catalog.db", Catalog::Mode::kWrite);
    FAIL() << "opened garbage";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kCorrupt) << e.what();
  }
}

TEST(Catalog, ChunkIdsAreNeverReusedAndReplacementReportsTheOldOnes) {
  test::TempDir dir;
  Catalog catalog(dir / "catalog.db", Catalog::Mode::kWrite);
  catalog.begin();
  int64_t doc = catalog.put_document(make_doc("/r/a.txt"));
  std::vector<int64_t> removed;
  auto first = catalog.replace_chunks(doc, {make_chunk(0, "one"), make_chunk(1, "two", 3)}, removed);
  EXPECT_TRUE(removed.empty());
  auto second = catalog.replace_chunks(doc, {make_chunk(0, "uno")}, removed);
  catalog.commit();
  ASSERT_EQ(first.size(), 2u);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(removed, first);
  EXPECT_GT(second[0], first[1]);
  // Removal is soft: the row stays for generations that still hold it, out of every live read.
  EXPECT_TRUE(catalog.chunk(first[0]).has_value());
  EXPECT_EQ(catalog.chunk_ids_of(doc), second);
  EXPECT_EQ(catalog.chunk_ids_live_at(catalog.change_counter()), second);
  auto chunk = catalog.chunk(second[0]);
  ASSERT_TRUE(chunk.has_value());
  EXPECT_EQ(chunk->text, "uno");
  EXPECT_EQ(chunk->heading_path, "Top > Sub");
  EXPECT_EQ(chunk->page, 0);
  EXPECT_EQ(catalog.document(doc)->chunk_count, 1);

  // Deleting the document with the highest chunk id and adding another must not hand that id out again.
  catalog.begin();
  catalog.remove_document(doc, removed);
  int64_t other = catalog.put_document(make_doc("/r/b.txt"));
  auto third = catalog.replace_chunks(other, {make_chunk(0, "page", 7)}, removed);
  catalog.commit();
  EXPECT_GT(third[0], second[0]);
  EXPECT_EQ(catalog.chunk(third[0])->page, 7);
  EXPECT_EQ(catalog.document(doc)->removed_change, catalog.change_counter());
  EXPECT_FALSE(catalog.document_by_path("/r/a.txt").has_value());
  EXPECT_EQ(catalog.document_count(), 1);
  EXPECT_EQ(catalog.chunk_count(), 1);
  // The generation before the last commit held `second`; the one after holds `third`.
  EXPECT_EQ(catalog.chunk_ids_live_at(catalog.change_counter() - 1), second);
  std::vector<int64_t> gone, added;
  catalog.chunk_changes_since(catalog.change_counter() - 1, gone, added);
  EXPECT_EQ(gone, second);
  EXPECT_EQ(added, third);

  // Purged once no kept generation reflects a counter before the removal.
  EXPECT_EQ(catalog.purge_removed(catalog.change_counter() - 1), 2);  // the first replacement's two chunks
  EXPECT_FALSE(catalog.chunk(first[0]).has_value());
  EXPECT_TRUE(catalog.chunk(second[0]).has_value());
  EXPECT_EQ(catalog.purge_removed(catalog.change_counter()), 1);
  EXPECT_FALSE(catalog.chunk(second[0]).has_value());
  EXPECT_FALSE(catalog.document(doc).has_value());
  EXPECT_EQ(catalog.chunk_count(), 1);
}

// Lookups reuse their prepared statements; each must end its read when it returns, or the reader would
// stay on the snapshot of that lookup and never see what a writer commits later (and hold back the writer's
// WAL checkpoints meanwhile). Each round: one kind of lookup, a commit, then the other kinds must see it.
TEST(Catalog, AReadersReusedLookupsSeeLaterCommits) {
  test::TempDir dir;
  const std::string path = dir / "catalog.db";
  Catalog writer(path, Catalog::Mode::kWrite);
  Catalog reader(path, Catalog::Mode::kRead);
  std::vector<int64_t> removed;
  struct Added {
    int64_t doc = 0, chunk = 0;
    std::string path;
  };
  auto add = [&](int i) {
    Added a;
    a.path = "/r/" + std::to_string(i) + ".txt";
    writer.begin();
    a.doc = writer.put_document(make_doc(a.path));
    a.chunk = writer.replace_chunks(a.doc, {make_chunk(0, "text " + std::to_string(i))}, removed).at(0);
    writer.commit();
    return a;
  };
  const std::vector<std::function<bool(const Added&)>> lookups = {
      [&](const Added& a) {
        auto d = reader.document(a.doc);
        return d.has_value() && d->acl == std::vector<std::string>{"group:eng", "user:ann"};
      },
      [&](const Added& a) { return reader.document_by_path(a.path).has_value(); },
      [&](const Added& a) { return reader.chunk(a.chunk).has_value(); },
  };
  Added last = add(0);
  for (size_t first = 0; first < lookups.size(); ++first) {
    SCOPED_TRACE(testing::Message() << "after lookup " << first);
    ASSERT_TRUE(lookups[first](last));
    last = add(static_cast<int>(first) + 1);
    for (size_t other = 0; other < lookups.size(); ++other) {
      if (other != first) {
        EXPECT_TRUE(lookups[other](last)) << "lookup " << other;
      }
    }
  }
}

TEST(Catalog, ARemovedPathComesBackUnderItsOldRow) {
  test::TempDir dir;
  Catalog catalog(dir / "catalog.db", Catalog::Mode::kWrite);
  std::vector<int64_t> removed;
  catalog.begin();
  int64_t doc = catalog.put_document(make_doc("/r/a.txt"));
  catalog.commit();
  catalog.begin();
  catalog.remove_document(doc, removed);
  catalog.commit();
  catalog.begin();
  EXPECT_EQ(catalog.put_document(make_doc("/r/a.txt")), doc);  // UNIQUE(path) holds
  catalog.commit();
  EXPECT_EQ(catalog.document(doc)->removed_change, 0);
  EXPECT_EQ(catalog.document_count(), 1);
}

TEST(Catalog, RemovingADocumentCascadesToChunksAndAcl) {
  test::TempDir dir;
  Catalog catalog(dir / "catalog.db", Catalog::Mode::kWrite);
  catalog.begin();
  int64_t doc = catalog.put_document(make_doc("/r/a.txt"));
  std::vector<int64_t> removed;
  auto ids = catalog.replace_chunks(doc, {make_chunk(0, "x"), make_chunk(1, "y")}, removed);
  catalog.remove_document(doc, removed);
  catalog.commit();
  EXPECT_EQ(removed, ids);
  EXPECT_EQ(catalog.chunk_count(), 0);
  EXPECT_EQ(catalog.document_count(), 0);
  EXPECT_TRUE(catalog.chunks_of(doc).empty());
}

TEST(Catalog, DocumentsUnderMatchesWholePathComponentsOnly) {
  test::TempDir dir;
  Catalog catalog(dir / "catalog.db", Catalog::Mode::kWrite);
  catalog.begin();
  for (const char* path : {"/r/a", "/r/a/x.txt", "/r/a/sub/y.txt", "/r/ab.txt", "/r/a0.txt", "/r/b/z.txt"})
    catalog.put_document(make_doc(path));
  catalog.commit();
  struct Case {
    std::string root;
    std::vector<std::string> expected;
  } cases[] = {
      {"/r/a", {"/r/a", "/r/a/sub/y.txt", "/r/a/x.txt"}},
      {"/r/a/", {"/r/a", "/r/a/sub/y.txt", "/r/a/x.txt"}},
      {"/r/ab.txt", {"/r/ab.txt"}},
      {"/r/b", {"/r/b/z.txt"}},
      {"/q", {}},
  };
  for (const auto& c : cases) {
    std::vector<std::string> got;
    for (const auto& d : catalog.documents_under(c.root)) got.push_back(d.path);
    EXPECT_EQ(got, c.expected) << c.root;
  }
  EXPECT_EQ(catalog.documents_under("/r/a")[1].acl, (std::vector<std::string>{"group:eng", "user:ann"}));
}

TEST(Catalog, ChangeCounterMovesOnlyWhenSomethingChanged) {
  test::TempDir dir;
  Catalog catalog(dir / "catalog.db", Catalog::Mode::kWrite);
  catalog.begin();
  catalog.commit();
  EXPECT_EQ(catalog.change_counter(), 0);
  catalog.begin();
  catalog.add_root("/r");
  catalog.commit();
  EXPECT_EQ(catalog.change_counter(), 1);
  EXPECT_TRUE(catalog.has_root("/r"));
  catalog.begin();
  catalog.put_document(make_doc("/r/a.txt"));
  catalog.rollback();
  EXPECT_EQ(catalog.change_counter(), 1);
  EXPECT_EQ(catalog.document_count(), 0);
}

}  // namespace
}  // namespace rag::index
