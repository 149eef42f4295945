// Hostile HTTP requests against the in-process server, enumerated: each is sent as raw bytes (so nothing
// in a client library tidies it up), must be answered with its 4xx status and a JSON error body
// {"error": {"message", "type", "code"}}, and the server must answer GET /healthz with 200 afterwards.
// tests/server/http-test.cpp covers the ordinary limits (body size, question length, max_tokens, auth);
// these are the malformed and abusive ones of issue 6.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "index/index.h"
#include "tests/support/in-process-server.h"
#include "tests/support/raw-http.h"
#include "tests/support/support.h"

namespace rag::server {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

const std::string kKey = "hostile-admin-key-0123456789";
// Short, so the slow-client case is quick; the default is 30 s.
constexpr std::chrono::milliseconds kRequestReadTimeout{2000};

// A request with the admin key, a JSON content type and an exact Content-Length; `headers` are extra lines,
// each ending in CRLF.
std::string request(const std::string& method, const std::string& path, const std::string& body,
                    const std::string& headers = "") {
  return method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + kKey +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n" + headers + "\r\n" + body;
}

class HardeningHttp : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    test::write_file(*dir_ / "docs/handbook.md",
                     "# Handbook\n\nExpenses must be submitted within 30 days. The firmware team sits on floor two.\n");
    index::IngestOptions options;
    options.roots = {*dir_ / "docs"};
    options.threads = 1;
    index::ingest(*dir_ / "data", options);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    Config config;
    config.data_dir = *dir_ / "data";
    HttpOptions http;
    http.keys = std::vector<ApiKey>{{kKey, {"root", {"everyone"}, true}}};
    http.request_read_timeout = kRequestReadTimeout;
    server_ = std::make_unique<test::InProcessServer>(config, http);
  }
  void TearDown() override { server_.reset(); }

  int port() const { return server_->port(); }

  void expect_healthy() {
    const test::RawReply health = test::raw_exchange(port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10s);
    EXPECT_EQ(health.status, 200) << "after this case /healthz answered: " << health.body;
  }

  static test::TempDir* dir_;
  std::unique_ptr<test::InProcessServer> server_;
};

test::TempDir* HardeningHttp::dir_ = nullptr;

