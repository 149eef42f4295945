// Raw HTTP/1.1 over loopback for hostile-client tests: exact bytes out (malformed, huge or trickled requests
// that an HTTP library would refuse to send), the reply parsed leniently back.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace rag::test {

struct RawReply {
  int status = 0;                              // 0: no status line (the server closed or timed out first)
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;                            // by Content-Length, or up to close; not de-chunked
  bool closed = false;                         // the server closed the connection
};

// Connects to 127.0.0.1:port, sends `request` as given and reads one reply: the headers, then Content-Length
// bytes of body (or until close). Gives up after `timeout` with whatever arrived. Does not half-close, so a
// server that waits for more body bytes than were sent is seen waiting.
RawReply raw_exchange(int port, const std::string& request,
                      std::chrono::milliseconds timeout = std::chrono::seconds(20));

// A well-formed request for raw_exchange: POST `path` with a JSON `body`, and GET /healthz; both close after
// the reply.
std::string post_request(const std::string& path, const std::string& body);
inline constexpr const char* kHealthzRequest = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

// An open connection for trickling bytes.
class RawConnection {
 public:
  explicit RawConnection(int port);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  // Sends all of `bytes`; false when the peer has closed or reset the connection.
  bool send(const std::string& bytes);
  // True when the server has closed its side (end of file or an error), waiting up to `wait` for something to
  // arrive. Bytes the server sent before closing are kept in received().
  bool closed_by_peer(std::chrono::milliseconds wait);
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  std::string received_;
};

}  // namespace rag::test
