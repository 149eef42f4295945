// PDF: text extraction runs in a fork()ed child with hard limits, so a PDF that crashes poppler, loops or
// allocates without bound fails alone (STYLE.md, "Facts about our dependencies"). The parent only reads
// and validates the child's records (pdf-extract.h) and enforces the wall clock:
//
//   parent: pipe ─ fork ─ poll(read end, until deadline) ─ [deadline: SIGKILL] ─ waitpid ─ validate
//   child:  setrlimit(AS, CPU) ─ poppler load ─ records to pipe ─ _exit
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "common/log.h"
#include "common/text.h"
#include "ingest/document-builder.h"
#include "ingest/ingest.h"
#include "ingest/pdf-extract.h"

namespace rag::ingest {

namespace {

constexpr size_t kMaxTitleFromTextBytes = 200;
constexpr double kMaxTimeLimitS = 24 * 3600;

// The configured limit made safe to convert: NaN and negatives are 0, infinity and huge values a day.
double time_limit_s(const ParseOptions& options) {
  double limit = options.pdf_time_limit_s;
  return limit >= 0 ? std::min(limit, kMaxTimeLimitS) : 0;
}

struct PdfText {
  std::string title;
  std::vector<std::string> pages;
  uint32_t page_count = 0;
};

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

// The process's current virtual size: the child inherits the parent's whole address space (a server
// with a mapped model may already hold gigabytes), so the limit is put on what extraction adds.
rlim_t current_address_space() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long pages = 0;
  int got = std::fscanf(f, "%lu", &pages);
  std::fclose(f);
  return got == 1 ? static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) : 0;
}

[[noreturn]] void run_child(const std::string& path, int fd, const ParseOptions& options) {
  // poppler and its allocator print to stdout/stderr in places the debug hook does not reach ("Out of
  // memory" before abort); the parent reports one line per failure instead.
  // If the parent ran with standard streams closed, the pipe may sit on 0-2: move it out of the way.
  if (fd <= STDERR_FILENO) fd = fcntl(fd, F_DUPFD, STDERR_FILENO + 1);
  if (fd < 0) _exit(4);
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    dup2(devnull, STDOUT_FILENO);
    dup2(devnull, STDERR_FILENO);
  }
  // Other threads' extraction pipes were inherited by this fork: holding their write ends would keep
  // those parents from seeing end of stream until this child exits. Keep only our own.
  if (fd > STDERR_FILENO + 1) close_range(STDERR_FILENO + 1, static_cast<unsigned>(fd) - 1, 0);
  close_range(static_cast<unsigned>(fd) + 1, ~0u, 0);
#if !defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of shadow address space, so RLIMIT_AS cannot be applied under it;
  // sanitizer builds rely on the CPU and wall-clock limits alone.
  if (options.pdf_memory_limit_bytes > 0) {
    rlim_t limit = current_address_space() + static_cast<rlim_t>(options.pdf_memory_limit_bytes);
    struct rlimit as = {limit, limit};
    setrlimit(RLIMIT_AS, &as);
  }
#endif
  // The child starts with zero CPU time; SIGXCPU at the soft limit, SIGKILL one second later.
  rlim_t cpu = static_cast<rlim_t>(std::ceil(time_limit_s(options))) + 1;
  struct rlimit cpu_limit = {cpu, cpu + 1};
  setrlimit(RLIMIT_CPU, &cpu_limit);
  try {
    extract_pdf_records(path, fd);
  } catch (...) {
    _exit(2);
  }
  _exit(0);
}

uint32_t read_u32(const char* p) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= uint32_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return value;
}

// Validates the child's records (format in pdf-extract.h). Throws the child's error, or kCorrupt for
// a stream that breaks the format. Returns false when the stream ended early (no 'D' or 'E').
bool decode_records(std::string_view data, const std::string& path, PdfText& out) {
  bool have_count = false;
  while (!data.empty()) {
    if (data.size() < 5) return false;
    char tag = data[0];
    uint32_t length = read_u32(data.data() + 1);
    data.remove_prefix(5);
    if (length > data.size()) return false;
    std::string_view payload = data.substr(0, length);
    data.remove_prefix(length);
    switch (tag) {
      case 'N':
        if (have_count || length != 4 || read_u32(payload.data()) > kMaxPdfPages) break;
        out.page_count = read_u32(payload.data());
        have_count = true;
        continue;
      case 'T':
        if (length > kMaxPdfTitleBytes) break;
        out.title = std::string(payload);
        continue;
      case 'G':
        if (!have_count || length > kMaxPdfPageBytes || out.pages.size() >= out.page_count) break;
        out.pages.emplace_back(payload);
        continue;
      case 'E': {
        if (length < 1 || length > kMaxPdfMessageBytes) break;
        auto code = static_cast<Errc>(static_cast<unsigned char>(payload[0]));
        if (code != Errc::kCorrupt && code != Errc::kUnsupported && code != Errc::kLimit)
          code = Errc::kCorrupt;
        std::string message = utf8_repair(payload.substr(1));
        fail(code, "{}: {}", path, message);
      }
      case 'D':
        if (length != 0 || !data.empty() || !have_count || out.pages.size() != out.page_count) break;
        return true;
      default:
        break;
    }
    fail(Errc::kCorrupt, "{}: PDF extraction sent a malformed record (tag {:#04x}, {} bytes)", path,
         static_cast<unsigned char>(tag), length);
  }
  return false;
}

