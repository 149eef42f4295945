#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "tests/ingest/helpers.h"
#include "tests/support/support.h"

namespace rag::ingest {
namespace {

using test::expect_error;
namespace fs = std::filesystem;

class WalkTest : public testing::Test {
 protected:
  void file(const std::string& relative, const std::string& content = "text") {
    rag::test::write_file(dir_ / relative, content);
  }
  std::vector<std::string> relative_paths(const std::vector<FileEntry>& entries) const {
    std::vector<std::string> out;
    for (const FileEntry& e : entries) out.push_back(e.path.substr(dir_.path().size() + 1));
    return out;
  }
  const FileEntry& entry(const std::vector<FileEntry>& entries, const std::string& relative) const {
    for (const FileEntry& e : entries)
      if (e.path == dir_ / relative) return e;
    throw std::runtime_error("no entry " + relative);
  }
  rag::test::TempDir dir_;
};

TEST_F(WalkTest, SortedRecursiveAndHiddenSkipped) {
  file("b.md");
  file("a.txt", "12345");
  file("a-c/x.txt");
  file("a/z.txt");
  file(".hidden.txt");
  file(".git/config");
  file("sub/.secret/inner.txt");
  file("sub/deep/more/file.html");
  std::vector<FileEntry> entries = walk({dir_.path()});
  EXPECT_EQ(relative_paths(entries),
            (std::vector<std::string>{"a-c/x.txt", "a.txt", "a/z.txt", "b.md", "sub/deep/more/file.html"}));
  const FileEntry& a = entry(entries, "a.txt");
  EXPECT_EQ(a.size, 5);
  EXPECT_TRUE(a.error.empty());
  struct stat st;
  ASSERT_EQ(stat(a.path.c_str(), &st), 0);
  EXPECT_EQ(a.mtime_ns, int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec);
}

TEST_F(WalkTest, RootMayBeAFileAndSeveralRootsMerge) {
  file("one/x.txt");
  file("two/y.txt");
  file("two/.ragacl", "group:two\n");
  std::vector<FileEntry> entries = walk({dir_ / "two/y.txt", dir_ / "one"});
  EXPECT_EQ(relative_paths(entries), (std::vector<std::string>{"one/x.txt", "two/y.txt"}));
  EXPECT_EQ(entry(entries, "two/y.txt").acl, (std::vector<std::string>{"group:two"}));
}

TEST_F(WalkTest, MissingRootThrows) {
  expect_error([&] { walk({dir_ / "absent"}); }, Errc::kNotFound, "absent");
}

TEST_F(WalkTest, SymlinkLoopTerminatesAndIsReported) {
  file("docs/a.txt");
  fs::create_directory_symlink(dir_ / "docs", dir_ / "docs/loop");
  fs::create_directory_symlink("..", dir_ / "docs/up");
  std::vector<FileEntry> entries = walk({dir_.path()});
  EXPECT_EQ(relative_paths(entries), (std::vector<std::string>{"docs/a.txt", "docs/loop", "docs/up"}));
  EXPECT_NE(entry(entries, "docs/loop").error.find("symlink loop"), std::string::npos);
  EXPECT_NE(entry(entries, "docs/up").error.find("symlink loop"), std::string::npos);
}

TEST_F(WalkTest, SymlinksFollowedOrSkipped) {
  file("real/a.txt");
  file("other/b.txt");
  fs::create_directory_symlink(dir_ / "other", dir_ / "real/link");
  fs::create_symlink(dir_ / "other/b.txt", dir_ / "real/file-link.txt");
  EXPECT_EQ(relative_paths(walk({dir_ / "real"})).size(), 3u);
  std::vector<FileEntry> no_follow = walk({dir_ / "real"}, {.follow_symlinks = false});
  ASSERT_EQ(no_follow.size(), 1u);
  EXPECT_EQ(no_follow[0].path, dir_ / "real/a.txt");
}

TEST_F(WalkTest, DanglingSymlinkIsAnErrorEntry) {
  file("a.txt");
  fs::create_symlink(dir_ / "gone.txt", dir_ / "dangling.txt");
  std::vector<FileEntry> entries = walk({dir_.path()});
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_NE(entry(entries, "dangling.txt").error.find("dangling symlink"), std::string::npos);
  EXPECT_TRUE(entry(entries, "a.txt").error.empty());
}

TEST_F(WalkTest, UnreadableFileAndFolderAreErrorEntries) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  file("locked.txt");
  file("closed/inner.txt");
  fs::permissions(dir_ / "locked.txt", fs::perms::none);
  fs::permissions(dir_ / "closed", fs::perms::none);
  std::vector<FileEntry> entries = walk({dir_.path()});
  EXPECT_NE(entry(entries, "locked.txt").error.find("cannot open"), std::string::npos);
  EXPECT_NE(entry(entries, "closed").error.find("cannot list folder"), std::string::npos);
}

TEST_F(WalkTest, AclInheritedAndReplaced) {
  file("public.txt");
  file("hr/.ragacl", "# HR only\ngroup:hr\n\nuser:ann  \n  group:hr\nbogus line\nuser:\ngroup:has space\n");
  file("hr/policy.md");
  file("hr/reviews/2024.md");
  file("hr/payroll/.ragacl", "user:carol\r\n");
  file("hr/payroll/salaries.txt");
  file("hr/payroll/archive/old.txt");
  file("eng/.ragacl", "# nobody listed: replaces the parent's list with none\n");
  file("eng/notes.txt");
  std::vector<FileEntry> entries = walk({dir_.path()});
  using V = std::vector<std::string>;
  EXPECT_EQ(entry(entries, "public.txt").acl, V{});
  EXPECT_EQ(entry(entries, "hr/policy.md").acl, (V{"group:hr", "user:ann"}));
  EXPECT_EQ(entry(entries, "hr/reviews/2024.md").acl, (V{"group:hr", "user:ann"}));
  EXPECT_EQ(entry(entries, "hr/payroll/salaries.txt").acl, V{"user:carol"});
  EXPECT_EQ(entry(entries, "hr/payroll/archive/old.txt").acl, V{"user:carol"});
  EXPECT_EQ(entry(entries, "eng/notes.txt").acl, V{});
  for (const FileEntry& e : entries) EXPECT_TRUE(e.error.empty()) << e.path << ": " << e.error;
}

TEST_F(WalkTest, RootInheritsNearestAclAbove) {
  file("hr/.ragacl", "group:hr\n");
  file("hr/reviews/2024.md");
  file("hr/payroll/.ragacl", "user:carol\n");
  file("hr/payroll/archive/old.txt");
  using V = std::vector<std::string>;
  std::vector<FileEntry> sub = walk({dir_ / "hr/reviews"});
  ASSERT_EQ(sub.size(), 1u);
  EXPECT_EQ(sub[0].acl, V{"group:hr"});
  std::vector<FileEntry> single = walk({dir_ / "hr/payroll/archive/old.txt"});
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].acl, V{"user:carol"});
  // Overlapping roots list a file once.
  EXPECT_EQ(walk({dir_ / "hr", dir_ / "hr/reviews", dir_ / "hr/reviews/2024.md"}).size(), 2u);
}

TEST_F(WalkTest, AclThatIsNotAFileFailsClosed) {
  file("team/doc.txt");
  fs::create_directories(dir_ / "team/.ragacl");
  std::vector<FileEntry> entries = walk({dir_.path()});
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_NE(entries[0].error.find(".ragacl"), std::string::npos);
  EXPECT_TRUE(entries[0].acl.empty());
}

TEST_F(WalkTest, SpecialFilesAreSkipped) {
  // Reading a FIFO would block the ingest forever.
  file("a.txt");
  ASSERT_EQ(mkfifo((dir_ / "pipe").c_str(), 0600), 0);
  EXPECT_EQ(relative_paths(walk({dir_.path()})), std::vector<std::string>{"a.txt"});
}

}  // namespace
}  // namespace rag::ingest
