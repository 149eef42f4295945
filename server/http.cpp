// The HTTP front end (cpp-httplib): routes, auth, limits, admission, streaming and metrics.
//
// Request path:  httplib worker thread ─▶ route wrapper (timing, error shape, metrics, one log line)
//                ─▶ authenticate (Bearer key, compared in constant time) ─▶ parse + range-check JSON
//                ─▶ Admission: wait for one of Config::workers slots (429 when queue_depth are waiting,
//                   504 when the deadline passes first) ─▶ Service
// Streaming responses hold their slot until the stream ends; a failed write (client gone) cancels.
//
// cpp-httplib 0.11.4 (Debian 12) facts this relies on: set_payload_max_length answers 413 before a handler
// runs; its ThreadPool queue is unbounded, so the pool gets enough threads for every admitted and queued
// request and Admission does the refusing; stop() closes the listener and listen_after_bind() returns
// after the pool has finished the requests it holds (the drain on SIGTERM).
// It times out each read, never a whole request, and counts no header lines: GuardedServer (below) bounds the
// time a request may take to arrive, and the pre-routing handler refuses more than kMaxHeaderCount headers.
#include <httplib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <condition_variable>
#include <fstream>
#include <functional>
#include <new>
#include <nlohmann/json.hpp>
#include <random>

#include "common/error.h"
#include "common/log.h"
#include "common/text.h"
#include "server/metrics.h"
#include "server/server.h"

namespace rag::server {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// More header lines than any client of this API sends (browsers send ~20); beyond it 431.
constexpr size_t kMaxHeaderCount = 100;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// An error answered in OpenAI's shape: {"error": {"message", "type", "code"}}.
struct HttpError {
  int status;
  std::string type, code, message;
};

[[noreturn]] void http_fail(int status, std::string type, std::string code, std::string message) {
  throw HttpError{status, std::move(type), std::move(code), std::move(message)};
}

json error_body(const HttpError& e) {
  return {{"error", {{"message", e.message}, {"type", e.type}, {"code", e.code}}}};
}

HttpError from_error(const Error& e) {
  switch (e.code()) {
    case Errc::kInvalidArgument: return {400, "invalid_request_error", "invalid_request", e.what()};
    case Errc::kLimit: return {400, "invalid_request_error", "limit_exceeded", e.what()};
    case Errc::kUnsupported: return {400, "invalid_request_error", "unsupported", e.what()};
    case Errc::kNotFound: return {503, "server_error", "index_not_ready", e.what()};
    case Errc::kBusy: return {504, "timeout_error", "timeout", e.what()};
    default: return {500, "server_error", "internal_error", e.what()};
  }
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Touches every byte of b whatever a holds, so timing tells nothing about how much of a key matched.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) diff |= static_cast<unsigned char>((a.empty() ? 0 : a[i % a.size()]) ^ b[i]);
  return diff == 0;
}

// ---- JSON field access with range checks ----------------------------------------------------------

json parse_body(const httplib::Request& req) {
  if (req.has_header("Content-Encoding") && req.get_header_value("Content-Encoding") != "identity")
    http_fail(415, "invalid_request_error", "unsupported_encoding", "compressed request bodies are not accepted");
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded()) http_fail(400, "invalid_request_error", "invalid_json", "the request body is not valid JSON");
  if (!body.is_object()) http_fail(400, "invalid_request_error", "invalid_json", "the request body must be a JSON object");
  return body;
}

[[noreturn]] void wrong_type(const std::string& field, const char* want) {
  http_fail(400, "invalid_request_error", "invalid_type", fmt::format("'{}' must be {}", field, want));
}

std::string get_string(const json& body, const std::string& field, bool required, const std::string& fallback = "") {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) {
    if (required) http_fail(400, "invalid_request_error", "missing_field", fmt::format("'{}' is required", field));
    return fallback;
  }
  if (!it->is_string()) wrong_type(field, "a string");
  return it->get<std::string>();
}

int64_t get_int(const json& body, const std::string& field, int64_t fallback, int64_t min, int64_t max,
                const char* code = "out_of_range") {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) wrong_type(field, "an integer");
  const int64_t v = it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : it->get<int64_t>();
  if (v < min || v > max)
    http_fail(400, "invalid_request_error", code, fmt::format("'{}' is {}; it must be in {}..{}", field, v, min, max));
  return v;
}

double get_number(const json& body, const std::string& field, double fallback, double min, double max) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_number()) wrong_type(field, "a number");
  const double v = it->get<double>();
  if (!(v >= min && v <= max))
    http_fail(400, "invalid_request_error", "out_of_range", fmt::format("'{}' is {}; it must be in {}..{}", field, v, min, max));
  return v;
}

bool get_bool(const json& body, const std::string& field, bool fallback) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) wrong_type(field, "true or false");
  return it->get<bool>();
}

json citation_json(const Citation& c) {
  json j = {{"n", c.n}, {"doc_id", c.doc_id}, {"chunk_id", c.chunk_id}, {"path", c.path}, {"title", c.title},
            {"page", c.page > 0 ? json(c.page) : json(nullptr)}, {"heading", c.heading}, {"snippet", c.snippet},
            {"score", c.score}};
  j["rerank_score"] = c.rerank_score ? json(*c.rerank_score) : json(nullptr);
  return j;
}

json citations_json(const std::vector<Citation>& list) {
  json out = json::array();
  for (const auto& c : list) out.push_back(citation_json(c));
  return out;
}

