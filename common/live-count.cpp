#include "common/live-count.h"

#include <memory>
#include <mutex>

namespace rag {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, std::unique_ptr<LiveCount>, std::less<>> counts;
};

// Never destroyed: counters may be touched by static destructors of other files after main returns.
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

}  // namespace

LiveCount& live_count(std::string_view name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.counts.find(name);
  if (it == r.counts.end()) it = r.counts.emplace(std::string(name), std::make_unique<LiveCount>()).first;
  return *it->second;
}

std::map<std::string, int64_t> live_counts() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::map<std::string, int64_t> out;
  for (const auto& [name, count] : r.counts) out[name] = count->value();
  return out;
}

}  // namespace rag
