// The PDF worker's lifetime and isolation (ingest/parse-pdf.cpp, top comment): a thread's worker is a
// single-threaded process that inherits no descriptor of ours and ends with its thread; nothing is left
// behind by threads that parsed PDFs; a worker that dies is replaced; the extraction child's crash and CPU
// limit are reported as before.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "tests/ingest/helpers.h"
#include "tests/support/pdf-writer.h"
#include "tests/support/support.h"

namespace rag::ingest {
namespace {

using test::expect_error;

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = opendir(path.c_str());
  if (!dir) return names;
  while (dirent* e = readdir(dir))
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  closedir(dir);
  return names;
}

struct ProcStat {
  pid_t ppid = -1;
  std::string comm;
  char state = '?';
};

// From /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
bool proc_stat(pid_t pid, ProcStat& out) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  size_t open = line.find('('), close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos) return false;
  out.comm = line.substr(open + 1, close - open - 1);
  std::istringstream rest(line.substr(close + 1));
  rest >> out.state >> out.ppid;
  return bool(rest);
}

// Live (not zombie) children of `parent` named `comm`.
std::set<pid_t> children(pid_t parent, const std::string& comm) {
  std::set<pid_t> out;
  for (const std::string& name : list_dir("/proc")) {
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    ProcStat st;
    pid_t pid = std::stoi(name);
    if (proc_stat(pid, st) && st.ppid == parent && st.comm == comm && st.state != 'Z') out.insert(pid);
  }
  return out;
}

std::set<pid_t> workers() {
  return children(getpid(), "rag-pdf-worker");
}

std::set<int> open_fds(pid_t pid) {
  std::set<int> fds;
  for (const std::string& name : list_dir("/proc/" + std::to_string(pid) + "/fd"))
    fds.insert(std::stoi(name));
  return fds;
}

// Whether `pid` is gone as our child (reaped; or, should the pid be reused already, someone else's).
bool gone(pid_t pid) {
  ProcStat st;
  return !proc_stat(pid, st) || st.ppid != getpid();
}