json timings_json(const Timings& t) {
  return {{"queue_ms", t.queue_ms}, {"retrieve_ms", t.retrieve_ms}, {"rerank_ms", t.rerank_ms},
          {"prefill_ms", t.prefill_ms}, {"first_token_ms", t.first_token_ms}, {"generate_ms", t.generate_ms},
          {"total_ms", t.total_ms}};
}

json models_json(const Models& m) {
  return {{"embedder", m.embedder}, {"reranker", m.reranker}, {"generator", m.generator}};
}

std::string sse(const char* event, const json& data) {
  std::string out;
  if (event != nullptr) out += std::string("event: ") + event + "\n";
  return out + "data: " + data.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

std::string openai_finish(const std::string& reason) {
  if (reason == "length" || reason == "context") return "length";
  return "stop";
}

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}", prefix, rng());
}

std::string base64_encode(std::string_view in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    if (i + 2 < in.size()) v |= static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

// Strict decoding: anything but the alphabet, '=' padding at the end and nothing else is an error.
std::optional<std::string> base64_decode(std::string_view in) {
  std::string out;
  uint32_t v = 0;
  int bits = 0;
  size_t padding = 0;
  for (char c : in) {
    int d;
    if (c >= 'A' && c <= 'Z') d = c - 'A';
    else if (c >= 'a' && c <= 'z') d = c - 'a' + 26;
    else if (c >= '0' && c <= '9') d = c - '0' + 52;
    else if (c == '+') d = 62;
    else if (c == '/') d = 63;
    else if (c == '=') { ++padding; continue; }
    else return std::nullopt;
    if (padding > 0) return std::nullopt;
    v = (v << 6) | static_cast<uint32_t>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((v >> bits) & 0xFF);
    }
  }
  if (padding > 2) return std::nullopt;
  return out;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---- admission ------------------------------------------------------------------------------------

// At most `workers` requests run; at most `depth` wait. A request beyond both is refused at once (429);
// a waiting request whose deadline passes gives up (504).
class Admission {
 public:
  Admission(int workers, int depth) : workers_(workers), depth_(depth) {}
  enum class Result { kAdmitted, kFull, kTimeout };
  Result enter(Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (running_ < workers_ && waiting_ == 0) {
      ++running_;
      return Result::kAdmitted;
    }
    if (waiting_ >= depth_) return Result::kFull;
    ++waiting_;
    const bool ok = cv_.wait_until(lock, deadline, [&] { return running_ < workers_; });
    --waiting_;
    if (!ok) return Result::kTimeout;
    ++running_;
    return Result::kAdmitted;
  }
  void leave() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --running_;
    }
    cv_.notify_one();
  }
  int64_t running() {
    std::lock_guard<std::mutex> lock(mutex_);
    return running_;
  }
  int64_t waiting() {
    std::lock_guard<std::mutex> lock(mutex_);
    return waiting_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int workers_, depth_;
  int running_ = 0, waiting_ = 0;
};

// ---- connections ----------------------------------------------------------------------------------

// cpp-httplib 0.11.4 times out each read (read_timeout) but never a whole request, so a client that trickles
// a byte at a time (slowloris) holds a worker thread for as long as it likes, and enough of them take every
// thread. GuardedServer runs httplib's own connection loop (keep-alive up to the max count, a fresh stream
// per request, handled by httplib's process_request) with a stream whose reads also give up once the request
// has taken longer than `request_read_timeout` to arrive, counted from its first byte. Writes (a long SSE
// answer) are not limited by it: the request has been read by then.
class GuardedServer : public httplib::Server {
 public:
  std::chrono::milliseconds request_read_timeout{30000};

 private:
  class DeadlineStream final : public httplib::Stream {
   public:
    DeadlineStream(int fd, Clock::time_point deadline, int read_timeout_ms, int write_timeout_ms)
        : fd_(fd), deadline_(deadline), read_timeout_ms_(read_timeout_ms), write_timeout_ms_(write_timeout_ms) {}

    bool is_readable() const override {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
      if (left <= 0) {
        expired_ = true;
        return false;
      }
      if (wait(POLLIN, static_cast<int>(std::min<int64_t>(left, read_timeout_ms_)))) return true;
      // Silence until the deadline (poll waited at least the time left): the request is out of time. Silence
      // for read_timeout before it is an ordinary read timeout.
      expired_ = Clock::now() >= deadline_;
      return false;
    }
    bool is_writable() const override { return wait(POLLOUT, write_timeout_ms_) && alive(); }

    ssize_t read(char* ptr, size_t size) override {
      if (begin_ < end_) return take(ptr, size);
      if (!is_readable()) return -1;
      ssize_t n;
      do n = ::recv(fd_, buffer_, sizeof buffer_, 0);
      while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      begin_ = 0;
      end_ = static_cast<size_t>(n);
      return take(ptr, size);
    }
    ssize_t write(const char* ptr, size_t size) override {
      if (!is_writable()) return -1;
      ssize_t n;
      do n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
      while (n < 0 && errno == EINTR);
      return n;
    }
    void get_remote_ip_and_port(std::string& ip, int& port) const override { address(true, ip, port); }
    void get_local_ip_and_port(std::string& ip, int& port) const override { address(false, ip, port); }
    socket_t socket() const override { return fd_; }
    // The request did not arrive in time: httplib has answered 400; the connection must close, or the
    // client's next bytes would start a fresh request and a fresh deadline.
    bool expired() const { return expired_; }

