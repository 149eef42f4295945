// Helpers shared by the test suites: scratch directories, files, and running the `rag` binary.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace rag::test {

// The folder test scratch directories go under: $TMPDIR, or /tmp.
std::string temp_root();
// The name prefix of this process's TempDirs under temp_root(): "rag-test-<pid>-". The pid lets the resource
// accounting (resource-accounting.cpp) tell this binary's leftovers from those of a binary running beside it.
std::string temp_prefix();

// A fresh directory temp_root()/temp_prefix()XXXXXX, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& relative) const { return path_ + "/" + relative; }

 private:
  std::string path_;
};

// Runs `cleanup` after the last test, before the resource accounting (resource-accounting.cpp) checks for
// leftovers: for fixtures that live for the whole process (a corpus built once for every test of a binary).
void at_end_of_run(std::function<void()> cleanup);
// Runs and forgets the cleanups registered so far, last first. Called by the resource accounting.
void run_end_of_run_cleanups();

// Writes `content` to `path`, creating parent directories.
void write_file(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);

struct RunResult {
  int exit_code = -1;   // the process's exit status, or 128 + signal when killed
  std::string out;      // stdout
  std::string err;      // stderr
};

// Runs the built `rag` binary with `args` (no shell), capturing its output.
RunResult run_rag(const std::vector<std::string>& args);

// A path under ../shared (read-only fixtures and data).
std::string shared_path(const std::string& relative);

}  // namespace rag::test
