#include "common/fault.h"

#include <mutex>
#include <string>

#include "common/error.h"

namespace rag::fault {

namespace detail {
std::atomic<bool> armed{false};
}  // namespace detail

namespace {

// Hits are counted under a mutex: only a test arms a point, so the slow path is never on a production path.
std::mutex mutex;
std::string armed_point;
int64_t target = 0;
int64_t count = 0;
bool fired = false;

}  // namespace

void detail::hit_armed(std::string_view point) {
  int64_t n = 0;
  {
    std::lock_guard lock(mutex);
    if (!armed.load(std::memory_order_relaxed) || point != armed_point) return;
    n = ++count;
    if (n != target) return;
    fired = true;
    armed.store(false, std::memory_order_relaxed);
  }
  fail(Errc::kInternal, "fault injected at {} (hit {})", point, n);
}

void arm(std::string_view point, int64_t n) {
  RAG_ASSERT(n >= 1);
  std::lock_guard lock(mutex);
  armed_point = point;
  target = n;
  count = 0;
  fired = false;
  detail::armed.store(true, std::memory_order_relaxed);
}

bool disarm() {
  std::lock_guard lock(mutex);
  detail::armed.store(false, std::memory_order_relaxed);
  return fired;
}

int64_t hits() {
  std::lock_guard lock(mutex);
  return count;
}

}  // namespace rag::fault
