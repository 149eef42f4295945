// PDF: text extraction runs in a separate process with hard limits, so a PDF that crashes poppler, loops or
// allocates without bound fails alone (STYLE.md, "Facts about our dependencies"). The parent only reads
// and validates the records (pdf-extract.h) and enforces the wall clock.
//
// Why a worker started by exec rather than fork() from here: the ingest job parses on several threads, and
// after fork() in a multi-threaded process the child may only make async-signal-safe calls, because locks
// held by other threads (malloc's, ASan's allocator, locale, fontconfig) are copied held. poppler makes
// plenty of other calls; under GCC 12's AddressSanitizer, whose allocator is not locked around fork(), such
// children deadlocked until the wall-clock kill. So each parsing thread gets its own worker: this same
// executable (/proc/self/exe: whatever binary links this file, `rag` or a test binary), started
// by posix_spawn with RAG_PDF_WORKER_FD naming its end of a socketpair. The constructor at the end of this
// file sees the variable before main() and runs worker_main(), which never returns. The worker is single
// threaded, so it forks one extraction child per PDF safely; it is also small (about 80 MB mapped for `rag`,
// where a server with a model maps gigabytes), so RLIMIT_AS on top of its address space bounds what
// poppler may allocate. Starting a worker costs one exec, about 20 ms, once per parsing thread.
//
//   parent thread                           worker (single threaded)         extraction child
//   pipe2 ─ send 'R' {path, limits}         recv                              (fork of the worker)
//           + the pipe's write end ───────▶ fork ───────────────────────────▶ setrlimit(AS, CPU)
//                                           close its write end               poppler load
//   recv 'P' {pid} ◀─────────────────────── send 'P'                          records to pipe ─ _exit
//   read pipe until end or deadline         poll(socket, pidfd of the child)
//   [deadline, too big: send 'K'] ────────▶ kill(child, SIGKILL)
//   recv 'S' {wait status} ◀─────────────── waitpid ─ send 'S'
//   validate records and status
//
// Messages are single SOCK_SEQPACKET datagrams: 'R' is a WorkerRequest followed by the path, with the
// pipe's write end attached (SCM_RIGHTS); 'K' is one byte; 'P', 'F' (fork failed: errno) and 'S' are a
// WorkerReply. The worker answers every 'R' with 'F', or with 'P' then 'S'; a 'K' that arrives after the
// child was reaped is ignored.
//
// Lifetimes, so that no process outlives its owner and nothing is inherited by accident:
//   1. The handle is thread_local: the worker is started on a thread's first PDF and stopped when the
//      thread ends (its socket is closed, the worker exits, the thread reaps it). The main thread is the
//      exception: its thread_local lives until exit(), so a server (or a test binary) would hold an idle
//      worker and its socket for its whole life; it stops its worker after each PDF instead (~20 ms of
//      exec per PDF, and the ingest job parses on threads of its own). A worker that dies or breaks the
//      protocol is stopped and restarted once per PDF.
//   2. The worker exits at end of stream on its socket (its thread ended, or the process died), killing a
//      running child first; it also has PR_SET_PDEATHSIG for the thread that started it. The extraction
//      child has PR_SET_PDEATHSIG for the worker.
//   3. The worker inherits only its socket (fd 3), /dev/null as stdin and stdout, and stderr (where a
//      sanitizer would report on the worker itself); the child keeps only its pipe, with stdout and stderr
//      on /dev/null. Every descriptor of the parent is closed in the worker (posix_spawn file actions).
//   4. The kill on deadline is sent to the worker, which kills its own unreaped child: a pid is never
//      signalled after it may have been reused.
//   5. A handle copied into a fork()ed process is not used there: the worker belongs to the process that
//      started it (owner pid), so the copy starts its own.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "common/log.h"
#include "common/text.h"
#include "ingest/document-builder.h"
#include "ingest/ingest.h"
#include "ingest/pdf-extract.h"

extern char** environ;

