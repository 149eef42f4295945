// Fault points: places in production code where a test can make the Nth pass fail, to check that every
// failure there ends as a typed error, leaves state as it was and never kills the process (issue 6;
// tests/faults-calls/). A point is a name: rag::fault::hit("encoder.embed") at the spot a real failure could
// happen (a model call, an allocation-heavy step, a worker inside an OpenMP region).
//
//   arm("encoder.embed", 3);   // the 3rd hit of that point from now, on any thread, throws rag::Error
//   run_the_operation();
//   bool fired = disarm();     // false: the operation hit the point fewer than 3 times (so it ran whole)
//
// One point is armed at a time, process-wide; after it fires it is disarmed, so a retry succeeds. When
// nothing is armed a hit costs one relaxed atomic load. A hit may throw: call it only where an exception is
// handled (inside an OpenMP region, under common/parallel-error.h's ParallelError).
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

namespace rag::fault {

namespace detail {
extern std::atomic<bool> armed;
void hit_armed(std::string_view point);
}  // namespace detail

// Throws rag::Error (Errc::kInternal, "fault injected at POINT (hit N)") when this is the armed hit.
inline void hit(std::string_view point) {
  if (detail::armed.load(std::memory_order_relaxed)) [[unlikely]]
    detail::hit_armed(point);
}

// Makes the `n`th hit (n >= 1) of `point` from now throw; replaces any armed point.
void arm(std::string_view point, int64_t n);
// Disarms; true when the armed hit happened since arm().
bool disarm();
// Hits of the armed point since arm() (for tests sizing a loop).
int64_t hits();

}  // namespace rag::fault
