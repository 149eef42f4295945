// The data dir's layout and its two small files: CURRENT (the live generation) and write.lock.
//
// Invariants:
//  1. CURRENT is only ever replaced whole: written to CURRENT.tmp, fsynced, renamed over CURRENT, and the
//     directory fsynced, so after a crash it names either the old or the new generation, never garbage.
//  2. A generation named by CURRENT exists on disk (it is created before it is published).
//  3. Only the holder of the flock on write.lock writes catalog.db, CURRENT or gen/*; readers take no lock.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "index/index.h"

namespace rag::index {
namespace {

constexpr int64_t kMaxGeneration = int64_t{1} << 40;

void write_all(int fd, const std::string& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(Errc::kIo, "{}: cannot write: {}", path, std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail(Errc::kIo, "{}: cannot open folder to fsync: {}", dir, std::strerror(errno));
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (rc != 0) fail(Errc::kIo, "{}: fsync failed: {}", dir, std::strerror(saved));
}

}  // namespace

std::string catalog_path(const std::string& data_dir) { return data_dir + "/catalog.db"; }

std::string generation_path(const std::string& data_dir, int64_t gen) {
  return data_dir + "/gen/" + std::to_string(gen);
}

std::string keyword_path(const std::string& data_dir, int64_t gen) { return generation_path(data_dir, gen) + "/xapian"; }

int64_t current_generation(const std::string& data_dir) {
  std::string path = data_dir + "/CURRENT";
  std::ifstream in(path, std::ios::binary);
  if (!in) return 0;
  char buffer[64];
  in.read(buffer, sizeof buffer);
  std::string_view text(buffer, static_cast<size_t>(in.gcount()));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  int64_t gen = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), gen);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || gen < 1 || gen > kMaxGeneration)
    fail(Errc::kCorrupt, "{}: expected a generation number, found '{}'; restore it or run rag rebuild", path,
         std::string(text.substr(0, 20)));
  return gen;
}

void publish_generation(const std::string& data_dir, int64_t gen) {
  RAG_ASSERT(gen >= 1 && gen <= kMaxGeneration);
  std::string tmp = data_dir + "/CURRENT.tmp";
  std::string path = data_dir + "/CURRENT";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(Errc::kIo, "{}: cannot create: {}", tmp, std::strerror(errno));
  try {
    write_all(fd, std::to_string(gen) + "\n", tmp);
    if (::fsync(fd) != 0) fail(Errc::kIo, "{}: fsync failed: {}", tmp, std::strerror(errno));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    fail(Errc::kIo, "{}: cannot rename to {}: {}", tmp, path, std::strerror(errno));
  fsync_dir(data_dir);
}

WriteLock::WriteLock(const std::string& data_dir, bool wait) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) fail(Errc::kIo, "{}: cannot create data folder: {}", data_dir, ec.message());
  std::string path = data_dir + "/write.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(Errc::kIo, "{}: cannot open: {}", path, std::strerror(errno));
  int rc;
  while ((rc = ::flock(fd_, LOCK_EX | (wait ? 0 : LOCK_NB))) != 0 && errno == EINTR) {
  }
  if (rc != 0) {
    int saved = errno;
    char buffer[32] = {};
    ssize_t n = ::pread(fd_, buffer, sizeof buffer - 1, 0);
    ::close(fd_);
    fd_ = -1;
    if (saved == EWOULDBLOCK) {
      std::string holder = n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "?";
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      fail(Errc::kBusy, "{}: locked by pid {} (another writer, rag ingest or rag rebuild, is running; retry later "
           "or pass --wait)", path,
           holder.empty() ? "?" : holder);
    }
    fail(Errc::kIo, "{}: cannot lock: {}", path, std::strerror(saved));
  }
  // The pid is informational (for the "locked by" message); the flock is what excludes.
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    int saved = errno;
    ::close(fd_);
    fd_ = -1;
    fail(Errc::kIo, "{}: cannot record the pid: {}", path, std::strerror(saved));
  }
}

WriteLock::~WriteLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
}

}  // namespace rag::index