namespace rag::ingest {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxTitleFromTextBytes = 200;
constexpr double kMaxTimeLimitS = 24 * 3600;

constexpr char kWorkerFdVariable[] = "RAG_PDF_WORKER_FD";
constexpr int kWorkerFd = 3;  // the worker's end of the socketpair, as the worker sees it
constexpr size_t kMaxPathBytes = PATH_MAX;
// How long a worker may take to answer what needs no PDF work: 'P' after a request, 'S' after a kill,
// its exit after its socket is closed. Past it the worker counts as broken.
constexpr auto kWorkerGrace = std::chrono::seconds(10);

struct WorkerRequest {
  char tag = 'R';
  uint32_t path_bytes = 0;  // the path follows the struct in the same message
  double time_limit_s = 0;
  int64_t memory_limit_bytes = 0;
};

struct WorkerReply {
  char tag = 0;       // 'P' started, 'F' fork failed, 'S' the child was reaped
  int32_t value = 0;  // pid, errno, or wait status
};

// The configured limit made safe to convert: NaN and negatives are 0, infinity and huge values a day.
double time_limit_s(double limit) {
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

// ---- worker side: runs before main() in the spawned executable, single threaded ----------------------

// The process's current virtual size, which the child inherits from the worker: the memory limit is put
// on what extraction adds.
[[maybe_unused]] rlim_t current_address_space() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long pages = 0;
  int got = std::fscanf(f, "%lu", &pages);
  std::fclose(f);
  return got == 1 ? static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) : 0;
}

[[noreturn]] void run_child(const std::string& path, int fd, const WorkerRequest& request, pid_t worker) {
  // Dies with the worker; if the worker is already gone, there is no one to report to.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != worker) _exit(5);
  // poppler and its allocator print to stdout/stderr in places the debug hook does not reach ("Out of
  // memory" before abort); the parent reports one line per failure instead.
  if (fd <= STDERR_FILENO) fd = fcntl(fd, F_DUPFD, STDERR_FILENO + 1);
  if (fd < 0) _exit(4);
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    dup2(devnull, STDOUT_FILENO);
    dup2(devnull, STDERR_FILENO);
  }
  // Keep only the pipe: not the worker's socket, whose end of stream must follow the worker alone.
  if (fd > STDERR_FILENO + 1) close_range(STDERR_FILENO + 1, static_cast<unsigned>(fd) - 1, 0);
  close_range(static_cast<unsigned>(fd) + 1, ~0u, 0);
#if !defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of shadow address space, so RLIMIT_AS cannot be applied under it;
  // sanitizer builds rely on the CPU and wall-clock limits alone.
  if (request.memory_limit_bytes > 0) {
    rlim_t limit = current_address_space() + static_cast<rlim_t>(request.memory_limit_bytes);
    struct rlimit as = {limit, limit};
    setrlimit(RLIMIT_AS, &as);
  }
#endif
  // The child starts with zero CPU time; SIGXCPU at the soft limit, SIGKILL one second later.
  rlim_t cpu = static_cast<rlim_t>(std::ceil(time_limit_s(request.time_limit_s))) + 1;
  struct rlimit cpu_limit = {cpu, cpu + 1};
  setrlimit(RLIMIT_CPU, &cpu_limit);
  try {
    extract_pdf_records(path, fd);
  } catch (...) {
    _exit(2);
  }
  _exit(0);
}

