#include "tests/faults-calls/alloc-fault.h"

#include <dlfcn.h>
#include <execinfo.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace rag::test {
namespace {

std::atomic<bool> armed{false};
std::atomic<int64_t> target{0};
std::atomic<int64_t> count{0};
std::atomic<bool> fired{false};
thread_local int exempt = 0;

// Code whose allocations cannot fail cleanly. nlohmann::json 3.11.2: its destructor (json_value::destroy)
// moves the children of an array or object onto a heap stack inside a noexcept destructor (std::terminate),
// and a constructor that fails part-way (an initializer list, citation_json's objects) leaks what it had
// built, as LeakSanitizer shows. An allocation made under one of them is passed over and the next one fails
// instead (RAG_FAULT_TRACE=1 prints where each failure lands). Names are matched in the mangled symbols of
// the call stack (the binary links with -rdynamic so that dladdr sees them).
constexpr const char* kCannotFail[] = {"8nlohmann"};
// Libraries whose allocations are passed over the same way. Xapian 1.4 (Debian 12): a bad_alloc inside
// Enquire::get_mset (e.g. BM25Weight::clone while it builds the postlist tree) leaks the database's open
// tables, three fds per failure, for the life of the process; nothing outside Xapian can release them.
constexpr const char* kLibrariesThatLeak[] = {"libxapian.so"};

bool under_a_function_that_cannot_fail() {
  void* frames[64];
  const int depth = backtrace(frames, 64);  // malloc only, on its first call: never the hook
  for (int i = 0; i < depth; ++i) {
    Dl_info info;
    if (dladdr(frames[i], &info) == 0) continue;
    if (info.dli_fname != nullptr)
      for (const char* library : kLibrariesThatLeak)
        if (std::strstr(info.dli_fname, library) != nullptr) return true;
    if (info.dli_sname == nullptr) continue;
    for (const char* name : kCannotFail)
      if (std::strstr(info.dli_sname, name) != nullptr) return true;
  }
  return false;
}

// True when this allocation is the armed one (it then disarms).
bool should_fail() {
  if (!armed.load(std::memory_order_relaxed) || exempt > 0) return false;
  const int64_t n = count.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n < target.load(std::memory_order_relaxed)) return false;
  // From the Nth on, the first allocation (on any thread) that may fail does.
  if (under_a_function_that_cannot_fail()) return false;
  bool expected = true;
  if (!armed.compare_exchange_strong(expected, false)) return false;
  fired.store(true);
  if (std::getenv("RAG_FAULT_TRACE") != nullptr) {  // where each failure lands, for debugging a loop
    void* frames[64];
    const int depth = backtrace(frames, 64);
    std::fprintf(stderr, "allocation %lld fails at:\n", static_cast<long long>(n));
    backtrace_symbols_fd(frames, depth, 2);
  }
  return true;
}

void* allocate(std::size_t size) {
  if (should_fail()) throw std::bad_alloc();
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* allocate_aligned(std::size_t size, std::align_val_t align) {
  if (should_fail()) throw std::bad_alloc();
  const auto a = static_cast<std::size_t>(align);
  void* p = std::aligned_alloc(a, (size + a - 1) / a * a);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void arm_allocation_failure(int64_t n) {
  armed.store(false);
  count.store(0);
  target.store(n);
  fired.store(false);
  armed.store(true);
}

bool disarm_allocation_failure() {
  armed.store(false);
  return fired.load();
}

int64_t allocations_since_arm() { return count.load(); }

ExemptThisThread::ExemptThisThread() { ++exempt; }
ExemptThisThread::~ExemptThisThread() { --exempt; }

}  // namespace rag::test

void* operator new(std::size_t size) { return rag::test::allocate(size); }
void* operator new[](std::size_t size) { return rag::test::allocate(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return rag::test::allocate(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return rag::test::allocate(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t size, std::align_val_t align) { return rag::test::allocate_aligned(size, align); }
void* operator new[](std::size_t size, std::align_val_t align) { return rag::test::allocate_aligned(size, align); }
void* operator new(std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  try {
    return rag::test::allocate_aligned(size, align);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  try {
    return rag::test::allocate_aligned(size, align);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
