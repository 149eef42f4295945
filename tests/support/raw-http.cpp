#include "tests/support/raw-http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <stdexcept>

namespace rag::test {
namespace {

int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + " failed");
  }
  return fd;
}

bool send_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Parses what has arrived; true once a whole reply (headers and Content-Length body) is in.
bool parse(const std::string& in, RawReply& reply) {
  const size_t end = in.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  reply.headers.clear();
  size_t line_end = in.find("\r\n");
  const std::string status_line = in.substr(0, line_end);
  if (status_line.size() >= 12 && status_line.rfind("HTTP/1.", 0) == 0) reply.status = std::atoi(status_line.c_str() + 9);
  for (size_t pos = line_end + 2; pos < end;) {
    const size_t next = in.find("\r\n", pos);
    const std::string line = in.substr(pos, next - pos);
    pos = next + 2;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    size_t v = colon + 1;
    while (v < line.size() && line[v] == ' ') ++v;
    reply.headers[name] = line.substr(v);
  }
  reply.body = in.substr(end + 4);
  auto it = reply.headers.find("content-length");
  return it != reply.headers.end() && reply.body.size() >= std::stoull(it->second);
}

}  // namespace

RawReply raw_exchange(int port, const std::string& request, std::chrono::milliseconds timeout) {
  RawReply reply;
  const int fd = connect_loopback(port);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};  // parse() throws on a malformed Content-Length
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  send_all(fd, request);  // the server may answer (and close) before taking every byte
  std::string in;
  char buffer[65536];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) {
      reply.closed = true;
      break;
    }
    in.append(buffer, static_cast<size_t>(n));
    if (parse(in, reply)) break;
  }
  parse(in, reply);
  if (reply.status == 0) reply.body = in;
  return reply;
}

RawConnection::RawConnection(int port) : fd_(connect_loopback(port)) {}
RawConnection::~RawConnection() { ::close(fd_); }

bool RawConnection::send(const std::string& bytes) { return send_all(fd_, bytes); }

bool RawConnection::closed_by_peer(std::chrono::milliseconds wait) {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return false;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n > 0) {
      received_.append(buffer, static_cast<size_t>(n));
      continue;
    }
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

std::string post_request(const std::string& path, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

}  // namespace rag::test
