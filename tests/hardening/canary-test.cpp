// Promise 2 of docs/reliability.md: no principal receives anything derived from a document it may not read.
//
// Canary: a document only alice may read holds a secret string; bob then asks about it through every route
// (search, ask as JSON and SSE, chat completions with model "rag" streaming and not, and with the generator
// model, the document routes, embeddings, models, metrics, health, and error answers), after alice has asked
// the same questions so every cache (prefix KV blocks, retrieval) is warm with it. No byte of any response
// to bob holds the secret, the document's path or its title. alice's own answers hold them: the oracle that
// the test can see a leak at all.
//
// Revocation: bob is in group gee and reads the gee document, warming the caches; his key is then given
// to a principal without gee (the HTTP front end restarts over the same Service, so models, prefix cache and
// retrieval state are kept) and the same requests return nothing from that document.
//
// tests/server/http-test.cpp checks two principals on search/ask/chat for their folder paths; this adds the
// remaining routes, the secret in answer text and snippets, warmed caches and the revocation.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "index/index.h"
#include "tests/support/in-process-server.h"
#include "tests/support/support.h"
#include "tests/support/tiny-generator.h"

namespace rag::server {
namespace {

using json = nlohmann::json;

const std::string kAliceKey = "alice-key-0123456789abcdef";
const std::string kBobKey = "bob-key-0123456789abcdef00";
const std::string kAdminKey = "admin-key-0123456789abcdef";

const std::string kCanary = "ZXQCANARY41D9";
const std::string kCanaryPath = "launch-codes.md";
const std::string kCanaryTitle = "Quarterly Launch Codes";
const std::string kGroupSecret = "HERONSECRET77";
const std::string kGroupPath = "heron-plan.md";
const std::string kGroupTitle = "Heron Plan";

class HardeningCanary : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const test::TempDir& d = *dir_;
    test::write_file(d / "docs/alice/.ragacl", "user:alice\n");
    test::write_file(d / "docs/alice/" + kCanaryPath,
                     "# " + kCanaryTitle + "\n\nThe launch code for the firmware rover is " + kCanary +
                         ". Launch codes for the rover rotate every quarter.\n");
    test::write_file(d / "docs/gee/.ragacl", "group:gee\n");
    test::write_file(d / "docs/gee/" + kGroupPath,
                     "# " + kGroupTitle + "\n\nThe heron migration budget is " + kGroupSecret +
                         ". The firmware team reviews the heron migration plan.\n");
    test::write_file(d / "docs/open/handbook.md",
                     "# Handbook\n\nExpenses must be submitted within 30 days. The firmware team sits on floor two.\n");
    index::IngestOptions options;
    options.roots = {d / "docs"};
    options.threads = 1;
    index::ingest(d / "data", options);
    test::write_tiny_generator(d / "tiny.gguf");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static Config config() {
    Config c;
    c.data_dir = *dir_ / "data";
    c.generate_model = *dir_ / "tiny.gguf";
    c.default_max_tokens = 24;
    c.kv_memory_bytes = 8 << 20;
    return c;
  }
  static HttpOptions keys(const std::vector<std::string>& bob_groups) {
    HttpOptions http;
    http.keys = std::vector<ApiKey>{{kAliceKey, {"alice", {}, false}},
                                    {kBobKey, {"bob", bob_groups, false}},  // callers always give bob "everyone" (the open folder)
                                    {kAdminKey, {"root", {"everyone"}, true}}};
    return http;
  }

  static test::TempDir* dir_;
};

test::TempDir* HardeningCanary::dir_ = nullptr;

// One request; the whole response as bytes: status line, headers and body (streamed bodies as they came).
std::string exchange(int port, const std::string& method, const std::string& path, const std::string& key,
                     const std::string& body = "") {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(60, 0);
  httplib::Request req;
  req.method = method;
  req.path = path;
  if (!key.empty()) req.set_header("Authorization", "Bearer " + key);
  std::string streamed;
  if (!body.empty()) {
    req.body = body;
    req.set_header("Content-Type", "application/json");
  }
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    streamed.append(data, n);
    return true;
  };
  httplib::Response res;
  httplib::Error error;
  EXPECT_TRUE(client.send(req, res, error)) << method << " " << path << ": " << httplib::to_string(error);
  std::string out = std::to_string(res.status) + "\n";
  for (const auto& [name, value] : res.headers) out += name + ": " + value + "\n";
  return out + "\n" + res.body + streamed;
}

struct Route {
  std::string method, path, body;
};