void send_reply(int sock, char tag, int32_t value) {
  WorkerReply reply{tag, value};
  // A failure shows as end of stream on the next receive.
  while (send(sock, &reply, sizeof reply, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

// Waits for the child while watching the socket for 'K' and for end of stream. Returns the wait status;
// exits the worker, after killing and reaping the child, when the parent is gone or breaks the protocol.
int wait_child(int sock, pid_t pid) {
  // Without pidfd (kernels before 5.3) the child's exit is polled every 10 ms.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  for (;;) {
    int status = 0;
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (pidfd >= 0) close(pidfd);
      return status;
    }
    if (done < 0 && errno != EINTR) _exit(1);  // not our child any more: nothing sensible to report
    struct pollfd fds[2] = {{sock, POLLIN, 0}, {pidfd, POLLIN, 0}};
    int ready = poll(fds, pidfd >= 0 ? 2 : 1, pidfd >= 0 ? -1 : 10);
    if (ready <= 0 || fds[0].revents == 0) continue;
    char tag = 0;
    ssize_t n = recv(sock, &tag, 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    kill(pid, SIGKILL);
    if (n == 1 && tag == 'K') continue;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    _exit(n == 0 ? 0 : 1);
  }
}

// Receives one request. Returns its pipe fd, or -1 for a stray 'K'; exits at end of stream or on a
// message that breaks the protocol (the parent then starts a new worker).
int receive_request(int sock, WorkerRequest& request, std::string& path) {
  char buffer[sizeof(WorkerRequest) + kMaxPathBytes];
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {buffer, sizeof buffer};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (n <= 0) _exit(n == 0 ? 0 : 1);
  int fd = -1;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
      std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  if (n == 1 && buffer[0] == 'K' && fd < 0) return -1;
  if (fd >= 0 && !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && size_t(n) >= sizeof request) {
    std::memcpy(&request, buffer, sizeof request);
    if (request.tag == 'R' && request.path_bytes == size_t(n) - sizeof request) {
      path.assign(buffer + sizeof request, request.path_bytes);
      return fd;
    }
  }
  _exit(1);
}

[[noreturn]] void worker_main(int sock) {
  // Dies with the thread that started it (see the top comment, 2).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  prctl(PR_SET_NAME, "rag-pdf-worker");
  pid_t self = getpid();
  for (;;) {
    WorkerRequest request;
    std::string path;
    int fd = receive_request(sock, request, path);
    if (fd < 0) continue;
    pid_t pid = fork();
    if (pid == 0) run_child(path, fd, request, self);
    int fork_errno = errno;
    close(fd);  // the child's copy is now the only write end: end of stream follows the child
    if (pid < 0) {
      send_reply(sock, 'F', fork_errno);
      continue;
    }
    send_reply(sock, 'P', pid);
    send_reply(sock, 'S', wait_child(sock, pid));
  }
}

// Runs before main() (and before this executable's other static initializers, priority 101) in every
// binary that links this file. Only a process started by Worker::start has the variable.
__attribute__((constructor(101))) void run_pdf_worker_if_asked() {
  const char* value = std::getenv(kWorkerFdVariable);
  if (!value) return;
  // Never fall through to main(): that would run a second `rag` (or a whole test binary) in its place.
  char* end = nullptr;
  long fd = std::strtol(value, &end, 10);
  int type = 0;
  socklen_t type_size = sizeof type;
  struct stat st;
  if (end == value || *end != '\0' || fd < 0 || fd > INT_MAX || fstat(int(fd), &st) != 0 ||
      !S_ISSOCK(st.st_mode) || getsockopt(int(fd), SOL_SOCKET, SO_TYPE, &type, &type_size) != 0 ||
      type != SOCK_SEQPACKET) {
    static const char message[] =
        "rag: RAG_PDF_WORKER_FD is set but names no worker socket; it is for the PDF worker only\n";
    (void)!write(STDERR_FILENO, message, sizeof message - 1);
    _exit(2);
  }
  worker_main(int(fd));
}

// ---- parent side --------------------------------------------------------------------------------------

// The worker of one thread (see the top comment). Not thread safe: one per thread.
class Worker {
 public:
  enum class Got { kReply, kTimeout, kBroken };

  Worker() = default;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() { stop(); }

  // Starts the worker unless it runs. Throws kIo naming `path` and what failed.
  void start(const std::string& path);
  // Closes the socket and reaps the worker, killing it if it does not exit within kWorkerGrace.
  void stop();

  // False when the worker is gone.
  bool send_request(const std::string& path, const ParseOptions& options, int fd);
  void send_kill();
  Got receive(WorkerReply& reply, Clock::time_point deadline);

 private:
  // A copy inherited through fork() (5.): forget it without touching the owner's worker.
  void drop_if_inherited();

  int sock_ = -1;
  pid_t pid_ = -1;
  pid_t owner_ = -1;
  bool awaiting_ = false;  // a request was sent whose last reply ('F' or 'S') has not been received
};

thread_local Worker t_worker;

void Worker::drop_if_inherited() {
  if (sock_ < 0 || owner_ == getpid()) return;
  close(sock_);
  sock_ = -1;
  pid_ = -1;
}

void Worker::start(const std::string& path) {
  drop_if_inherited();
  if (awaiting_) stop();  // an exception left a reply unread: the stream is out of step
  if (sock_ >= 0) return;
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
    fail(Errc::kIo, "{}: cannot start the PDF extraction worker: socketpair failed: {}", path,
         std::strerror(errno));
  // dup2 onto itself would keep FD_CLOEXEC: make sure the worker's end is dup2'ed onto another number.
  if (fds[1] == kWorkerFd) {
    int moved = fcntl(fds[1], F_DUPFD_CLOEXEC, kWorkerFd + 1);
    close(fds[1]);
    fds[1] = moved;
  }
  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e)
    if (std::strncmp(*e, kWorkerFdVariable, sizeof kWorkerFdVariable - 1) != 0 &&
        std::strncmp(*e, "OPENBLAS_NUM_THREADS=", 21) != 0 && std::strncmp(*e, "OMP_NUM_THREADS=", 16) != 0)
      env_strings.emplace_back(*e);
  env_strings.push_back(std::string(kWorkerFdVariable) + "=" + std::to_string(kWorkerFd));
  // Libraries loaded with the executable must not start threads in the worker (OpenBLAS does at load).
  env_strings.emplace_back("OPENBLAS_NUM_THREADS=1");
  env_strings.emplace_back("OMP_NUM_THREADS=1");
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  char name[] = "rag-pdf-worker";
  char* argv[] = {name, nullptr};

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  int rc = fds[1] < 0 ? errno : 0;
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, fds[1], kWorkerFd);
  if (rc == 0) rc = posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  if (rc == 0) rc = posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, kWorkerFd + 1);
  // Default dispositions and an empty mask: the parent may ignore SIGPIPE or block signals for its threads.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
  if (rc == 0) rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  if (rc == 0) rc = posix_spawn(&pid, "/proc/self/exe", &actions, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (fds[1] >= 0) close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    fail(Errc::kIo, "{}: cannot start the PDF extraction worker: posix_spawn of /proc/self/exe failed: {}",
         path, std::strerror(rc));
  }
  sock_ = fds[0];
  pid_ = pid;
  owner_ = getpid();
  spdlog::debug("started PDF extraction worker {}", pid_);
}

