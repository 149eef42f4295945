// Helpers shared by the test suites: scratch directories, files, and running the `rag` binary.
#pragma once

#include <string>
#include <vector>

namespace rag::test {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
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