// Every route, asked about the document's own words (never its secret, which the asker does not know).
std::vector<Route> routes(const std::string& topic) {
  std::vector<Route> out;
  for (int k : {5, 100}) out.push_back({"POST", "/v1/search", json{{"query", topic}, {"k", k}}.dump()});
  for (int seed = 0; seed < 3; ++seed)
    out.push_back({"POST", "/v1/ask", json{{"question", topic}, {"temperature", 1.0}, {"seed", seed}, {"sources", 20}}.dump()});
  out.push_back({"POST", "/v1/ask", json{{"question", topic}}.dump()});
  out.push_back({"POST", "/v1/ask", json{{"question", topic}, {"stream", true}}.dump()});
  out.push_back({"POST", "/v1/ask", json{{"question", topic}, {"stream", true}, {"temperature", 1.0}, {"seed", 9}}.dump()});
  const json chat_messages = {{{"role", "user"}, {"content", topic}}};
  out.push_back({"POST", "/v1/chat/completions", json{{"model", "rag"}, {"messages", chat_messages}}.dump()});
  out.push_back({"POST", "/v1/chat/completions", json{{"model", "rag"}, {"stream", true}, {"messages", chat_messages}}.dump()});
  out.push_back({"POST", "/v1/chat/completions", json{{"model", "tiny.gguf"}, {"messages", chat_messages}}.dump()});
  out.push_back({"POST", "/v1/chat/completions", json{{"model", "tiny.gguf"}, {"stream", true}, {"messages", chat_messages}}.dump()});
  out.push_back({"POST", "/v1/embeddings", json{{"input", topic}}.dump()});
  out.push_back({"GET", "/v1/documents", ""});
  out.push_back({"POST", "/v1/documents", json{{"name", "x.md"}, {"content", topic}}.dump()});
  for (int id = 1; id <= 4; ++id) out.push_back({"DELETE", "/v1/documents/" + std::to_string(id), ""});
  out.push_back({"GET", "/v1/models", ""});
  // Error answers: each names what was wrong with the request, never a document.
  out.push_back({"POST", "/v1/ask", json{{"question", topic}, {"max_tokens", 1 << 30}}.dump()});
  out.push_back({"POST", "/v1/ask", json{{"question", std::string(5000, 'q')}}.dump()});
  out.push_back({"POST", "/v1/search", json{{"query", topic}, {"k", 0}}.dump()});
  out.push_back({"POST", "/v1/ask", "{\"question\": "});
  out.push_back({"GET", "/v1/no-such-route", ""});
  out.push_back({"GET", "/healthz", ""});
  out.push_back({"GET", "/readyz", ""});
  out.push_back({"GET", "/metrics", ""});
  return out;
}

void expect_absent(const std::string& response, const std::vector<std::string>& secrets, const Route& route) {
  for (const std::string& s : secrets)
    EXPECT_EQ(response.find(s), std::string::npos)
        << route.method << " " << route.path << " " << route.body.substr(0, 120) << " leaked \"" << s << "\":\n"
        << response.substr(0, 2000);
}

const std::vector<std::string> kTopics = {"launch code for the firmware rover", "launch codes quarterly rotate",
                                          "firmware"};

TEST_F(HardeningCanary, SecretOfAliceNeverReachesBobOnAnyRoute) {
  test::InProcessServer server(config(), keys({"everyone"}));
  // Warm every cache with the canary document, and check that alice does see it (the oracle).
  bool alice_saw = false;
  for (const std::string& topic : kTopics)
    for (const Route& r : routes(topic)) {
      const std::string response = exchange(server.port(), r.method, r.path, kAliceKey, r.body);
      alice_saw |= response.find(kCanary) != std::string::npos && response.find(kCanaryPath) != std::string::npos;
    }
  ASSERT_TRUE(alice_saw) << "alice never got her own document back: the test could not see a leak";
  for (const std::string& topic : kTopics)
    for (const Route& r : routes(topic)) {
      SCOPED_TRACE(topic);
      expect_absent(exchange(server.port(), r.method, r.path, kBobKey, r.body), {kCanary, kCanaryPath, kCanaryTitle}, r);
    }
  // Without a key, and with a wrong one, too.
  for (const Route& r : routes(kTopics[0])) {
    expect_absent(exchange(server.port(), r.method, r.path, "", r.body), {kCanary, kCanaryPath, kCanaryTitle}, r);
    expect_absent(exchange(server.port(), r.method, r.path, "wrong-key-0123456789abcdef", r.body),
                  {kCanary, kCanaryPath, kCanaryTitle}, r);
  }
}

TEST_F(HardeningCanary, RevokedGroupServesNothingFromBefore) {
  test::InProcessServer server(config(), keys({"everyone", "gee"}));
  const std::vector<std::string> secrets = {kGroupSecret, kGroupPath, kGroupTitle};
  const std::string topic = "heron migration budget";
  // Before: bob reads the gee document on the retrieval routes (and warms the caches with it).
  int before_hits = 0;
  for (const Route& r : routes(topic)) {
    const std::string response = exchange(server.port(), r.method, r.path, kBobKey, r.body);
    if (response.find(kGroupPath) != std::string::npos) ++before_hits;
  }
  ASSERT_GE(before_hits, 5) << "bob did not read the gee document before revocation: the test would prove nothing";

  server.restart_http(keys({"everyone"}));  // bob's key now names a principal without gee
  for (const Route& r : routes(topic)) expect_absent(exchange(server.port(), r.method, r.path, kBobKey, r.body), secrets, r);
  // The open document is still his: revocation removed exactly the group's documents.
  const std::string open = exchange(server.port(), "POST", "/v1/search", kBobKey, json{{"query", "firmware"}}.dump());
  EXPECT_NE(open.find("handbook.md"), std::string::npos) << open;
}

}  // namespace
}  // namespace rag::server