void expect_json_error(const test::RawReply& reply, int status, const std::string& code) {
  EXPECT_EQ(reply.status, status) << reply.body.substr(0, 300);
  const json body = json::parse(reply.body, nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << "not JSON: " << reply.body.substr(0, 300);
  ASSERT_TRUE(body.contains("error")) << reply.body.substr(0, 300);
  EXPECT_EQ(body["error"]["code"], code) << reply.body.substr(0, 300);
  EXPECT_TRUE(body["error"]["message"].is_string());
  EXPECT_TRUE(body["error"]["type"].is_string());
}

std::string nested(const std::string& open, const std::string& close, int depth, const std::string& inner = "1") {
  std::string out;
  out.reserve((open.size() + close.size()) * depth + inner.size());
  for (int i = 0; i < depth; ++i) out += open;
  out += inner;
  for (int i = 0; i < depth; ++i) out += close;
  return out;
}

struct Case {
  const char* name;
  std::string request;  // raw bytes
  int status;
  const char* code;
};

std::vector<Case> cases() {
  auto ask = [](const std::string& body) { return request("POST", "/v1/ask", body); };
  auto search = [](const std::string& body) { return request("POST", "/v1/search", body); };
  auto chat = [](const std::string& extra) {
    return request("POST", "/v1/chat/completions",
                   R"({"model": "rag", "messages": [{"role": "user", "content": "expenses"}])" + extra + "}");
  };
  std::string many_headers;
  for (int i = 0; i < 10000; ++i) many_headers += "X-Filler-" + std::to_string(i) + ": v\r\n";
  return {
      // nesting
      {"array nested 100k deep", ask(nested("[", "]", 100000)), 400, "invalid_json"},
      {"question nested 100k deep", ask(R"({"question": )" + nested("[", "]", 100000) + "}"), 400, "invalid_type"},
      {"objects nested 100k deep", ask(nested(R"({"a": )", "}", 100000)), 400, "missing_field"},
      {"unclosed nesting 100k deep", ask(std::string(100000, '[')), 400, "invalid_json"},
      // literals JSON does not have
      {"NaN temperature", ask(R"({"question": "expenses", "temperature": NaN})"), 400, "invalid_json"},
      {"Infinity temperature", ask(R"({"question": "expenses", "temperature": Infinity})"), 400, "invalid_json"},
      {"-Infinity max_tokens", ask(R"({"question": "expenses", "max_tokens": -Infinity})"), 400, "invalid_json"},
      // numbers out of range
      {"k 1e400", search(R"({"query": "expenses", "k": 1e400})"), 400, "invalid_json"},
      {"k -1", search(R"({"query": "expenses", "k": -1})"), 400, "out_of_range"},
      {"k 2^64", search(R"({"query": "expenses", "k": 18446744073709551616})"), 400, "invalid_type"},
      {"k 2^63", search(R"({"query": "expenses", "k": 9223372036854775808})"), 400, "out_of_range"},
      {"k 2^31", search(R"({"query": "expenses", "k": 2147483648})"), 400, "out_of_range"},
      {"k 1.5", search(R"({"query": "expenses", "k": 1.5})"), 400, "invalid_type"},
      {"max_tokens 1e400", ask(R"({"question": "expenses", "max_tokens": 1e400})"), 400, "invalid_json"},
      {"max_tokens -1", ask(R"({"question": "expenses", "max_tokens": -1})"), 400, "too_many_tokens"},
      {"max_tokens 2^64", ask(R"({"question": "expenses", "max_tokens": 18446744073709551616})"), 400, "invalid_type"},
      {"max_tokens 2^63 - 1", ask(R"({"question": "expenses", "max_tokens": 9223372036854775807})"), 400, "too_many_tokens"},
      {"sources 2^32 + 1", ask(R"({"question": "expenses", "sources": 4294967297})"), 400, "out_of_range"},
      {"seed -1", ask(R"({"question": "expenses", "seed": -1})"), 400, "out_of_range"},
      {"temperature 1e308", ask(R"({"question": "expenses", "temperature": 1e308})"), 400, "out_of_range"},
      {"temperature -1e-300", ask(R"({"question": "expenses", "temperature": -1e-300})"), 400, "out_of_range"},
      {"chat max_tokens 2^64", chat(R"(, "max_tokens": 18446744073709551616)"), 400, "invalid_type"},
      {"chat max_completion_tokens -1", chat(R"(, "max_completion_tokens": -1)"), 400, "too_many_tokens"},
      {"chat top_p 0", chat(R"(, "top_p": 0)"), 400, "out_of_range"},
      // wrong types
      {"question a number", ask(R"({"question": 42})"), 400, "invalid_type"},
      {"question an object", ask(R"({"question": {"text": "expenses"}})"), 400, "invalid_type"},
      {"question null", ask(R"({"question": null})"), 400, "missing_field"},
      {"k a string", search(R"({"query": "expenses", "k": "10"})"), 400, "invalid_type"},
      {"k true", search(R"({"query": "expenses", "k": true})"), 400, "invalid_type"},
      {"stream 1", ask(R"({"question": "expenses", "stream": 1})"), 400, "invalid_type"},
      {"messages an object", request("POST", "/v1/chat/completions", R"({"model": "rag", "messages": {"role": "user"}})"), 400,
       "invalid_type"},
      {"message content a number", request("POST", "/v1/chat/completions", R"({"model": "rag", "messages": [{"role": "user", "content": 7}]})"),
       400, "invalid_type"},
      {"stop of 5 strings", chat(R"(, "stop": ["a", "b", "c", "d", "e"])"), 400, "invalid_type"},
      {"body a string", ask(R"("expenses")"), 400, "invalid_json"},
      {"empty body", ask(""), 400, "invalid_json"},
      // invalid UTF-8 and escapes
      {"question with a lone continuation byte", ask("{\"question\": \"expenses \x80 days\"}"), 400, "invalid_json"},
      {"question with an overlong encoding", ask("{\"question\": \"\xc0\xaf\"}"), 400, "invalid_json"},
      {"question with a surrogate encoded in UTF-8", ask("{\"question\": \"\xed\xa0\x80\"}"), 400, "invalid_json"},
      {"question with a lone surrogate escape", ask(R"({"question": "\ud800 days"})"), 400, "invalid_json"},
      {"question with a NUL escape", ask(R"({"question": "\u0000"})"), 200, nullptr},
      {"chat content truncated UTF-8", chat(R"(, "user": "x)" "\xe2\x82" R"(")"), 400, "invalid_json"},
      // headers and framing
      {"10k headers", request("POST", "/v1/search", R"({"query": "expenses"})", many_headers), 431, "too_many_headers"},
      {"Content-Length of 1 GB, a few bytes sent",
       "POST /v1/ask HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kKey +
           "\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n{\"question\": \"exp",
       413, "payload_too_large"},
      {"Content-Length 2^64 + 1",
       "POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551617\r\n\r\n{}", 413, "payload_too_large"},
      {"Content-Length negative", "POST /v1/ask HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}", 413,
       "payload_too_large"},
      {"gzip body", request("POST", "/v1/ask", "\x1f\x8b\x08", "Content-Encoding: gzip\r\n"), 415, "unsupported_encoding"},
  };
}

TEST_F(HardeningHttp, EveryHostileRequestIsA4xxJsonErrorAndTheServerStaysHealthy) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const test::RawReply reply = test::raw_exchange(port(), c.request, 15s);
    if (c.code == nullptr) {
      EXPECT_EQ(reply.status, c.status) << reply.body.substr(0, 300);
    } else {
      expect_json_error(reply, c.status, c.code);
    }
    expect_healthy();
  }
}

