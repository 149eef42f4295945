// The injector the fault loops rely on: it sees the calls SQLite, Xapian and libstdc++ make (a loop over an
// injector that misses them would pass while testing nothing), fails exactly the Nth, and leaves every other
// file alone.
#include "tests/faults-io/fault-injection.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>

#include "common/error.h"
#include "index/index.h"
#include "tests/support/support.h"

namespace rag::test::faults {
namespace {

TEST(FaultInjection, FailsTheNthWriteUnderTheFolderOnlyWithEnospc) {
  TempDir dir, other;
  int in = ::open((dir / "f").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  int out = ::open((other / "f").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  {
    ArmedFault fault(dir.path(), FaultKind::kWrite, 3);
    EXPECT_EQ(::write(in, "a", 1), 1);
    EXPECT_EQ(::pwrite(in, "A", 1, 0), 1);
    EXPECT_EQ(::write(out, "c", 1), 1);  // another folder: not counted
    EXPECT_EQ(::fsync(in), 0);           // another kind: not counted
    EXPECT_FALSE(fault.fired());
    errno = 0;
    EXPECT_EQ(::write(in, "d", 1), -1);
    EXPECT_EQ(errno, ENOSPC);
    EXPECT_TRUE(fault.fired());
    char* real = ::realpath((dir / "f").c_str(), nullptr);
    ASSERT_NE(real, nullptr);
    EXPECT_EQ(fault.failed_path(), std::string(real));
    ::free(real);
    EXPECT_EQ(::write(in, "e", 1), 1);  // only the Nth
    EXPECT_EQ(fault.calls(), 4);
  }
  EXPECT_EQ(::write(in, "f", 1), 1);  // disarmed
  ::close(in);
  ::close(out);
  EXPECT_EQ(read_file(dir / "f"), "Aef");  // the failed write wrote nothing
}

TEST(FaultInjection, FailsTheNthFsyncOrFdatasyncWithEio) {
  TempDir dir;
  int fd = ::open((dir / "f").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  {
    ArmedFault fault(dir.path(), FaultKind::kSync, 2);
    EXPECT_EQ(::fdatasync(fd), 0);
    errno = 0;
    EXPECT_EQ(::fsync(fd), -1);
    EXPECT_EQ(errno, EIO);
    EXPECT_EQ(fault.calls(), 2);
  }
  ::close(fd);
}

// The libraries' own calls reach the injector: libstdc++'s file streams, stdio streams, and SQLite and
// Xapian through a whole ingest (each writes and syncs files of its own under the data dir).
TEST(FaultInjection, SeesTheCallsOfLibstdcxxSqliteAndXapian) {
  TempDir dir;
  {
    ArmedFault fault(dir.path(), FaultKind::kWrite, 0);
    std::ofstream(dir / "stream") << "bytes";
    EXPECT_EQ(fault.calls(), 1);
  }
  {
    // A stdio stream's buffered bytes reach the file at fclose: that write fails, and fclose says so.
    ArmedFault fault(dir.path(), FaultKind::kWrite, 1);
    FILE* file = std::fopen((dir / "stdio").c_str(), "wb");
    ASSERT_NE(file, nullptr);
    EXPECT_EQ(std::fwrite("bytes", 1, 5, file), 5u);
    EXPECT_FALSE(fault.fired());
    EXPECT_NE(std::fclose(file), 0);
    EXPECT_TRUE(fault.fired());
  }
  EXPECT_EQ(read_file(dir / "stdio"), "");
  write_file(dir / "docs/a.txt", "some words to index");
  index::IngestOptions options;
  options.roots = {dir / "docs"};
  options.threads = 1;
  // Fail the first write of each file in turn: a catalog write names catalog.db, a Xapian one the keyword
  // index, so both libraries' writes must be among those the injector sees.
  std::set<std::string> failed_in;
  for (int64_t n = 1;; ++n) {
    std::string data = dir / ("data" + std::to_string(n));
    ::mkdir(data.c_str(), 0755);
    ArmedFault fault(data, FaultKind::kWrite, n);
    try {
      index::ingest(data, options);
    } catch (const Error&) {
    }
    if (!fault.fired()) break;
    std::string path = fault.failed_path();
    failed_in.insert(path.find("/catalog.db") != std::string::npos ? "sqlite"
                     : path.find("/xapian/") != std::string::npos ? "xapian"
                                                                  : "other");
  }
  EXPECT_TRUE(failed_in.count("sqlite"));
  EXPECT_TRUE(failed_in.count("xapian"));
}

}  // namespace
}  // namespace rag::test::faults
