// Resource accounting at the end of every test run (issue 6; docs/reliability.md, promise 4). Linked as an
// object into every test binary (tests/CMakeLists.txt), it registers a GoogleTest environment that records,
// before the first test, the process's open file descriptors (/proc/self/fd), threads (/proc/self/task) and
// this process's scratch directories under temp_root() (support.h: temp_prefix()) and the live resource
// counts of common/live-count.h (KV blocks held), and checks them after the last test. Anything left over fails the binary with a message naming it ("fd 7 -> socket:[1234]",
// "3 threads", "/tmp/rag-test-123-AbC123", "kv_blocks 0 -> 4").
//
// Threads: libgomp starts its worker pool at the first parallel region and keeps it for the life of the
// process (a documented process-lifetime singleton; OpenBLAS's pthread pool starts when the library loads,
// before main). The baseline is therefore taken after a warm-up parallel region with the most threads the
// code asks for (omp_get_max_threads(), or kMaxOmpThreads for explicit num_threads clauses), so the pool is
// in it; what remains is a thread a test started and never joined. Threads that are already ending (a
// detached worker returning) get up to two seconds to go.
//
// ctest runs every test case in its own process (gtest_discover_tests), so a leak is pinned to one test.
#include <dirent.h>
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "common/live-count.h"
#include "tests/support/support.h"

namespace rag::test {
namespace {

constexpr int kMaxOmpThreads = 8;

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return names;
  while (dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(dir);
  return names;
}

// fd number -> what it points at. The DIR stream's own fd is in the listing; it is closed by the time the
// caller looks, so it is dropped by checking that each fd is still open afterwards.
std::map<int, std::string> open_fds() {
  std::map<int, std::string> fds;
  for (const std::string& name : list_dir("/proc/self/fd")) {
    const int fd = std::stoi(name);
    char target[512];
    const ssize_t n = readlink(("/proc/self/fd/" + name).c_str(), target, sizeof target - 1);
    if (n < 0) continue;  // the listing's own fd, already closed
    fds[fd] = std::string(target, static_cast<size_t>(n));
  }
  return fds;
}

int thread_count() { return static_cast<int>(list_dir("/proc/self/task").size()); }

std::set<std::string> scratch_dirs() {
  std::set<std::string> out;
  const std::string prefix = temp_prefix();
  for (const std::string& name : list_dir(temp_root()))
    if (name.rfind(prefix, 0) == 0) out.insert(temp_root() + "/" + name);
  return out;
}

class ResourceAccounting : public testing::Environment {
 public:
  void SetUp() override {
    // Start the OpenMP pool at its largest, so its threads are in the baseline.
    const int threads = std::max(omp_get_max_threads(), kMaxOmpThreads);
#pragma omp parallel num_threads(threads)
    { (void)omp_get_thread_num(); }
    fds_ = open_fds();
    threads_ = thread_count();
    dirs_ = scratch_dirs();
    counts_ = live_counts();
  }

  void TearDown() override {
    run_end_of_run_cleanups();  // process-lifetime fixtures (support.h: at_end_of_run) go first
    std::string leaks;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (thread_count() > threads_ && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (const int now = thread_count(); now > threads_)
      leaks += "  " + std::to_string(now - threads_) + " thread(s) more than at start (" + std::to_string(threads_) + " -> " +
               std::to_string(now) + ")\n";
    for (const auto& [fd, target] : open_fds()) {
      auto it = fds_.find(fd);
      if (it == fds_.end() || it->second != target) leaks += "  fd " + std::to_string(fd) + " -> " + target + "\n";
    }
    for (const std::string& dir : scratch_dirs())
      if (!dirs_.count(dir)) leaks += "  scratch directory " + dir + " (a TempDir never destroyed)\n";
    for (const auto& [name, value] : live_counts()) {
      const int64_t start = counts_.count(name) ? counts_.at(name) : 0;
      if (value != start)
        leaks += "  " + name + " " + std::to_string(start) + " -> " + std::to_string(value) + " (held, never given back)\n";
    }
    if (!leaks.empty()) ADD_FAILURE() << "resources left after the last test:\n" << leaks;
  }

 private:
  std::map<int, std::string> fds_;
  int threads_ = 0;
  std::set<std::string> dirs_;
  std::map<std::string, int64_t> counts_;
};

[[maybe_unused]] testing::Environment* const kAccounting = testing::AddGlobalTestEnvironment(new ResourceAccounting);

}  // namespace
}  // namespace rag::test