// Waits up to 10 s for `pred`.
template <typename Pred>
bool eventually(Pred&& pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

class PdfWorkerTest : public testing::Test {
 protected:
  std::string sample(const std::string& name, const std::string& title) {
    std::string path = dir_ / name;
    rag::test::write_pdf(path, {"Text of " + title + ".", "Second page."}, title);
    return path;
  }
  // One page whose text takes poppler long enough to extract that a test can find and signal the child.
  std::string slow_pdf() {
    std::string path = dir_ / "slow.pdf";
    std::string content;
    for (int i = 0; i < 400000; ++i)
      content += "BT /F1 1 Tf " + std::to_string(i % 500) + " 10 Td (w) Tj ET\n";
    std::vector<std::string> objects = {
        "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 600 200] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        "<< /Length " + std::to_string(content.size()) + " >>\nstream\n" + content + "\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"};
    rag::test::write_file(path, rag::test::pdf_from_objects(objects));
    return path;
  }
  rag::test::TempDir dir_;
};

TEST_F(PdfWorkerTest, BelongsToItsThreadAndInheritsNothing) {
  std::string path = sample("a.pdf", "Alpha");
  // A descriptor without FD_CLOEXEC, as careless code elsewhere in the process might leave one.
  int stray = open("/dev/null", O_RDONLY);
  ASSERT_GE(stray, 0);
  std::set<pid_t> before = workers();
  std::atomic<int> stage = 0;
  std::string title;
  std::thread parser([&] {
    title = parse_pdf(path).title;
    stage = 1;
    while (stage != 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (stage != 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::set<pid_t> during = workers();
  std::vector<pid_t> started;
  for (pid_t pid : during)
    if (!before.count(pid)) started.push_back(pid);
  ASSERT_EQ(started.size(), 1u);
  pid_t worker = started[0];
  // Only its socket, stdin, stdout and stderr; one thread; no extraction child between PDFs.
  EXPECT_EQ(open_fds(worker), (std::set<int>{0, 1, 2, 3}));
  EXPECT_EQ(list_dir("/proc/" + std::to_string(worker) + "/task").size(), 1u);
  EXPECT_TRUE(children(worker, "rag-pdf-worker").empty());
  stage = 2;
  parser.join();
  EXPECT_EQ(title, "Alpha");
  // The thread's end stopped and reaped its worker before join() returned.
  EXPECT_TRUE(gone(worker));
  EXPECT_EQ(workers(), before);
  close(stray);
}

TEST_F(PdfWorkerTest, ThreadsLeaveNoDescriptorsOrProcesses) {
  std::vector<std::string> paths;
  for (int i = 0; i < 4; ++i)
    paths.push_back(sample("d" + std::to_string(i) + ".pdf", "D" + std::to_string(i)));
  std::string broken = dir_ / "broken.pdf";
  rag::test::write_file(broken, "%PDF-1.7\n");
  std::set<int> fds_before = open_fds(getpid());
  std::set<pid_t> workers_before = workers();
  std::atomic<int> good = 0, typed_errors = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        if (parse_pdf(paths[(t + round) % paths.size()]).page_count == 2) ++good;
        ParseOptions instant;
        instant.pdf_time_limit_s = 0;
        for (const ParseOptions& options : {ParseOptions(), instant}) {
          try {
            parse_pdf(broken, options);
          } catch (const Error& e) {
            if (e.code() == Errc::kCorrupt || e.code() == Errc::kLimit) ++typed_errors;
          }
        }
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(good, 12);
  EXPECT_EQ(typed_errors, 24);
  EXPECT_EQ(open_fds(getpid()), fds_before);
  EXPECT_EQ(workers(), workers_before);
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), workers_before.empty() ? -1 : 0);  // no zombie left
}

TEST_F(PdfWorkerTest, MainThreadKeepsNoWorker) {
  std::set<int> fds_before = open_fds(getpid());
  EXPECT_EQ(parse_pdf(sample("m.pdf", "Main")).title, "Main");
  EXPECT_EQ(open_fds(getpid()), fds_before);
  EXPECT_TRUE(workers().empty());
}

TEST_F(PdfWorkerTest, KilledWorkerIsReplaced) {
  std::string path = sample("k.pdf", "Kept");
  std::thread parser([&] {
    EXPECT_EQ(parse_pdf(path).title, "Kept");
    std::set<pid_t> mine = workers();
    ASSERT_EQ(mine.size(), 1u);
    pid_t first = *mine.begin();
    kill(first, SIGKILL);
    EXPECT_EQ(parse_pdf(path).title, "Kept");  // the dead worker is reaped and a new one answers
    EXPECT_TRUE(gone(first));
    EXPECT_EQ(workers().size(), 1u);
  });
  parser.join();
  EXPECT_TRUE(workers().empty());
}

// The extraction child is found while it works on slow_pdf() and signalled as a crash or a CPU limit would.
struct ChildSignalCase {
  std::string name;
  int sig;
  Errc code;
  std::string fragment;
};

void PrintTo(const ChildSignalCase& c, std::ostream* os) {
  *os << c.name;
}

class PdfChildSignalTest : public PdfWorkerTest, public testing::WithParamInterface<ChildSignalCase> {};

TEST_P(PdfChildSignalTest, IsReportedWithItsMessage) {
  const ChildSignalCase& c = GetParam();
  std::string path = slow_pdf();
  std::atomic<bool> done = false;
  std::thread parser([&] {
    expect_error([&] { parse_pdf(path); }, c.code, c.fragment);
    done = true;
  });
  pid_t child = -1;
  bool found = eventually([&] {
    if (done) return true;
    for (pid_t worker : workers())
      for (pid_t pid : children(worker, "rag-pdf-worker")) child = pid;
    return child > 0;
  });
  ASSERT_TRUE(found);
  ASSERT_GT(child, 0) << "extraction finished before the test found its child: make slow_pdf() slower";
  kill(child, c.sig);
  parser.join();
}

INSTANTIATE_TEST_SUITE_P(Pdf, PdfChildSignalTest,
                         // Under ASan the child's own SEGV handler reports and aborts: SIGSEGV or SIGABRT.
                         testing::Values(ChildSignalCase{"crash", SIGSEGV, Errc::kCorrupt,
                                                         "PDF extraction crashed (SIG"},
                                         ChildSignalCase{"cpu_limit", SIGXCPU, Errc::kLimit,
                                                         "exceeded its CPU time limit (SIGXCPU)"}),
                         [](const testing::TestParamInfo<ChildSignalCase>& info) { return info.param.name; });

TEST_F(PdfWorkerTest, ForkedCopyOfAHandleStartsItsOwnWorker) {
  // The forked child inherits this thread's handle (a copy of the parent's worker socket) and must not
  // talk to the parent's worker. Run on a thread that keeps a worker, then fork from it.
  std::string path = sample("f.pdf", "Forked");
  std::thread parser([&] {
    ASSERT_EQ(parse_pdf(path).title, "Forked");
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 1;
      try {
        code = parse_pdf(path).title == "Forked" ? 0 : 2;
      } catch (...) {
        code = 3;
      }
      _exit(code);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    EXPECT_EQ(parse_pdf(path).title, "Forked");  // the parent's worker still answers
  });
  parser.join();
}

}  // namespace
}  // namespace rag::ingest