   private:
    ssize_t take(char* ptr, size_t size) {
      const size_t n = std::min(size, end_ - begin_);
      std::memcpy(ptr, buffer_ + begin_, n);
      begin_ += n;
      return static_cast<ssize_t>(n);
    }
    bool wait(short events, int timeout_ms) const {
      pollfd p{fd_, events, 0};
      int r;
      do r = ::poll(&p, 1, timeout_ms);
      while (r < 0 && errno == EINTR);
      return r > 0;
    }
    // As httplib's is_socket_alive: not readable, or readable with data (not a close).
    bool alive() const {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 0) == 0) return true;
      char c;
      return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
    }
    void address(bool remote, std::string& ip, int& port) const {
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      const int r = remote ? ::getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len)
                           : ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
      if (r != 0) return;
      char host[NI_MAXHOST], serv[NI_MAXSERV];
      if (::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, serv, sizeof serv,
                        NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return;
      ip = host;
      port = std::atoi(serv);
    }

    int fd_;
    Clock::time_point deadline_;
    int read_timeout_ms_, write_timeout_ms_;
    char buffer_[4096];
    size_t begin_ = 0, end_ = 0;
    mutable bool expired_ = false;
  };

  // Waits up to the keep-alive timeout for the next request's first byte; false when none comes or the
  // server is stopping.
  bool next_request(int fd) const {
    const auto until = Clock::now() + std::chrono::seconds(keep_alive_timeout_sec_);
    while (svr_sock_ != INVALID_SOCKET && Clock::now() < until) {
      pollfd p{fd, POLLIN, 0};
      const int r = ::poll(&p, 1, 50);
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
    }
    return false;
  }

  bool process_and_close_socket(socket_t sock) override {
    const int read_ms = static_cast<int>(read_timeout_sec_ * 1000 + read_timeout_usec_ / 1000);
    const int write_ms = static_cast<int>(write_timeout_sec_ * 1000 + write_timeout_usec_ / 1000);
    bool ok = false;
    // httplib catches what a handler throws, not what its own request parsing does (std::bad_alloc): that
    // would end the worker thread, and the process, with the socket left open.
    try {
      for (size_t left = keep_alive_max_count_; left > 0 && next_request(sock); --left) {
        DeadlineStream stream(sock, Clock::now() + request_read_timeout, read_ms, write_ms);
        bool connection_closed = false;
        ok = process_request(stream, left == 1, connection_closed, nullptr);
        if (!ok || connection_closed || stream.expired()) break;
      }
    } catch (const std::exception& e) {
      spdlog::warn("http: connection dropped: {}", e.what());
      ok = false;
    }
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return ok;
  }
};

// httplib's ThreadPool whose enqueue cannot throw: its queue node is allocated on the accept thread, where a
// std::bad_alloc would end the process. Without memory for the node the connection is served on the accept
// thread instead (GuardedServer::process_and_close_socket throws nothing).
class WorkerPool final : public httplib::ThreadPool {
 public:
  using httplib::ThreadPool::ThreadPool;
  void enqueue(std::function<void()> fn) override {
    try {
      httplib::ThreadPool::enqueue(fn);  // a copy: `fn` stays whole if the queue cannot take it
    } catch (const std::bad_alloc&) {
      fn();
    }
  }
};

}  // namespace

// ---- keys file ------------------------------------------------------------------------------------

std::vector<ApiKey> load_keys(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(Errc::kNotFound, "keys file {} cannot be read", path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("keys") || !doc["keys"].is_array())
    fail(Errc::kInvalidArgument, "keys file {}: expected {{\"keys\": [{{\"key\": ..., \"user\": ..., \"groups\": [...], \"admin\": false}}]}}", path);
  std::vector<ApiKey> keys;
  size_t i = 0;
  for (const json& entry : doc["keys"]) {
    auto bad = [&](const char* what) { fail(Errc::kInvalidArgument, "keys file {}: entry {}: {}", path, i, what); };
    if (!entry.is_object()) bad("not an object");
    ApiKey key;
    if (!entry.contains("key") || !entry["key"].is_string()) bad("'key' must be a string");
    key.key = entry["key"].get<std::string>();
    if (key.key.size() < 16) bad("'key' is shorter than 16 characters");
    if (!entry.contains("user") || !entry["user"].is_string() || entry["user"].get<std::string>().empty()) bad("'user' must be a non-empty string");
    key.principal.user = entry["user"].get<std::string>();
    if (entry.contains("groups")) {
      if (!entry["groups"].is_array()) bad("'groups' must be an array of strings");
      for (const json& g : entry["groups"]) {
        if (!g.is_string() || g.get<std::string>().empty()) bad("'groups' must be an array of non-empty strings");
        key.principal.groups.push_back(g.get<std::string>());
      }
    }
    if (entry.contains("admin")) {
      if (!entry["admin"].is_boolean()) bad("'admin' must be true or false");
      key.principal.admin = entry["admin"].get<bool>();
    }
    for (const ApiKey& other : keys)
      if (other.key == key.key) bad("duplicate key");
    keys.push_back(std::move(key));
    ++i;
  }
  return keys;
}

// ---- the server -----------------------------------------------------------------------------------

struct HttpServer::Impl {
  Service& service;
  HttpOptions options;
  GuardedServer server;
  Metrics metrics;
  Admission admission;
  int port = 0;
  std::atomic<int> listen_fd{-1};

  Impl(Service& s, HttpOptions o)
      : service(s), options(std::move(o)), admission(s.config().workers, s.config().queue_depth) {}

  // Per-request state the wrapper logs and the handler fills in.
  struct Context {
    std::string route;
    std::string user = "-";
    Clock::time_point arrival = Clock::now();
    Clock::time_point deadline;
  };

