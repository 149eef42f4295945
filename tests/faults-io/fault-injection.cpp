// See fault-injection.h. State is plain atomics and fixed buffers: the interposed functions run on any
// thread (Xapian's, SQLite's, spdlog's) and must not allocate or lock.
#include "tests/faults-io/fault-injection.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace rag::test::faults {
namespace {

std::atomic<bool> g_armed{false};
std::atomic<int> g_kind{0};
std::atomic<int64_t> g_fail_at{0};
std::atomic<int64_t> g_calls{0};
std::atomic<bool> g_fired{false};
// Written only while disarmed (ArmedFault's constructor), read only while armed.
char g_folder[PATH_MAX];
size_t g_folder_size = 0;
// Written once, by the call that fails, before g_fired is set.
char g_failed_path[PATH_MAX];

enum class Verdict { kForward, kFail, kSkip };

// What to do with a call of `kind` on `fd`; counts it when it is of the armed kind under the folder.
Verdict judge(int fd, FaultKind kind) {
  if (!g_armed.load(std::memory_order_acquire)) return Verdict::kForward;
  char link[48];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[PATH_MAX];
  ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n <= 0) return Verdict::kForward;
  size_t size = static_cast<size_t>(n);
  // The folder itself (fsync of a directory) or anything below it; "x (deleted)" of an unlinked file still
  // starts with its path.
  if (size < g_folder_size || std::memcmp(target, g_folder, g_folder_size) != 0 ||
      (size > g_folder_size && target[g_folder_size] != '/'))
    return Verdict::kForward;
  // A sync under the folder that does not fail returns at once: the loops test what callers do with errors,
  // not durability (the kill -9 tests do), and a real sync costs milliseconds, hundreds of times per loop.
  Verdict pass = kind == FaultKind::kSync ? Verdict::kSkip : Verdict::kForward;
  if (g_kind.load() != static_cast<int>(kind)) return pass;
  int64_t call = g_calls.fetch_add(1) + 1;
  if (call != g_fail_at.load()) return pass;
  std::memcpy(g_failed_path, target, size);
  g_failed_path[size] = '\0';
  g_fired.store(true, std::memory_order_release);
  return Verdict::kFail;
}

// The definition our interposed one hides: ASan's interceptor under ASan, libc's otherwise.
template <typename Fn>
Fn next_definition(const char* name) {
  void* p = ::dlsym(RTLD_NEXT, name);
  if (!p) {
    std::fprintf(stderr, "fault-injection: dlsym(RTLD_NEXT, %s) found nothing\n", name);
    std::abort();
  }
  return reinterpret_cast<Fn>(p);
}

}  // namespace

const char* fault_kind_name(FaultKind kind) { return kind == FaultKind::kWrite ? "write" : "fsync"; }

ArmedFault::ArmedFault(const std::string& folder, FaultKind kind, int64_t fail_at) {
  if (g_armed.load()) throw std::logic_error("fault-injection: already armed");
  char* real = ::realpath(folder.c_str(), nullptr);
  if (!real) throw std::runtime_error("fault-injection: " + folder + ": " + std::strerror(errno));
  size_t size = std::strlen(real);
  if (size >= sizeof g_folder) {
    ::free(real);
    throw std::runtime_error("fault-injection: " + folder + ": path too long");
  }
  std::memcpy(g_folder, real, size + 1);
  ::free(real);
  g_folder_size = size;
  g_kind.store(static_cast<int>(kind));
  g_fail_at.store(fail_at);
  g_calls.store(0);
  g_fired.store(false);
  g_failed_path[0] = '\0';
  g_armed.store(true, std::memory_order_release);
}

ArmedFault::~ArmedFault() { g_armed.store(false, std::memory_order_release); }

int64_t ArmedFault::calls() const { return g_calls.load(); }

bool ArmedFault::fired() const { return g_fired.load(std::memory_order_acquire); }

std::string ArmedFault::failed_path() const { return fired() ? std::string(g_failed_path) : std::string(); }

}  // namespace rag::test::faults

using rag::test::faults::FaultKind;
using rag::test::faults::next_definition;
using rag::test::faults::judge;
using rag::test::faults::Verdict;

extern "C" {

ssize_t write(int fd, const void* buffer, size_t size) {
  static auto real = next_definition<ssize_t (*)(int, const void*, size_t)>("write");
  if (judge(fd, FaultKind::kWrite) == Verdict::kFail) return errno = ENOSPC, -1;
  return real(fd, buffer, size);
}

ssize_t pwrite(int fd, const void* buffer, size_t size, off_t offset) {
  static auto real = next_definition<ssize_t (*)(int, const void*, size_t, off_t)>("pwrite");
  if (judge(fd, FaultKind::kWrite) == Verdict::kFail) return errno = ENOSPC, -1;
  return real(fd, buffer, size, offset);
}

ssize_t pwrite64(int fd, const void* buffer, size_t size, off64_t offset) {
  static auto real = next_definition<ssize_t (*)(int, const void*, size_t, off64_t)>("pwrite64");
  if (judge(fd, FaultKind::kWrite) == Verdict::kFail) return errno = ENOSPC, -1;
  return real(fd, buffer, size, offset);
}

ssize_t writev(int fd, const struct iovec* iov, int count) {
  static auto real = next_definition<ssize_t (*)(int, const struct iovec*, int)>("writev");
  if (judge(fd, FaultKind::kWrite) == Verdict::kFail) return errno = ENOSPC, -1;
  return real(fd, iov, count);
}

int fsync(int fd) {
  static auto real = next_definition<int (*)(int)>("fsync");
  switch (judge(fd, FaultKind::kSync)) {
    case Verdict::kFail: return errno = EIO, -1;
    case Verdict::kSkip: return 0;
    case Verdict::kForward: break;
  }
  return real(fd);
}

int fdatasync(int fd) {
  static auto real = next_definition<int (*)(int)>("fdatasync");
  switch (judge(fd, FaultKind::kSync)) {
    case Verdict::kFail: return errno = EIO, -1;
    case Verdict::kSkip: return 0;
    case Verdict::kForward: break;
  }
  return real(fd);
}

}  // extern "C"