void Worker::stop() {
  drop_if_inherited();
  if (sock_ < 0) return;
  close(sock_);
  sock_ = -1;
  awaiting_ = false;
  // At end of stream the worker kills a running child, reaps it and exits.
  auto deadline = Clock::now() + kWorkerGrace;
  for (;;) {
    pid_t done = waitpid(pid_, nullptr, WNOHANG);
    if (done == pid_ || (done < 0 && errno != EINTR)) break;  // reaped, or by someone else (ECHILD)
    if (Clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    usleep(500);
  }
  pid_ = -1;
}

bool Worker::send_request(const std::string& path, const ParseOptions& options, int fd) {
  WorkerRequest request;
  request.path_bytes = static_cast<uint32_t>(path.size());
  request.time_limit_s = options.pdf_time_limit_s;
  request.memory_limit_bytes = options.pdf_memory_limit_bytes;
  struct iovec iov[2] = {{&request, sizeof request}, {const_cast<char*>(path.data()), path.size()}};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg = {};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t n;
  while ((n = sendmsg(sock_, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  awaiting_ = n == ssize_t(sizeof request + path.size());
  return awaiting_;
}

void Worker::send_kill() {
  char tag = 'K';
  while (send(sock_, &tag, 1, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

Worker::Got Worker::receive(WorkerReply& reply, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    struct pollfd p = {sock_, POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(std::clamp<int64_t>(left, 0, 1000)));
    if (ready < 0 && errno != EINTR) return Got::kBroken;
    if (ready <= 0) {
      if (left <= 0) return Got::kTimeout;
      continue;
    }
    ssize_t n = recv(sock_, &reply, sizeof reply, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n != ssize_t(sizeof reply)) return Got::kBroken;
    if (reply.tag == 'F' || reply.tag == 'S') awaiting_ = false;
    return Got::kReply;
  }
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

// What one extraction produced, before validation.
struct Extraction {
  std::string data;  // the records
  int status = 0;    // the child's wait status; meaningless when timed_out or too_big
  bool timed_out = false;
  bool too_big = false;
};

// One extraction in the thread's worker. Returns false when the worker broke before the verdict (died,
// broke the protocol or stopped answering): the caller may start a new worker and try again.
bool extract_in_worker(Worker& worker, const std::string& path, const ParseOptions& options,
                       Extraction& out) {
  worker.start(path);
  Pipe pipe;
  if (!worker.send_request(path, options, pipe.write_end())) {
    worker.stop();
    return false;
  }
  pipe.close_write();
  WorkerReply reply;
  Worker::Got got = worker.receive(reply, Clock::now() + kWorkerGrace);
  if (got == Worker::Got::kReply && reply.tag == 'F')
    fail(Errc::kIo, "{}: cannot start PDF extraction: fork failed in the worker: {}", path,
         std::strerror(reply.value));
  if (got != Worker::Got::kReply || reply.tag != 'P') {
    worker.stop();
    return false;
  }

  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(time_limit_s(options.pdf_time_limit_s)));
  char buffer[1 << 16];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      out.timed_out = true;
      break;
    }
    struct pollfd p = {pipe.read_end(), POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    ssize_t n = read(pipe.read_end(), buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;  // end of stream: the child finished or died
    if (out.data.size() + size_t(n) > kMaxPdfTotalBytes + 4096) {
      out.too_big = true;
      break;
    }
    out.data.append(buffer, size_t(n));
  }
  pipe.close_read();

  // After end of stream the child should exit at once; it still gets no more than the deadline.
  got = out.timed_out || out.too_big ? Worker::Got::kTimeout : worker.receive(reply, deadline);
  if (got == Worker::Got::kTimeout) {
    out.timed_out = !out.too_big;
    worker.send_kill();
    got = worker.receive(reply, Clock::now() + kWorkerGrace);
  }
  if (got == Worker::Got::kReply && reply.tag == 'S') {
    out.status = reply.value;
    return true;
  }
  worker.stop();  // the child dies with the worker
  return out.timed_out || out.too_big;
}

PdfText extract(const std::string& path, const ParseOptions& options) {
  if (path.size() > kMaxPathBytes)
    fail(Errc::kIo, "{}: path longer than {} bytes, cannot extract the PDF", path, kMaxPathBytes);
  // The main thread keeps no worker between PDFs (see the top comment, 1).
  struct StopOnMainThread {
    ~StopOnMainThread() {
      if (gettid() == getpid()) t_worker.stop();
    }
  } stop_on_main_thread;
  Extraction result;
  for (int attempt = 0; !extract_in_worker(t_worker, path, options, result); ++attempt) {
    if (attempt == 1)
      fail(Errc::kIo, "{}: the PDF extraction worker stopped answering twice (killed, or out of memory?)",
           path);
    spdlog::warn("{}: the PDF extraction worker stopped answering; starting a new one", path);
    result = Extraction();
  }
  if (result.too_big) fail(Errc::kLimit, "{}: PDF text exceeds {} bytes", path, kMaxPdfTotalBytes);
  if (result.timed_out)
    fail(Errc::kLimit, "{}: PDF extraction exceeded {} s (raise pdf_time_limit_s, or the file is malformed)",
         path, options.pdf_time_limit_s);

  PdfText text;
  int status = result.status;
  bool complete = decode_records(result.data, path, text);  // throws the child's own error first
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