  Principal authenticate(const httplib::Request& req, Context& ctx) {
    if (!options.keys) {
      ctx.user = options.local_principal.user;
      return options.local_principal;
    }
    const std::string header = req.get_header_value("Authorization");
    const std::string_view prefix = "Bearer ";
    if (header.size() <= prefix.size() || header.compare(0, prefix.size(), prefix) != 0)
      http_fail(401, "authentication_error", "missing_api_key", "send an API key as 'Authorization: Bearer KEY'");
    const std::string_view given = std::string_view(header).substr(prefix.size());
    const ApiKey* match = nullptr;
    for (const ApiKey& key : *options.keys)  // no early exit: every key is compared
      if (constant_time_equal(given, key.key)) match = &key;
    if (match == nullptr) http_fail(401, "authentication_error", "invalid_api_key", "the API key is not valid");
    ctx.user = match->principal.user;
    return match->principal;
  }

  // Holds one admitted slot; released on destruction (or handed to a stream).
  struct Slot {
    Admission* admission = nullptr;
    ~Slot() {
      if (admission) admission->leave();
    }
  };

  std::shared_ptr<Slot> admit(Context& ctx, Timings& timings) {
    const auto start = Clock::now();
    // Allocated before entering: a std::bad_alloc after enter() would hold a worker slot forever.
    auto slot = std::make_shared<Slot>();
    Admission::Result r = admission.enter(ctx.deadline);
    const double waited = seconds_since(start);
    if (r == Admission::Result::kFull)
      http_fail(429, "rate_limit_error", "queue_full", "the server is busy: too many requests are waiting; retry shortly");
    if (r == Admission::Result::kTimeout)
      http_fail(504, "timeout_error", "timeout", "the request timed out waiting for a worker");
    slot->admission = &admission;
    metrics.queue.observe(waited);
    timings.queue_ms = waited * 1000.0;
    return slot;
  }

  void send_error(httplib::Response& res, const HttpError& e) {
    res.status = e.status;
    if (e.status == 429) res.set_header("Retry-After", "1");
    if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
    res.set_content(error_body(e).dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  }

  // Wraps a handler: the error shape, the request counter, latency and one log line per request.
  using Handler = std::function<void(const httplib::Request&, httplib::Response&, Context&)>;
  httplib::Server::Handler wrap(const std::string& route, Handler handler, bool work) {
    return [this, route, handler, work](const httplib::Request& req, httplib::Response& res) {
      Context ctx;
      ctx.route = route;
      ctx.deadline = ctx.arrival + service.config().request_timeout;
      try {
        handler(req, res, ctx);
      } catch (const HttpError& e) {
        send_error(res, e);
      } catch (const Error& e) {
        send_error(res, from_error(e));
      } catch (const std::exception& e) {
        spdlog::error("http: {} internal error: {}", route, e.what());
        send_error(res, {500, "server_error", "internal_error", "internal error; see the server log"});
      }
      if (res.status == -1) res.status = 200;  // httplib's default, applied after the handler
      metrics.request(route, res.status);
      const double seconds = seconds_since(ctx.arrival);
      if (work && res.status < 400) metrics.end_to_end.observe(seconds);
      // Never the question, the documents or the key: route, status, who, how long.
      spdlog::info("http: {} {} {} user={} {:.1f} ms", req.method, route, res.status, ctx.user, seconds * 1000.0);
    };
  }

  // ---- routes

  void ask(const httplib::Request& req, httplib::Response& res, Context& ctx) {
    const Principal principal = authenticate(req, ctx);
    const json body = parse_body(req);
    const Config& config = service.config();
    AskRequest ask;
    ask.question = get_string(body, "question", true);
    if (ask.question.size() > config.max_question_bytes)
      http_fail(400, "invalid_request_error", "question_too_long",
                fmt::format("the question is {} bytes; the limit is {}", ask.question.size(), config.max_question_bytes));
    ask.sources = static_cast<int>(get_int(body, "sources", 0, 1, 20));
    ask.max_tokens = get_int(body, "max_tokens", 0, 1, config.max_tokens, "too_many_tokens");
    ask.temperature = static_cast<float>(get_number(body, "temperature", 0.0, 0.0, 2.0));
    ask.seed = static_cast<uint64_t>(get_int(body, "seed", 0, 0, INT64_MAX));
    const bool stream = get_bool(body, "stream", false);
    Timings queue_timing;
    std::shared_ptr<Slot> slot = admit(ctx, queue_timing);

    auto summary = [&, queue_ms = queue_timing.queue_ms](Answer& a) {
      a.timings.queue_ms = queue_ms;
      return json{{"supported", a.supported},
                  {"finish_reason", a.finish_reason},
                  {"usage", {{"prompt_tokens", a.prompt_tokens}, {"completion_tokens", a.completion_tokens}}},
                  {"timings", timings_json(a.timings)},
                  {"models", models_json(a.models)},
                  {"index_generation", a.generation},
                  {"prefix_cache_hit", a.prefix_cache_hit}};
    };
    if (!stream) {
      Clock::time_point last = Clock::now();
      Answer answer = service.ask(ask, principal, [&](std::string_view) {
        metrics.inter_token.observe(seconds_since(last));
        last = Clock::now();
        return true;
      }, RequestControl{ctx.deadline, nullptr});
      observe_stages(answer);
      json out = summary(answer);
      out["answer"] = answer.text;
      out["citations"] = citations_json(answer.citations);
      out["sources"] = citations_json(answer.sources);  // every passage given: why this answer
      res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, ask, principal, slot, summary, deadline = ctx.deadline](size_t, httplib::DataSink& sink) mutable {
          std::atomic<bool> gone{false};
          Clock::time_point last = Clock::now();
          bool first = true;
          auto write = [&](const std::string& event) {
            if (gone.load()) return false;
            if (!sink.is_writable() || !sink.write(event.data(), event.size())) gone.store(true);
            return !gone.load();
          };
          try {
            Answer answer = service.ask(ask, principal, [&](std::string_view text) {
              if (!first) metrics.inter_token.observe(seconds_since(last));
              first = false;
              last = Clock::now();
              return write(sse("delta", {{"text", std::string(text)}}));
            }, RequestControl{deadline, &gone});
            if (answer.finish_reason == "cancelled" || gone.load()) {
              metrics.cancelled();
              slot.reset();
              return false;
            }
            observe_stages(answer);
            write(sse("citations", {{"citations", citations_json(answer.citations)}}));
            json done = summary(answer);
            done["answer"] = answer.text;
            done["sources"] = citations_json(answer.sources);
            write(sse("done", done));
          } catch (const Error& e) {
            if (gone.load()) metrics.cancelled();
            else write(sse("error", error_body(from_error(e))));
          } catch (const std::exception& e) {
            spdlog::error("http: /v1/ask stream internal error: {}", e.what());
            write(sse("error", error_body({500, "server_error", "internal_error", "internal error; see the server log"})));
          }
          slot.reset();  // the worker is free as soon as the answer is written
          sink.done();
          return true;
        });
  }

