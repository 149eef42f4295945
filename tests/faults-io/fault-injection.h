// Fails the Nth write or fsync of a test process on files under one folder, for fault loops (SQLite's
// "I/O error" loops): run an operation with call 1 failing, then call 2, ... until a run finishes before
// reaching N, and check after each failure that nothing broke.
//
// How: fault-injection.cpp defines write, pwrite, pwrite64, writev, fsync and fdatasync in the test binary
// itself. The executable comes first in symbol lookup, so SQLite, Xapian, libstdc++ and our own index code
// call these; each forwards to the next definition (dlsym(RTLD_NEXT): ASan's interceptor under ASan, else
// libc). Only calls on descriptors whose /proc/self/fd link lies under the armed folder count, so gtest and
// spdlog output never count or fail. While armed, syncs under the folder that do not fail return success
// without syncing (these loops test error handling, not durability; that is the kill -9 tests' job).
//
// glibc's stdio streams write with its internal __write, which no symbol lookup reaches; so while armed, fopen
// and fopen64 for writing under the folder return a fopencookie() stream over a descriptor whose writes go
// through write() above (FAISS's write_index writes vectors.faiss that way). Not covered: mmap'ed writes,
// streams from fdopen or freopen.
#pragma once

#include <cstdint>
#include <string>

namespace rag::test::faults {

enum class FaultKind {
  kWrite,  // write, pwrite, pwrite64, writev: fail with ENOSPC (a full disk, the common way a write fails)
  kSync,   // fsync, fdatasync: fail with EIO (writeback lost, how a failing disk shows up at sync)
};

const char* fault_kind_name(FaultKind kind);  // "write", "fsync"

// Counts calls of `kind` on files under `folder` (an existing folder; compared by its real path) from now
// on, and fails the `fail_at`-th of them (1-based); 0 only counts (and skips syncs). Disarmed on
// destruction. One at a time.
class ArmedFault {
 public:
  ArmedFault(const std::string& folder, FaultKind kind, int64_t fail_at);
  ~ArmedFault();
  ArmedFault(const ArmedFault&) = delete;
  ArmedFault& operator=(const ArmedFault&) = delete;

  int64_t calls() const;            // matching calls so far, the failed one included
  bool fired() const;               // the fail_at-th call happened (and failed)
  std::string failed_path() const;  // the file the failed call was on; empty until fired()
};

}  // namespace rag::test::faults
