// The HTTP request decoder: raw request bytes (request line, headers, body) sent over loopback to a
// server::HttpServer. The parsing and validation of requests (auth header, Content-Length and
// Content-Encoding checks, the JSON bodies of every route) happens inside httplib's handlers, not in a
// function reachable without a socket, so this target goes through the public HttpServer on 127.0.0.1.
// The service behind it has an empty data dir and no models: every request that passes validation ends in
// a typed error (no index, no generator), so what is fuzzed is the decoding.
//
// The first input byte picks the server: one with an API key (user "fuzz-user-key-0123456789"), one without
// keys. Neither principal is an admin: an accepted upload would ingest into the data dir and change what
// later inputs see, so the upload body's decoding (base64) is not reached here.
// A finding, besides a crash: a response answering "internal error" (an exception other than rag::Error
// escaped a handler: a request the validation let through), or no response within 60 s.
//
// Every socket call here retries on EINTR: libFuzzer's -timeout runs a SIGALRM timer, and an alarm that lands
// in poll() used to read as "no response" (the "stall after ~40k connections" that kept this target out of
// CI: about one alarm in two arrives while the harness waits for a reply).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <thread>

#include "server/server.h"
#include "tests/fuzz/fuzz.h"

using namespace rag;

namespace {

struct Servers {
  std::string data_dir;
  std::unique_ptr<server::Service> service;
  std::unique_ptr<server::HttpServer> with_keys, without_keys;
  std::thread a, b;
  int port_keys = 0, port_open = 0;

  Servers() {
    spdlog::set_level(spdlog::level::off);
    char tmpl[] = "/dev/shm/rag-fuzz-http-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) fuzz::finding("mkdtemp failed");
    data_dir = tmpl;
    server::Config config;
    config.data_dir = data_dir;
    config.request_timeout = std::chrono::milliseconds(5000);
    service = std::make_unique<server::Service>(config);
    server::HttpOptions keyed;
    keyed.port = 0;
    keyed.keys = std::vector<server::ApiKey>{{"fuzz-user-key-0123456789", {"ann", {"eng"}, false}}};
    with_keys = std::make_unique<server::HttpServer>(*service, keyed);
    server::HttpOptions open;
    open.port = 0;
    open.local_principal = {"local", {"everyone"}, false};
    without_keys = std::make_unique<server::HttpServer>(*service, open);
    port_keys = with_keys->bind();
    port_open = without_keys->bind();
    a = std::thread([this] { with_keys->run(); });
    b = std::thread([this] { without_keys->run(); });
  }
  ~Servers() {
    with_keys->stop();
    without_keys->stop();
    a.join();
    b.join();
    std::filesystem::remove_all(data_dir);
  }
};

// Sends the request, half-closes, and reads the whole response (the server closes after it).
std::string exchange(int port, std::string_view request) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fuzz::finding("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Tens of thousands of short connections a minute use up ephemeral ports (this side half-closes first, so
  // it is the one left in TIME_WAIT): a refused connect is the harness's problem, so wait and retry before
  // calling it a finding. An interrupted connect (EINTR) is retried the same way, on a fresh socket.
  int tries = 0;
  while (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (++tries == 500) fuzz::finding("connect failed for 5 s");
    close(fd);
    usleep(10000);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fuzz::finding("socket failed");
  }
  for (size_t done = 0; done < request.size();) {
    ssize_t n = send(fd, request.data() + done, request.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server may close early (413, malformed request line)
    done += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  std::string response;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    const int r = poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fuzz::finding("no response within 60 s");
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return response;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Servers servers;
  if (size == 0) return 0;
  const int port = data[0] & 1 ? servers.port_open : servers.port_keys;
  const std::string response = exchange(port, fuzz::as_text(data + 1, size - 1));
  if (response.find("internal error; see the server log") != std::string::npos)
    fuzz::finding("a handler threw something other than rag::Error");
  return 0;
}