  void observe_stages(const Answer& a) {
    const Timings& t = a.timings;
    if (a.completion_tokens > 1) metrics.generated(a.completion_tokens - 1, t.generate_ms / 1000.0);
    metrics.retrieve.observe(t.retrieve_ms / 1000.0);
    if (t.rerank_ms > 0) metrics.rerank.observe(t.rerank_ms / 1000.0);
    if (t.first_token_ms > 0) metrics.first_token.observe(t.first_token_ms / 1000.0);
  }

  void search(const httplib::Request& req, httplib::Response& res, Context& ctx) {
    const Principal principal = authenticate(req, ctx);
    const json body = parse_body(req);
    const std::string query = get_string(body, "query", true);
    if (query.size() > service.config().max_question_bytes)
      http_fail(400, "invalid_request_error", "question_too_long",
                fmt::format("the query is {} bytes; the limit is {}", query.size(), service.config().max_question_bytes));
    const int k = static_cast<int>(get_int(body, "k", 10, 1, 100));
    Timings queue_timing;
    std::shared_ptr<Slot> slot = admit(ctx, queue_timing);
    SearchResult result = service.search(query, k, principal);
    result.timings.queue_ms = queue_timing.queue_ms;
    metrics.retrieve.observe(result.timings.retrieve_ms / 1000.0);
    json out = {{"results", citations_json(result.hits)},
                {"timings", timings_json(result.timings)},
                {"models", models_json(result.models)},
                {"index_generation", result.generation}};
    res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  }