// Regression: a request refused before routing (413, 431) was counted under its raw, decoded path, so each
// distinct path added a /metrics series forever and a "%0A" in it forged exposition lines.
TEST_F(HardeningHttp, RefusedRequestsNeverPutTheirPathIntoMetrics) {
  for (int i = 0; i < 30; ++i) {
    const std::string path = "/v1/x" + std::to_string(i) + "%22%7D%201%0Arag_forged_total%201%0A";
    const test::RawReply reply = test::raw_exchange(
        port(), "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n{", 10s);
    expect_json_error(reply, 413, "payload_too_large");
  }
  std::string many_headers;
  for (int i = 0; i < 200; ++i) many_headers += "X-" + std::to_string(i) + ": v\r\n";
  expect_json_error(test::raw_exchange(port(), request("POST", "/v1/ask%0Arag_forged_total%202", "{}", many_headers), 10s), 431,
                    "too_many_headers");
  const test::RawReply metrics =
      test::raw_exchange(port(), "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10s);
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.body.find("rag_forged_total"), std::string::npos) << metrics.body;
  EXPECT_EQ(metrics.body.find("/v1/x"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("rag_requests_total{route=\"unknown\",status=\"413\"} 30"), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("rag_requests_total{route=\"unknown\",status=\"431\"} 1"), std::string::npos) << metrics.body;
}

// Regression: a client that sends one byte every 100 ms, forever, was never cut (httplib 0.11.4 times out
// each read, not the request) and held a worker thread for as long as it kept trickling. The server must
// cut it once the request has taken HttpOptions::request_read_timeout, and answer others meanwhile.
TEST_F(HardeningHttp, SlowClientIsCutAndDoesNotHoldAWorker) {
  test::RawConnection slow(port());
  const std::string start = "POST /v1/search HTTP/1.1\r\nHost: x\r\n";
  ASSERT_TRUE(slow.send(start));
  const auto began = std::chrono::steady_clock::now();
  bool cut = false;
  int sent = 0;
  const std::string filler = "X-Slow: abcdefgh\r\n";
  while (std::chrono::steady_clock::now() - began < kRequestReadTimeout + 8s) {
    if (!slow.send(std::string(1, filler[sent % filler.size()]))) {
      cut = true;
      break;
    }
    ++sent;
    if (slow.closed_by_peer(100ms)) {
      cut = true;
      break;
    }
    if (sent == 5) expect_healthy();  // others are served while it trickles
  }
  const auto took = std::chrono::steady_clock::now() - began;
  EXPECT_TRUE(cut) << "a client trickling one byte per 100 ms was still connected after "
                   << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - began).count()
                   << " s (" << sent << " bytes); it received: " << slow.received();
  EXPECT_GE(took, kRequestReadTimeout - 200ms) << "cut before its time";
  // What it gets before the close, if anything, is a 4xx.
  if (!slow.received().empty()) {
    EXPECT_EQ(slow.received().substr(0, 10), "HTTP/1.1 4") << slow.received();
  }
  expect_healthy();
}

}  // namespace
}  // namespace rag::server
