// See fault-injection.h. State is plain atomics and fixed buffers: the interposed write and sync calls run on
// any thread (Xapian's, SQLite's, spdlog's) and must not allocate or lock.
#include "tests/faults-io/fault-injection.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
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

// A stdio stream opened for writing on a file under the armed folder is a fopencookie() stream over a plain
// descriptor: glibc's own streams write with its internal __write, which no interposition reaches, and
// FAISS's write_index writes through one. The cookie is the descriptor.
ssize_t cookie_write(void* cookie, const char* buffer, size_t size) {
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(cookie));
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd, buffer + done, size - done);  // ours: counted and maybe failed
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

ssize_t cookie_read(void* cookie, char* buffer, size_t size) {
  return ::read(static_cast<int>(reinterpret_cast<intptr_t>(cookie)), buffer, size);
}

int cookie_seek(void* cookie, off64_t* offset, int whence) {
  off64_t at = ::lseek64(static_cast<int>(reinterpret_cast<intptr_t>(cookie)), *offset, whence);
  if (at < 0) return -1;
  *offset = at;
  return 0;
}

int cookie_close(void* cookie) { return ::close(static_cast<int>(reinterpret_cast<intptr_t>(cookie))); }

// open(2) flags for a writing fopen mode ("w", "wb", "a+", "wxe", ...); -1 for a reading one.
int write_flags(const char* mode) {
  int flags;
  bool plus = std::strchr(mode, '+') != nullptr;
  if (mode[0] == 'w') flags = O_CREAT | O_TRUNC;
  else if (mode[0] == 'a') flags = O_CREAT | O_APPEND;
  else return -1;
  flags |= plus ? O_RDWR : O_WRONLY;
  if (std::strchr(mode, 'x')) flags |= O_EXCL;
  return flags | O_CLOEXEC;
}

// True when `path` (which may not exist yet) lies under the armed folder.
bool path_under_folder(const char* path) {
  std::string parent(path);
  size_t slash = parent.rfind('/');
  parent = slash == std::string::npos ? "." : slash == 0 ? "/" : parent.substr(0, slash);
  char* real = ::realpath(parent.c_str(), nullptr);
  if (!real) return false;
  size_t size = std::strlen(real);
  bool under = size >= g_folder_size && std::memcmp(real, g_folder, g_folder_size) == 0 &&
               (size == g_folder_size || real[g_folder_size] == '/');
  ::free(real);
  return under;
}

// libstdc++'s file streams open with fopen but then write with write() on fileno(), which a cookie stream
// lacks; their writes are seen anyway, so their fopen is left alone.
bool called_from_libstdcxx(void* return_address) {
  Dl_info info;
  return ::dladdr(return_address, &info) != 0 && info.dli_fname && std::strstr(info.dli_fname, "libstdc++");
}

// A cookie stream for a writing fopen under the armed folder; nullptr (errno set) when that fails, and
// `handled` false when the call is not ours to handle.
FILE* open_cookie_stream(const char* path, const char* mode, void* caller, bool& handled) {
  handled = false;
  if (!g_armed.load(std::memory_order_acquire) || called_from_libstdcxx(caller)) return nullptr;
  int flags = write_flags(mode);
  if (flags < 0 || !path_under_folder(path)) return nullptr;
  handled = true;
  int fd = ::open(path, flags, 0666);
  if (fd < 0) return nullptr;
  cookie_io_functions_t io{cookie_read, cookie_write, cookie_seek, cookie_close};
  FILE* file = ::fopencookie(reinterpret_cast<void*>(static_cast<intptr_t>(fd)), mode, io);
  if (!file) ::close(fd);
  return file;
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
using rag::test::faults::open_cookie_stream;
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

FILE* fopen(const char* path, const char* mode) {
  static auto real = next_definition<FILE* (*)(const char*, const char*)>("fopen");
  bool handled = false;
  FILE* file = open_cookie_stream(path, mode, __builtin_return_address(0), handled);
  return handled ? file : real(path, mode);
}

FILE* fopen64(const char* path, const char* mode) {
  static auto real = next_definition<FILE* (*)(const char*, const char*)>("fopen64");
  bool handled = false;
  FILE* file = open_cookie_stream(path, mode, __builtin_return_address(0), handled);
  return handled ? file : real(path, mode);
}

}  // extern "C"
