// Shared by the libFuzzer targets in tests/fuzz/.
//
// What counts as a finding: a crash, a sanitizer report, a libFuzzer timeout or out-of-memory, or any
// exception other than rag::Error escaping a target (std::terminate aborts). rag::Error is the readers'
// documented answer to bad input, so targets catch exactly that.
#pragma once

#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace rag::fuzz {

// Readers log warnings about odd input (an unknown charset); at thousands of inputs a second that is noise.
inline const bool kQuiet = (spdlog::set_level(spdlog::level::off), true);

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A file in memory whose path readers can open() and mmap(): the readers under test take paths (GGUF maps
// its file, poppler loads one), and a memfd keeps a million iterations off the disk.
class MemFile {
 public:
  explicit MemFile(const char* name) : fd_(memfd_create(name, MFD_CLOEXEC)) {
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  // Replaces the contents; returns the path to open.
  const std::string& write(const uint8_t* data, size_t size) {
    if (ftruncate(fd_, 0) != 0 || (size > 0 && pwrite(fd_, data, size, 0) != static_cast<ssize_t>(size))) {
      std::perror("memfd write");
      std::abort();
    }
    return path_;
  }
  int fd() const { return fd_; }

 private:
  int fd_;
  std::string path_;
};

// An invariant of the code under test failed on this input: report it as a crash with the reason.
[[noreturn]] inline void finding(const char* what) {
  std::fprintf(stderr, "fuzz finding: %s\n", what);
  std::abort();
}

}  // namespace rag::fuzz
