// `rag serve` as a child process for end-to-end tests, and a minimal HTTP/1.1 client over loopback (plain
// POSIX sockets, so test_e2e needs no HTTP library).
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace rag::test {

// Starts `rag serve ARGS... --port 0` and waits for its "listening on HOST:PORT" line. Stderr goes to a file
// (log()). The destructor sends SIGTERM and waits.
class ServeProcess {
 public:
  explicit ServeProcess(const std::vector<std::string>& args);
  ~ServeProcess();
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // SIGTERM, then waits; returns the exit status (128 + signal when killed).
  int terminate();
  std::string log() const;

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_path_;
};

struct HttpReply {
  int status = 0;                              // 0: no reply (connection failed or closed early)
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;                            // de-chunked
};

// One request with "Connection: close"; reads until the server closes.
HttpReply http_request(int port, const std::string& method, const std::string& path, const std::string& body = "",
                       const std::map<std::string, std::string>& headers = {});

}  // namespace rag::test