class Pipe {
 public:
  Pipe() {
    if (pipe2(fds_, O_CLOEXEC) != 0)
      fail(Errc::kIo, "cannot create a pipe for PDF extraction: {}", std::strerror(errno));
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  int read_end() const { return fds_[0]; }
  int write_end() const { return fds_[1]; }
  void close_read() {
    if (fds_[0] >= 0) close(fds_[0]);
    fds_[0] = -1;
  }
  void close_write() {
    if (fds_[1] >= 0) close(fds_[1]);
    fds_[1] = -1;
  }

 private:
  int fds_[2] = {-1, -1};
};

PdfText extract(const std::string& path, const ParseOptions& options) {
  using Clock = std::chrono::steady_clock;
  Pipe pipe;
  pid_t pid = fork();
  if (pid < 0)
    fail(Errc::kIo, "{}: cannot start PDF extraction: fork failed: {}", path, std::strerror(errno));
  if (pid == 0) {
    close(pipe.read_end());
    run_child(path, pipe.write_end(), options);
  }
  pipe.close_write();

  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(time_limit_s(options)));
  std::string data;
  bool timed_out = false, too_big = false;
  char buffer[1 << 16];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd p = {pipe.read_end(), POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    ssize_t n = read(pipe.read_end(), buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;  // end of stream: the child finished or died
    if (data.size() + size_t(n) > kMaxPdfTotalBytes + 4096) {
      too_big = true;
      break;
    }
    data.append(buffer, size_t(n));
  }
  pipe.close_read();

  // After end of stream the child should exit at once; it still gets no more than the deadline.
  int status = 0;
  bool reaped = false;
  while (!timed_out && !too_big && !reaped) {
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid)
      reaped = true;
    else if (done < 0 && errno != EINTR)
      fail(Errc::kInternal, "{}: waitpid failed: {}", path, std::strerror(errno));
    else if (Clock::now() >= deadline)
      timed_out = true;
    else
      usleep(1000);
  }
  if (!reaped) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (too_big) fail(Errc::kLimit, "{}: PDF text exceeds {} bytes", path, kMaxPdfTotalBytes);
  if (timed_out)
    fail(Errc::kLimit, "{}: PDF extraction exceeded {} s (raise pdf_time_limit_s, or the file is malformed)",
         path, options.pdf_time_limit_s);

  PdfText text;
  bool complete = decode_records(data, path, text);  // throws the child's own error first
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    if (sig == SIGXCPU || sig == SIGKILL)
      fail(Errc::kLimit, "{}: PDF extraction exceeded its CPU time limit ({})", path, signal_name(sig));
    fail(Errc::kCorrupt,
         "{}: PDF extraction crashed ({}): a damaged file, a poppler bug, or more than the memory limit of "
         "{} bytes",
         path, signal_name(sig), options.pdf_memory_limit_bytes);
  }
  if (!complete || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail(Errc::kCorrupt, "{}: PDF extraction ended early (exit status {})", path,
         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return text;
}

bool blank_line(std::string_view line) {
  for (char c : line)
    if (c != ' ' && c != '\t' && c != '\r') return false;
  return true;
}

}  // namespace

ParsedDocument parse_pdf(const std::string& path, const ParseOptions& options) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    fail(errno == ENOENT ? Errc::kNotFound : Errc::kIo, "{}: cannot open: {}", path, std::strerror(errno));
  if (st.st_size > options.max_file_bytes)
    fail(Errc::kLimit, "{}: {} bytes exceeds the limit of {} bytes (raise max_file_bytes to ingest it)", path,
         int64_t(st.st_size), options.max_file_bytes);
  if (st.st_size == 0) fail(Errc::kCorrupt, "{}: empty file", path);

  PdfText pdf = extract(path, options);
  DocumentBuilder builder(DocType::kPdf);
  builder.set_page_count(static_cast<int>(pdf.page_count));
  std::string first_line;
  for (size_t i = 0; i < pdf.pages.size(); ++i) {
    // Paragraphs are separated by blank lines in poppler's layout output; lines within one are joined.
    std::string_view page = pdf.pages[i];
    std::string paragraph;
    size_t pos = 0;
    while (pos <= page.size()) {
      size_t eol = std::min(page.find_first_of("\n\f", pos), page.size());
      std::string_view line = page.substr(pos, eol - pos);
      pos = eol + 1;
      if (blank_line(line)) {
        builder.add(BlockKind::kParagraph, paragraph, 0, static_cast<int>(i) + 1);
        paragraph.clear();
        continue;
      }
      if (first_line.empty()) first_line = collapse_whitespace(utf8_repair(line));
      paragraph.append(line).push_back('\n');
    }
    builder.add(BlockKind::kParagraph, paragraph, 0, static_cast<int>(i) + 1);
  }
  if (first_line.empty())
    fail(Errc::kCorrupt, "{}: no text in {} pages (a scan without a text layer?)", path, pdf.page_count);
  std::string title = collapse_whitespace(utf8_repair(pdf.title));
  if (title.empty()) {
    size_t end = std::min(first_line.size(), kMaxTitleFromTextBytes);
    while (end < first_line.size() && end > 0 && (static_cast<unsigned char>(first_line[end]) & 0xC0) == 0x80)
      --end;
    title = first_line.substr(0, end);
  }
  spdlog::debug("{}: extracted {} pages", path, pdf.page_count);
  return builder.finish(title, path, false);
}

}  // namespace rag::ingest
