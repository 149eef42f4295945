// A small closed-loop HTTP load generator for `rag serve`: C clients each send requests back to back over
// one keep-alive connection (reconnecting when the server closes it) for D seconds, then requests/s and
// latency percentiles are printed per concurrency level. Plain POSIX sockets; no dependency on the server.
//
//   serve-load --port 8080 --path /v1/search --body '{"query": "expenses"}' --concurrency 1,8,32 --seconds 10
//   bench/serve-load.sh build   (ingests data/sample, starts rag serve, runs /v1/search and /v1/ask)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int port = 8080;
  std::string path = "/v1/search";
  std::string body = "{\"query\": \"expenses\"}";
  std::string key;
  std::vector<int> concurrency = {1, 8, 32};
  double seconds = 10;
};

int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends one request and reads one response (Content-Length or chunked). Returns the status, 0 on failure;
// `keep` says whether the connection may be reused.
int exchange(int fd, const std::string& request, bool& keep) {
  for (size_t sent = 0; sent < request.size();) {
    ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return 0;
    sent += static_cast<size_t>(n);
  }
  std::string data;
  char buffer[16384];
  size_t head_end;
  while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) return 0;
    data.append(buffer, static_cast<size_t>(n));
  }
  const int status = std::atoi(data.c_str() + 9);
  std::string head = data.substr(0, head_end);
  for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  keep = head.find("connection: close") == std::string::npos;
  std::string body = data.substr(head_end + 4);
  const size_t cl = head.find("content-length: ");
  if (cl != std::string::npos) {
    const size_t length = std::strtoull(head.c_str() + cl + 16, nullptr, 10);
    while (body.size() < length) {
      ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) return 0;
      body.append(buffer, static_cast<size_t>(n));
    }
  } else {  // chunked (streams) or until close
    while (body.find("\r\n0\r\n\r\n") == std::string::npos && body.rfind("0\r\n\r\n", 0) != 0) {
      ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      body.append(buffer, static_cast<size_t>(n));
    }
  }
  return status;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void run(const Options& o, int clients) {
  std::string request = "POST " + o.path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
  if (!o.key.empty()) request += "Authorization: Bearer " + o.key + "\r\n";
  request += "Content-Length: " + std::to_string(o.body.size()) + "\r\n\r\n" + o.body;
  std::mutex mutex;
  std::vector<double> latencies;
  std::atomic<int64_t> ok{0}, refused{0}, failed{0};
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      std::vector<double> mine;
      int fd = -1;
      while (Clock::now() < end) {
        if (fd < 0) fd = connect_to(o.port);
        if (fd < 0) {
          ++failed;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          continue;
        }
        bool keep = false;
        const auto t0 = Clock::now();
        const int status = exchange(fd, request, keep);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (status == 200) {
          ++ok;
          mine.push_back(ms);
        } else if (status == 429) {
          ++refused;
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        } else {
          ++failed;
        }
        if (!keep || status == 0) {
          close(fd);
          fd = -1;
        }
      }
      if (fd >= 0) close(fd);
      std::lock_guard<std::mutex> lock(mutex);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("%-12s %5d %9.1f %9.2f %9.2f %9.2f %8lld %8lld\n", o.path.c_str(), clients, static_cast<double>(ok) / seconds,
              percentile(latencies, 0.50), percentile(latencies, 0.95), percentile(latencies, 0.99),
              static_cast<long long>(refused.load()), static_cast<long long>(failed.load()));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "serve-load: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--port") o.port = std::atoi(value().c_str());
    else if (a == "--path") o.path = value();
    else if (a == "--body") o.body = value();
    else if (a == "--key") o.key = value();
    else if (a == "--seconds") o.seconds = std::atof(value().c_str());
    else if (a == "--concurrency") {
      o.concurrency.clear();
      std::string list = value();
      for (size_t p = 0; p < list.size();) {
        size_t q = list.find(',', p);
        if (q == std::string::npos) q = list.size();
        o.concurrency.push_back(std::atoi(list.substr(p, q - p).c_str()));
        p = q + 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: serve-load --port N [--path /v1/search] [--body JSON] [--key KEY] [--concurrency 1,8,32] [--seconds 10]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  std::printf("%-12s %5s %9s %9s %9s %9s %8s %8s\n", "route", "conc", "req/s", "p50 ms", "p95 ms", "p99 ms", "429", "errors");
  for (int c : o.concurrency) run(o, c);
  return 0;
}
