// Process-wide counts of resources held, for the end-of-run accounting of the test binaries
// (tests/support/resource-accounting.cpp): each count must be back to its starting value after the last
// test, or something was never given back. The owner of a resource adds when it hands one out and
// subtracts when it gets it back (generate/block-pool.cpp: "kv_blocks", blocks with a reference).
//
// A counter is a named process-lifetime atomic: `static LiveCount& held = live_count("kv_blocks");` once,
// then held.add(1) / held.add(-1), one relaxed atomic add each.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace rag {

class LiveCount {
 public:
  void add(int64_t delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// The counter named `name`, created at 0 on first use; the reference stays valid for the process's life.
LiveCount& live_count(std::string_view name);

// Every counter's current value, by name.
std::map<std::string, int64_t> live_counts();

}  // namespace rag