  void chat(const httplib::Request& req, httplib::Response& res, Context& ctx) {
    const Principal principal = authenticate(req, ctx);
    const json body = parse_body(req);
    const Config& config = service.config();
    const std::string model = get_string(body, "model", true);
    auto messages_it = body.find("messages");
    if (messages_it == body.end() || !messages_it->is_array() || messages_it->empty())
      http_fail(400, "invalid_request_error", "invalid_type", "'messages' must be a non-empty array");
    ChatRequest chat;
    for (const json& m : *messages_it) {
      if (!m.is_object()) wrong_type("messages[]", "an object");
      ChatMessage message;
      message.role = get_string(m, "role", true);
      auto content = m.find("content");
      if (content == m.end() || content->is_null()) {
        message.content = "";
      } else if (content->is_string()) {
        message.content = content->get<std::string>();
      } else if (content->is_array()) {  // [{"type": "text", "text": "..."}]
        for (const json& part : *content) {
          if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
            http_fail(400, "invalid_request_error", "unsupported", "only text content parts are supported");
          message.content += part["text"].get<std::string>();
        }
      } else {
        wrong_type("messages[].content", "a string or an array of text parts");
      }
      chat.messages.push_back(std::move(message));
    }
    int64_t max_tokens = get_int(body, "max_tokens", 0, 1, config.max_tokens, "too_many_tokens");
    max_tokens = get_int(body, "max_completion_tokens", max_tokens, 1, config.max_tokens, "too_many_tokens");
    chat.max_tokens = max_tokens;
    chat.temperature = static_cast<float>(get_number(body, "temperature", 0.0, 0.0, 2.0));
    chat.top_p = static_cast<float>(get_number(body, "top_p", 1.0, 1e-6, 1.0));
    chat.seed = static_cast<uint64_t>(get_int(body, "seed", 0, 0, INT64_MAX));
    if (auto stop = body.find("stop"); stop != body.end() && !stop->is_null()) {
      if (stop->is_string()) chat.stop.push_back(stop->get<std::string>());
      else if (stop->is_array() && stop->size() <= 4) {
        for (const json& s : *stop) {
          if (!s.is_string()) wrong_type("stop", "a string or up to 4 strings");
          chat.stop.push_back(s.get<std::string>());
        }
      } else wrong_type("stop", "a string or up to 4 strings");
    }
    const bool stream = get_bool(body, "stream", false);
    const bool rag = model == "rag";
    AskRequest ask;
    if (rag) {
      for (auto it = chat.messages.rbegin(); it != chat.messages.rend(); ++it)
        if (it->role == "user") {
          ask.question = it->content;
          break;
        }
      if (ask.question.empty()) http_fail(400, "invalid_request_error", "missing_field", "model rag needs a user message");
      if (ask.question.size() > config.max_question_bytes)
        http_fail(400, "invalid_request_error", "question_too_long",
                  fmt::format("the last user message is {} bytes; the limit is {}", ask.question.size(), config.max_question_bytes));
      ask.max_tokens = chat.max_tokens;
      ask.temperature = chat.temperature;
      ask.seed = chat.seed;
    }
    Timings queue_timing;
    std::shared_ptr<Slot> slot = admit(ctx, queue_timing);
    const std::string id = random_id("chatcmpl-");
    const int64_t created = unix_now();
    auto completion = [&, id, created, model](const std::string& text, const std::string& finish, int64_t prompt_tokens,
                                              int64_t completion_tokens) {
      return json{{"id", id},
                  {"object", "chat.completion"},
                  {"created", created},
                  {"model", model},
                  {"choices", json::array({{{"index", 0},
                                            {"message", {{"role", "assistant"}, {"content", text}}},
                                            {"finish_reason", openai_finish(finish)},
                                            {"logprobs", nullptr}}})},
                  {"usage", {{"prompt_tokens", prompt_tokens},
                             {"completion_tokens", completion_tokens},
                             {"total_tokens", prompt_tokens + completion_tokens}}}};
    };
    if (!stream) {
      json out;
      if (rag) {
        Answer answer = service.ask(ask, principal, {}, RequestControl{ctx.deadline, nullptr});
        observe_stages(answer);
        out = completion(answer.text, answer.finish_reason, answer.prompt_tokens, answer.completion_tokens);
        out["citations"] = citations_json(answer.citations);
        out["models"] = models_json(answer.models);
        out["index_generation"] = answer.generation;
      } else {
        ChatResult result = service.chat(chat, {}, RequestControl{ctx.deadline, nullptr});
        if (result.timings.first_token_ms > 0) metrics.first_token.observe(result.timings.first_token_ms / 1000.0);
        out = completion(result.text, result.finish_reason, result.prompt_tokens, result.completion_tokens);
      }
      res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, rag, ask, chat, principal, slot, id, created, model, deadline = ctx.deadline](size_t, httplib::DataSink& sink) mutable {
          std::atomic<bool> gone{false};
          auto write = [&](const std::string& event) {
            if (gone.load()) return false;
            if (!sink.is_writable() || !sink.write(event.data(), event.size())) gone.store(true);
            return !gone.load();
          };
          auto chunk = [&](json delta, json finish) {
            return json{{"id", id},
                        {"object", "chat.completion.chunk"},
                        {"created", created},
                        {"model", model},
                        {"choices", json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}, {"logprobs", nullptr}}})}};
          };
          write(sse(nullptr, chunk({{"role", "assistant"}, {"content", ""}}, nullptr)));
          Clock::time_point last = Clock::now();
          bool first = true;
          auto on_text = [&](std::string_view text) {
            if (!first) metrics.inter_token.observe(seconds_since(last));
            first = false;
            last = Clock::now();
            return write(sse(nullptr, chunk({{"content", std::string(text)}}, nullptr)));
          };
          try {
            json final_chunk;
            if (rag) {
              Answer answer = service.ask(ask, principal, on_text, RequestControl{deadline, &gone});
              if (!gone.load()) observe_stages(answer);
              final_chunk = chunk(json::object(), openai_finish(answer.finish_reason));
              final_chunk["citations"] = citations_json(answer.citations);
              final_chunk["usage"] = {{"prompt_tokens", answer.prompt_tokens},
                                      {"completion_tokens", answer.completion_tokens},
                                      {"total_tokens", answer.prompt_tokens + answer.completion_tokens}};
            } else {
              ChatResult result = service.chat(chat, on_text, RequestControl{deadline, &gone});
              if (result.timings.first_token_ms > 0) metrics.first_token.observe(result.timings.first_token_ms / 1000.0);
              final_chunk = chunk(json::object(), openai_finish(result.finish_reason));
              final_chunk["usage"] = {{"prompt_tokens", result.prompt_tokens},
                                      {"completion_tokens", result.completion_tokens},
                                      {"total_tokens", result.prompt_tokens + result.completion_tokens}};
            }
            if (gone.load()) {
              metrics.cancelled();
              slot.reset();
              return false;
            }
            write(sse(nullptr, final_chunk));
            write("data: [DONE]\n\n");
          } catch (const Error& e) {
            if (gone.load()) metrics.cancelled();
            else write(sse(nullptr, error_body(from_error(e))));
          } catch (const std::exception& e) {
            spdlog::error("http: /v1/chat/completions stream internal error: {}", e.what());
            write(sse(nullptr, error_body({500, "server_error", "internal_error", "internal error; see the server log"})));
          }
          slot.reset();
          sink.done();
          return true;
        });
  }

  void embeddings(const httplib::Request& req, httplib::Response& res, Context& ctx) {
    authenticate(req, ctx);
    const json body = parse_body(req);
    std::vector<std::string> inputs;
    auto input = body.find("input");
    if (input == body.end()) http_fail(400, "invalid_request_error", "missing_field", "'input' is required");
    if (input->is_string()) inputs.push_back(input->get<std::string>());
    else if (input->is_array()) {
      for (const json& s : *input) {
        if (!s.is_string()) wrong_type("input", "a string or an array of strings");
        inputs.push_back(s.get<std::string>());
      }
    } else wrong_type("input", "a string or an array of strings");
    for (const auto& s : inputs)
      if (s.size() > service.config().max_question_bytes * 4)
        http_fail(400, "invalid_request_error", "input_too_long", fmt::format("an input is {} bytes; the limit is {}", s.size(), service.config().max_question_bytes * 4));
    const std::string format = get_string(body, "encoding_format", false, "float");
    if (format != "float" && format != "base64")
      http_fail(400, "invalid_request_error", "out_of_range", "'encoding_format' must be float or base64");
    const std::string model = get_string(body, "model", false, service.embedder_name());
    Timings queue_timing;
    std::shared_ptr<Slot> slot = admit(ctx, queue_timing);
    std::vector<std::vector<float>> vectors = service.embed(inputs);
    json data = json::array();
    int64_t tokens = 0;
    for (size_t i = 0; i < vectors.size(); ++i) {
      json embedding;
      if (format == "base64") {
        std::string bytes(reinterpret_cast<const char*>(vectors[i].data()), vectors[i].size() * sizeof(float));
        embedding = base64_encode(bytes);
      } else {
        embedding = vectors[i];
      }
      data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", embedding}});
      tokens += static_cast<int64_t>(inputs[i].size() / 4 + 1);  // an estimate: the encoder does not report counts
    }
    json out = {{"object", "list"}, {"data", data}, {"model", model}, {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
    res.set_content(out.dump(), "application/json");
  }

  json document_json(const DocumentInfo& d) {
    return {{"id", d.id}, {"path", d.path}, {"title", d.title}, {"type", d.type}, {"status", d.status},
            {"error", d.error}, {"chunks", d.chunks}, {"acl", d.acl}};
  }

  void require_admin(const Principal& p) {
    if (!p.admin) http_fail(403, "permission_error", "admin_required", "the document routes need an admin key");
  }

  void upload(const httplib::Request& req, httplib::Response& res, Context& ctx) {
    require_admin(authenticate(req, ctx));
    const json body = parse_body(req);
    DocumentUpload upload;
    upload.name = get_string(body, "name", true);
    if (body.contains("content_base64")) {
      const std::string encoded = get_string(body, "content_base64", true);
      std::optional<std::string> decoded = base64_decode(encoded);
      if (!decoded) http_fail(400, "invalid_request_error", "invalid_base64", "'content_base64' is not valid base64");
      upload.content = std::move(*decoded);
    } else {
      upload.content = get_string(body, "content", true);
    }
    if (auto acl = body.find("acl"); acl != body.end() && !acl->is_null()) {
      if (!acl->is_array()) wrong_type("acl", "an array of \"user:NAME\" / \"group:NAME\" strings");
      for (const json& p : *acl) {
        if (!p.is_string()) wrong_type("acl", "an array of \"user:NAME\" / \"group:NAME\" strings");
        upload.acl.push_back(p.get<std::string>());
      }
    }
    DocumentInfo info = service.upload(upload);
    res.status = 201;
    res.set_content(json{{"document", document_json(info)}}.dump(), "application/json");
  }

  void list_documents(const httplib::Request& req, httplib::Response& res, Context& ctx) {
    require_admin(authenticate(req, ctx));
    json docs = json::array();
    for (const auto& d : service.documents()) docs.push_back(document_json(d));
    res.set_content(json{{"documents", docs}}.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  }

  void delete_document(const httplib::Request& req, httplib::Response& res, Context& ctx) {
    require_admin(authenticate(req, ctx));
    int64_t id = 0;
    try {
      id = std::stoll(req.matches[1].str());
    } catch (const std::exception&) {
      http_fail(404, "not_found_error", "no_such_document", "no such document");
    }
    try {
      if (!service.remove_document(id)) http_fail(404, "not_found_error", "no_such_document", fmt::format("no document {}", id));
    } catch (const Error& e) {
      if (e.code() == Errc::kUnsupported) http_fail(409, "invalid_request_error", "not_uploaded", e.what());
      throw;
    }
    res.set_content(json{{"deleted", true}, {"id", id}}.dump(), "application/json");
  }

  void setup() {
    const Config& config = service.config();
    const size_t threads = static_cast<size_t>(config.workers + config.queue_depth + 8);
    server.new_task_queue = [threads] { return new WorkerPool(threads); };
    server.set_payload_max_length(std::max(config.max_body_bytes, config.max_upload_bytes));
    server.set_read_timeout(10, 0);
    server.request_read_timeout = options.request_read_timeout;
    server.set_write_timeout(10, 0);
    server.set_keep_alive_timeout(2);
    server.set_keep_alive_max_count(100);
    // httplib 0.11.4 listens with a backlog of 5: a burst of connections overflows it and clients see resets.
    // Capture the socket (keeping httplib's default SO_REUSEADDR) so bind() can raise the backlog.
    server.set_socket_options([this](int fd) {
      int yes = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      // Accepted sockets inherit it: without it a response's header and body writes meet Nagle's algorithm
      // and the client's delayed ACK, adding ~40 ms to every keep-alive request.
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
      listen_fd = fd;
    });

    // Bodies are capped per route: uploads may be larger than questions. Runs after the headers are read
    // and before the body is. A refusal here is counted under the route's name, never under the request's
    // path: the path is the client's bytes (a label per path grows /metrics without bound, and a decoded
    // newline or quote in it would forge lines of the exposition text).
    server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      const bool upload = req.path == "/v1/documents";
      static const char* const kBodyRoutes[] = {"/v1/ask", "/v1/search", "/v1/chat/completions", "/v1/embeddings", "/v1/documents"};
      std::string route = "unknown";
      for (const char* r : kBodyRoutes)
        if (req.path == r) route = r;
      // httplib 0.11.4 reads any number of header lines (each up to 8 KiB) and has no limit of its own.
      if (req.headers.size() > kMaxHeaderCount) {
        send_error(res, {431, "invalid_request_error", "too_many_headers",
                         fmt::format("the request has {} header lines; the limit is {}", req.headers.size(), kMaxHeaderCount)});
        metrics.request(route, 431);
        return httplib::Server::HandlerResponse::Handled;
      }
      const size_t limit = upload ? service.config().max_upload_bytes : service.config().max_body_bytes;
      size_t length = 0;
      try {
        length = req.has_header("Content-Length") ? std::stoull(req.get_header_value("Content-Length")) : 0;
      } catch (const std::exception&) {
        length = SIZE_MAX;
      }
      if (length > limit || req.body.size() > limit) {
        send_error(res, {413, "invalid_request_error", "payload_too_large",
                         fmt::format("the request body is {} bytes; the limit is {}", std::max(length, req.body.size()), limit)});
        metrics.request(route, 413);
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    server.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      HttpError e{res.status, res.status >= 500 ? "server_error" : "invalid_request_error", "error",
                  fmt::format("HTTP status {}", res.status)};
      if (res.status == 404) e = {404, "not_found_error", "unknown_route", fmt::format("no route {} {}", req.method, req.path.substr(0, 200))};
      if (res.status == 413) e = {413, "invalid_request_error", "payload_too_large", "the request body is too large"};
      if (res.status == 400) e = {400, "invalid_request_error", "bad_request", "the request is malformed"};
      send_error(res, e);
      if (res.status == 404) metrics.request("unknown", 404);
      return httplib::Server::HandlerResponse::Handled;
    }));

    server.Post("/v1/ask", wrap("/v1/ask", [this](auto& q, auto& r, auto& c) { ask(q, r, c); }, true));
    server.Post("/v1/search", wrap("/v1/search", [this](auto& q, auto& r, auto& c) { search(q, r, c); }, true));
    server.Post("/v1/chat/completions", wrap("/v1/chat/completions", [this](auto& q, auto& r, auto& c) { chat(q, r, c); }, true));
    server.Post("/v1/embeddings", wrap("/v1/embeddings", [this](auto& q, auto& r, auto& c) { embeddings(q, r, c); }, true));
    server.Post("/v1/documents", wrap("/v1/documents", [this](auto& q, auto& r, auto& c) { upload(q, r, c); }, false));
    server.Get("/v1/documents", wrap("/v1/documents", [this](auto& q, auto& r, auto& c) { list_documents(q, r, c); }, false));
    server.Delete(R"(/v1/documents/(\d+))", wrap("/v1/documents/:id", [this](auto& q, auto& r, auto& c) { delete_document(q, r, c); }, false));
    server.Get("/v1/models", wrap("/v1/models", [this](auto& q, auto& r, auto& c) {
      authenticate(q, c);
      json data = json::array({{{"id", "rag"}, {"object", "model"}, {"created", 0}, {"owned_by", "rag"}}});
      const Models m = service.models();
      if (m.generator != "none") data.push_back({{"id", m.generator}, {"object", "model"}, {"created", 0}, {"owned_by", "rag"}});
      if (m.embedder != "none") data.push_back({{"id", m.embedder}, {"object", "model"}, {"created", 0}, {"owned_by", "rag"}});
      r.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
    }, false));
    server.Get("/healthz", wrap("/healthz", [](auto&, auto& r, auto&) { r.set_content("{\"status\":\"ok\"}", "application/json"); }, false));
    server.Get("/readyz", wrap("/readyz", [this](auto&, auto& r, auto&) {
      ServiceStats s = service.stats();
      if (!s.ready) {
        r.status = 503;
        r.set_content(json{{"status", "not ready"}, {"reason", "no index: run rag ingest"}}.dump(), "application/json");
        return;
      }
      r.set_content(json{{"status", "ready"}, {"index_generation", s.generation}, {"models", models_json(service.models())}}.dump(),
                    "application/json");
    }, false));
    server.Get("/metrics", wrap("/metrics", [this](auto&, auto& r, auto&) {
      ServiceStats s = service.stats();
      MetricsSnapshot snap;
      snap.generation = s.generation;
      snap.tokens_generated = s.tokens_generated;
      snap.prefix_hit_tokens = s.prefix_hit_tokens;
      snap.prefix_miss_tokens = s.prefix_miss_tokens;
      snap.running = admission.running();
      snap.waiting = admission.waiting();
      snap.ready = s.ready;
      snap.kv_bytes = s.kv_bytes;
      snap.kv_blocks_used = s.kv_blocks_used;
      snap.kv_blocks_cached = s.kv_blocks_cached;
      snap.kv_blocks_free = s.kv_blocks_free;
      r.set_content(metrics.render(snap), "text/plain; version=0.0.4");
    }, false));
  }
};

HttpServer::HttpServer(Service& service, HttpOptions options) : impl_(std::make_unique<Impl>(service, std::move(options))) {
  impl_->setup();
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  const HttpOptions& o = impl_->options;
  if (o.port == 0) impl_->port = impl_->server.bind_to_any_port(o.host);
  else impl_->port = impl_->server.bind_to_port(o.host, o.port) ? o.port : -1;
  if (impl_->port <= 0) fail(Errc::kIo, "serve: cannot listen on {}:{} (in use, or not an address of this machine)", o.host, o.port);
  if (impl_->listen_fd >= 0) ::listen(impl_->listen_fd, 1024);  // Linux updates the backlog of a listening socket
  return impl_->port;
}

void HttpServer::run() { impl_->server.listen_after_bind(); }

void HttpServer::stop() { impl_->server.stop(); }

int HttpServer::port() const { return impl_->port; }

}  // namespace rag::server
