// The HTTP service over loopback, in process: a corpus with two ACL'd folders and one open one, three keys,
// and a tiny random-weight generator whose vocabulary is full of citation markers. Every route is checked for
// permission leaks (streaming included), every limit for its status and error shape, SSE framing, a burst of
// 32 concurrent requests, and a client that hangs up mid-stream.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "index/index.h"
#include "server/server.h"
#include "tests/support/support.h"
#include "tests/support/tiny-generator.h"

namespace rag::server {
namespace {

using json = nlohmann::json;
using test::TempDir;

const std::string kAnnKey = "ann-key-0123456789abcdef";    // group eng
const std::string kBobKey = "bob-key-0123456789abcdef";    // group hr
const std::string kAdminKey = "admin-key-0123456789abcde";  // admin, group everyone

// Built once for the suite: ingesting and writing the model are the slow parts.
struct World {
  TempDir dir;
  std::string data, model;
  World() {
    data = dir / "data";
    model = dir / "tiny.gguf";
    test::write_file(dir / "docs/eng/.ragacl", "group:eng\n");
    test::write_file(dir / "docs/eng/rover.md",
                     "# Rover firmware\n\nThe rover firmware codename is Falcon. Firmware releases ship every two weeks.\n");
    test::write_file(dir / "docs/hr/.ragacl", "group:hr\n");
    test::write_file(dir / "docs/hr/salaries.md",
                     "# Salary bands\n\nThe secret salary band for firmware engineers is Kestrel. Bands are reviewed yearly.\n");
    test::write_file(dir / "docs/open/handbook.md",
                     "# Handbook\n\nExpenses must be submitted within 30 days. The firmware team sits on floor two.\n");
    index::IngestOptions options;
    options.roots = {dir / "docs"};
    options.threads = 1;
    index::ingest(data, options);
    test::write_tiny_generator(model);
  }
};

World& world() {
  static World* w = [] {  // lives for the process: tests share it; removed after the last test
    auto* world = new World();
    test::at_end_of_run([world] { delete world; });
    return world;
  }();
  return *w;
}

// A service plus server on a free loopback port, serving on its own thread.
constexpr int64_t kKvMemory = 8 << 20;  // every test server's KV pool

struct Running {
  std::unique_ptr<Service> service;
  std::unique_ptr<HttpServer> server;
  std::thread thread;
  int port = 0;

  Running(Config config, bool keys = true) {
    config.data_dir = world().data;
    config.kv_memory_bytes = kKvMemory;
    service = std::make_unique<Service>(config);
    HttpOptions http;
    http.port = 0;
    if (keys) {
      http.keys = std::vector<ApiKey>{{kAnnKey, {"ann", {"eng"}, false}},
                                      {kBobKey, {"bob", {"hr"}, false}},
                                      {kAdminKey, {"root", {"everyone"}, true}}};
    }
    http.local_principal = {"local", {"everyone"}, true};
    server = std::make_unique<HttpServer>(*service, http);
    port = server->bind();
    thread = std::thread([this] { server->run(); });
  }
  ~Running() {
    server->stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c;
  }
};

Config with_generator() {
  Config c;
  c.generate_model = world().model;
  c.default_max_tokens = 48;
  return c;
}

httplib::Headers auth(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

httplib::Result post(const Running& r, const std::string& path, const json& body, const std::string& key) {
  auto c = r.client();
  return c.Post(path.c_str(), auth(key), body.dump(), "application/json");
}

// Posts and collects the raw streamed body (SSE) in the order it arrived.
std::string post_stream(const Running& r, const std::string& path, const json& body, const std::string& key, int* status) {
  auto c = r.client();
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.headers = auth(key);
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  std::string out;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    out.append(data, n);
    return true;
  };
  httplib::Response res;
  httplib::Error error;
  EXPECT_TRUE(c.send(req, res, error)) << httplib::to_string(error);
  *status = res.status;
  return out;
}

struct Event {
  std::string name;
  json data;
};

// Parses server-sent events strictly: every event is "event: NAME\n"? "data: JSON\n" "\n".
std::vector<Event> parse_sse(const std::string& text) {
  std::vector<Event> events;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated event at " << pos;
    if (end == std::string::npos) break;
    std::string block = text.substr(pos, end - pos);
    pos = end + 2;
    Event e;
    size_t line_start = 0;
    while (line_start <= block.size()) {
      size_t nl = block.find('\n', line_start);
      std::string line = block.substr(line_start, nl == std::string::npos ? std::string::npos : nl - line_start);
      if (line.rfind("event: ", 0) == 0) e.name = line.substr(7);
      else if (line.rfind("data: ", 0) == 0) {
        const std::string payload = line.substr(6);
        e.data = payload == "[DONE]" ? json("[DONE]") : json::parse(payload, nullptr, false);
        EXPECT_FALSE(e.data.is_discarded()) << line;
      } else ADD_FAILURE() << "unexpected line: " << line;
      if (nl == std::string::npos) break;
      line_start = nl + 1;
    }
    events.push_back(std::move(e));
  }
  return events;
}

std::set<int> markers(const std::string& text) {
  std::set<int> out;
  static const std::regex re(R"(\[(\d{1,4})\])");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it)
    out.insert(std::stoi((*it)[1].str()));
  return out;
}

// ---- permissions ------------------------------------------------------------------------------------

// ann (eng) and bob (hr) ask the same questions through every route; neither ever sees the other's folder.
TEST(HttpServer, PrincipalsNeverSeeEachOthersDocumentsOnAnyRoute) {
  Running r(with_generator());
  struct Who {
    std::string key, mine, theirs;
  };
  const std::vector<Who> people = {{kAnnKey, "/eng/", "/hr/"}, {kBobKey, "/hr/", "/eng/"}};
  const std::string question = "firmware";
  for (const Who& who : people) {
    SCOPED_TRACE(who.mine);
    auto search = post(r, "/v1/search", {{"query", question}, {"k", 20}}, who.key);
    ASSERT_EQ(search->status, 200) << search->body;
    bool saw_mine = false;
    const json found = json::parse(search->body);
    for (const json& hit : found["results"]) {
      EXPECT_EQ(hit["path"].get<std::string>().find(who.theirs), std::string::npos);
      saw_mine |= hit["path"].get<std::string>().find(who.mine) != std::string::npos;
    }
    EXPECT_TRUE(saw_mine) << search->body;

    for (int seed = 0; seed < 3; ++seed) {
      auto ask = post(r, "/v1/ask", {{"question", question}, {"temperature", 1.0}, {"seed", seed}}, who.key);
      ASSERT_EQ(ask->status, 200) << ask->body;
      EXPECT_EQ(ask->body.find(who.theirs), std::string::npos) << ask->body;
      EXPECT_EQ(ask->body.find(who.mine == "/eng/" ? "Kestrel" : "Falcon"), std::string::npos);
    }
    int status = 0;
    std::string streamed = post_stream(r, "/v1/ask", {{"question", question}, {"stream", true}, {"temperature", 1.0}}, who.key, &status);
    EXPECT_EQ(status, 200);
    EXPECT_EQ(streamed.find(who.theirs), std::string::npos) << streamed;
    auto chat = post(r, "/v1/chat/completions", {{"model", "rag"}, {"messages", {{{"role", "user"}, {"content", question}}}}}, who.key);
    ASSERT_EQ(chat->status, 200) << chat->body;
    EXPECT_EQ(chat->body.find(who.theirs), std::string::npos) << chat->body;
    streamed = post_stream(r, "/v1/chat/completions",
                           {{"model", "rag"}, {"stream", true}, {"messages", {{{"role", "user"}, {"content", question}}}}}, who.key, &status);
    EXPECT_EQ(status, 200);
    EXPECT_EQ(streamed.find(who.theirs), std::string::npos) << streamed;
  }
  // The document list is admin-only; a non-admin key gets 403 with the error shape.
  auto c = r.client();
  auto list = c.Get("/v1/documents", auth(kAnnKey));
  EXPECT_EQ(list->status, 403);
  EXPECT_EQ(json::parse(list->body)["error"]["code"], "admin_required");
}

// ---- citations ------------------------------------------------------------------------------------------

// Sampled text from the tiny model is full of markers [1]..[12]; only those naming a given source survive,
// and each surviving marker has its citation with path, title and snippet.
TEST(HttpServer, CitationsAlwaysNameGivenSources) {
  Running r(with_generator());
  int dropped_any = 0;
  for (int seed = 0; seed < 8; ++seed) {
    auto res = post(r, "/v1/ask",
                    {{"question", "firmware expenses days"}, {"temperature", 1.0}, {"seed", seed}, {"sources", 2}, {"max_tokens", 64}},
                    kAdminKey);
    ASSERT_EQ(res->status, 200) << res->body;
    json body = json::parse(res->body);
    const std::string answer = body["answer"];
    std::set<int> cited;
    for (const json& c : body["citations"]) {
      const int n = c["n"];
      EXPECT_GE(n, 1);
      EXPECT_LE(n, 2);
      EXPECT_FALSE(c["path"].get<std::string>().empty());
      EXPECT_FALSE(c["title"].get<std::string>().empty());
      EXPECT_TRUE(c.contains("snippet") && c.contains("score") && c.contains("doc_id") && c.contains("page"));
      cited.insert(n);
    }
    EXPECT_EQ(markers(answer), cited) << answer;
    for (int n : markers(answer)) EXPECT_LE(n, 2) << answer;
    dropped_any += body["usage"]["completion_tokens"].get<int>() > 0 ? 1 : 0;
    EXPECT_EQ(body["models"]["generator"], "tiny.gguf");
    EXPECT_GE(body["index_generation"].get<int>(), 1);
    for (const char* stage : {"queue_ms", "retrieve_ms", "rerank_ms", "prefill_ms", "first_token_ms", "total_ms"})
      EXPECT_TRUE(body["timings"].contains(stage)) << stage;
  }
  EXPECT_GT(dropped_any, 0);
}

TEST(HttpServer, ExtractiveWithoutGeneratorAndNotSupportedWithoutSources) {
  Running r(Config{});
  auto res = post(r, "/v1/ask", {{"question", "How many days to submit expenses?"}}, kAdminKey);
  ASSERT_EQ(res->status, 200) << res->body;
  json body = json::parse(res->body);
  EXPECT_EQ(body["models"]["generator"], "none");
  EXPECT_NE(body["answer"].get<std::string>().find("\"Expenses must be submitted within 30 days.\" [1]"), std::string::npos) << body;
  ASSERT_EQ(body["citations"].size(), 1u);
  EXPECT_NE(body["citations"][0]["path"].get<std::string>().find("handbook.md"), std::string::npos);
  // ann may not read hr/: the salary band question has nothing she can read.
  res = post(r, "/v1/ask", {{"question", "Kestrel"}}, kAnnKey);
  ASSERT_EQ(res->status, 200);
  body = json::parse(res->body);
  EXPECT_EQ(body["answer"], std::string(kNotSupported));
  EXPECT_FALSE(body["supported"].get<bool>());
  EXPECT_TRUE(body["citations"].empty());
}

// ---- streaming --------------------------------------------------------------------------------------

TEST(HttpServer, AskStreamIsDeltasThenCitationsThenDone) {
  Running r(with_generator());
  int status = 0;
  const std::string text = post_stream(r, "/v1/ask", {{"question", "firmware expenses"}, {"stream", true}, {"temperature", 1.0}, {"seed", 3}},
                                       kAdminKey, &status);
  ASSERT_EQ(status, 200);
  std::vector<Event> events = parse_sse(text);
  ASSERT_GE(events.size(), 3u);
  std::string joined;
  size_t i = 0;
  for (; i < events.size() && events[i].name == "delta"; ++i) joined += events[i].data["text"].get<std::string>();
  ASSERT_EQ(i + 2, events.size()) << text;
  EXPECT_EQ(events[i].name, "citations");
  EXPECT_EQ(events[i + 1].name, "done");
  EXPECT_EQ(events[i + 1].data["answer"], joined);  // the deltas add up to the answer
  std::set<int> cited;
  for (const json& c : events[i].data["citations"]) cited.insert(c["n"].get<int>());
  EXPECT_EQ(markers(joined), cited);
  EXPECT_TRUE(events[i + 1].data.contains("timings"));
  EXPECT_TRUE(events[i + 1].data.contains("models"));
}

TEST(HttpServer, ChatCompletionsInOpenAiShapes) {
  Running r(with_generator());
  auto res = post(r, "/v1/chat/completions",
                  {{"model", "tiny.gguf"}, {"max_tokens", 8}, {"messages", {{{"role", "user"}, {"content", "hello"}}}}}, kAdminKey);
  ASSERT_EQ(res->status, 200) << res->body;
  json body = json::parse(res->body);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(body["choices"][0]["message"]["content"].is_string());
  EXPECT_FALSE(body.contains("citations"));
  EXPECT_GT(body["usage"]["prompt_tokens"].get<int>(), 0);

  int status = 0;
  const std::string text = post_stream(r, "/v1/chat/completions",
                                       {{"model", "rag"}, {"stream", true}, {"messages", {{{"role", "user"}, {"content", "firmware"}}}}},
                                       kAdminKey, &status);
  ASSERT_EQ(status, 200);
  std::vector<Event> events = parse_sse(text);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back().data, json("[DONE]"));
  const json& last = events[events.size() - 2].data;
  EXPECT_EQ(last["object"], "chat.completion.chunk");
  EXPECT_TRUE(last["choices"][0]["finish_reason"].is_string());
  EXPECT_TRUE(last["citations"].is_array());
  for (size_t i = 0; i + 2 < events.size(); ++i) EXPECT_TRUE(events[i].data["choices"][0]["finish_reason"].is_null());
}

// ---- limits -----------------------------------------------------------------------------------------

void expect_error(const httplib::Result& res, int status, const std::string& code) {
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, status) << res->body;
  json body = json::parse(res->body, nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << res->body;
  EXPECT_EQ(body["error"]["code"], code) << res->body;
  EXPECT_TRUE(body["error"]["message"].is_string());
  EXPECT_TRUE(body["error"]["type"].is_string());
}

TEST(HttpServer, EveryLimitIsAJsonErrorWithItsStatus) {
  Config config;
  config.max_body_bytes = 4096;
  config.max_question_bytes = 100;
  config.max_tokens = 64;
  Running r(config);
  auto c = r.client();
  expect_error(c.Post("/v1/ask", auth(kAdminKey), "{not json", "application/json"), 400, "invalid_json");
  expect_error(c.Post("/v1/ask", auth(kAdminKey), "[1,2]", "application/json"), 400, "invalid_json");
  expect_error(post(r, "/v1/ask", {{"question", 42}}, kAdminKey), 400, "invalid_type");
  expect_error(post(r, "/v1/ask", {{"question", "q"}, {"max_tokens", "many"}}, kAdminKey), 400, "invalid_type");
  expect_error(post(r, "/v1/ask", {{"question", "q"}, {"stream", "yes"}}, kAdminKey), 400, "invalid_type");
  expect_error(post(r, "/v1/ask", json::object(), kAdminKey), 400, "missing_field");
  expect_error(post(r, "/v1/ask", {{"question", std::string(101, 'a')}}, kAdminKey), 400, "question_too_long");
  expect_error(post(r, "/v1/ask", {{"question", "q"}, {"max_tokens", 65}}, kAdminKey), 400, "too_many_tokens");
  expect_error(post(r, "/v1/chat/completions", {{"model", "rag"}, {"max_tokens", 1000}, {"messages", {{{"role", "user"}, {"content", "x"}}}}}, kAdminKey),
               400, "too_many_tokens");
  expect_error(post(r, "/v1/search", {{"query", "q"}, {"k", 0}}, kAdminKey), 400, "out_of_range");
  expect_error(post(r, "/v1/ask", {{"question", std::string(5000, 'a')}}, kAdminKey), 413, "payload_too_large");
  expect_error(c.Get("/v1/nothing", auth(kAdminKey)), 404, "unknown_route");
  expect_error(c.Post("/v1/ask", "{\"question\": \"q\"}", "application/json"), 401, "missing_api_key");
  expect_error(post(r, "/v1/ask", {{"question", "q"}}, "wrong-key-0123456789abcdef"), 401, "invalid_api_key");
  expect_error(post(r, "/v1/ask", {{"question", "q"}}, kAdminKey + "x"), 401, "invalid_api_key");
  expect_error(post(r, "/v1/embeddings", {{"input", "q"}}, kAdminKey), 400, "unsupported");
  // Health needs no key; the server still answers after all of the above.
  EXPECT_EQ(c.Get("/healthz")->status, 200);
  EXPECT_EQ(c.Get("/readyz")->status, 200);
}

TEST(HttpServer, TimeoutIs504) {
  Config config = with_generator();
  config.request_timeout = std::chrono::milliseconds(1);
  Running r(config);
  expect_error(post(r, "/v1/ask", {{"question", "firmware"}, {"max_tokens", 64}}, kAdminKey), 504, "timeout");
}

// 32 requests at once against 2 workers and a queue of 4: each is answered (200) or refused with 429 and
// Retry-After; none fails otherwise, and both outcomes occur.
TEST(HttpServer, BurstIsAnsweredOrRefusedWith429) {
  Config config = with_generator();
  config.workers = 2;
  config.queue_depth = 4;
  config.default_max_tokens = 200;
  Running r(config);
  std::atomic<int> ok{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&, i] {
      auto res = post(r, "/v1/ask", {{"question", "firmware expenses"}, {"temperature", 1.0}, {"seed", i}}, kAnnKey);
      if (res && res->status == 200) ++ok;
      else if (res && res->status == 429 && res->get_header_value("Retry-After") == "1" &&
               json::parse(res->body)["error"]["code"] == "queue_full") ++refused;
      else {
        ++other;
        ADD_FAILURE() << (res ? std::to_string(res->status) + " " + res->body : httplib::to_string(res.error()));
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(ok + refused, 32);
  EXPECT_GE(ok.load(), 2);
  EXPECT_GE(refused.load(), 1);
  auto c = r.client();
  const std::string metrics = c.Get("/metrics")->body;
  EXPECT_NE(metrics.find("rag_requests_total{route=\"/v1/ask\",status=\"429\"} " + std::to_string(refused.load())), std::string::npos);
}

// A client that hangs up after the first event: the server stops generating (the cancel counter moves) long
// before max_tokens.
TEST(HttpServer, ClientDisconnectCancelsGeneration) {
  Config config = with_generator();
  config.max_tokens = 3000;
  Running r(config);
  auto c = r.client();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/ask";
  req.headers = auth(kAdminKey);
  req.body = json{{"question", "firmware"}, {"stream", true}, {"max_tokens", 3000}, {"temperature", 1.0}}.dump();
  req.set_header("Content-Type", "application/json");
  int chunks = 0;
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 2; };  // hang up
  httplib::Response res;
  httplib::Error error;
  c.send(req, res, error);
  c.stop();
  // Wait (not a timing assertion: the bound is generous) for the server to notice.
  bool cancelled = false;
  for (int i = 0; i < 600 && !cancelled; ++i) {
    const std::string metrics = r.client().Get("/metrics")->body;
    cancelled = metrics.find("rag_generations_cancelled_total 1") != std::string::npos;
    if (!cancelled) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(cancelled);
  const std::string metrics = r.client().Get("/metrics")->body;
  // Far fewer than 3000 tokens were generated.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(metrics, m, std::regex(R"(rag_generated_tokens_total (\d+))")));
  EXPECT_LT(std::stoll(m[1].str()), 3000);
}

TEST(HttpServer, MetricsInPrometheusTextFormat) {
  Running r(with_generator());
  ASSERT_EQ(post(r, "/v1/ask", {{"question", "firmware"}}, kAdminKey)->status, 200);
  ASSERT_EQ(post(r, "/v1/ask", {{"question", "firmware"}}, kAdminKey)->status, 200);  // same sources: prefix reuse
  const std::string text = r.client().Get("/metrics")->body;
  for (const char* name : {"rag_queue_seconds", "rag_retrieve_seconds", "rag_rerank_seconds", "rag_time_to_first_token_seconds",
                           "rag_inter_token_seconds", "rag_request_seconds"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + name + " histogram"), std::string::npos) << name;
    EXPECT_NE(text.find(std::string(name) + "_bucket{le=\"+Inf\"}"), std::string::npos) << name;
  }
  EXPECT_NE(text.find("rag_requests_total{route=\"/v1/ask\",status=\"200\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("rag_index_generation 1"), std::string::npos);
  EXPECT_NE(text.find("rag_tokens_per_second "), std::string::npos);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex(R"(rag_prefix_cache_hit_ratio ([0-9.e-]+))")));
  EXPECT_GT(std::stod(m[1].str()), 0.0);
  // The KV pool: --kv-mem in whole blocks; the two answers' blocks are back, cached or free.
  auto gauge = [&](const std::string& series) -> int64_t {
    const size_t at = text.find("\n" + series + " ");
    return at == std::string::npos ? -1 : std::stoll(text.substr(at + series.size() + 2));
  };
  const int64_t kv_bytes = gauge("rag_kv_cache_bytes"), used = gauge(R"(rag_kv_cache_blocks{state="used"})"),
                cached = gauge(R"(rag_kv_cache_blocks{state="cached"})"),
                free = gauge(R"(rag_kv_cache_blocks{state="free"})");
  ASSERT_GT(kv_bytes, 0) << text;
  EXPECT_EQ(used, 0);
  EXPECT_GT(cached, 0);
  EXPECT_GT(free, 0);
  const int64_t blocks = used + cached + free;
  EXPECT_EQ(kv_bytes % blocks, 0);
  EXPECT_LE(kv_bytes, kKvMemory);
  EXPECT_GT(kv_bytes + kv_bytes / blocks, kKvMemory);
  // Every non-comment line is "name{labels} value" or "name value".
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    EXPECT_TRUE(std::regex_match(line, std::regex(R"([a-z_]+(\{[^}]*\})? [-+0-9.eInf]+)"))) << line;
  }
}

TEST(HttpServer, MetricsWithoutAGeneratorHaveNoKvPool) {
  Running r(Config{});
  const std::string text = r.client().Get("/metrics")->body;
  EXPECT_NE(text.find("rag_ready "), std::string::npos) << text;
  EXPECT_EQ(text.find("rag_kv_cache"), std::string::npos) << text;
}

TEST(HttpServer, DocumentsUploadListDeleteWithAcl) {
  Running r(Config{});
  auto up = post(r, "/v1/documents", {{"name", "pelican.md"}, {"content", "# Pelican\n\nProject Pelican launches in May.\n"}, {"acl", {"group:eng"}}},
                 kAdminKey);
  ASSERT_EQ(up->status, 201) << up->body;
  const int64_t id = json::parse(up->body)["document"]["id"];
  EXPECT_EQ(post(r, "/v1/documents", {{"name", "x.md"}, {"content", "x"}}, kAnnKey)->status, 403);
  expect_error(post(r, "/v1/documents", {{"name", "../x.md"}, {"content", "x"}}, kAdminKey), 400, "invalid_request");
  // ann (eng) finds it; bob (hr) does not.
  auto find = [&](const std::string& key) {
    auto res = post(r, "/v1/search", {{"query", "Pelican"}}, key);
    return res->body.find("pelican.md") != std::string::npos;
  };
  EXPECT_TRUE(find(kAnnKey));
  EXPECT_FALSE(find(kBobKey));
  auto c = r.client();
  auto list = c.Get("/v1/documents", auth(kAdminKey));
  ASSERT_EQ(list->status, 200);
  EXPECT_NE(list->body.find("pelican.md"), std::string::npos);
  EXPECT_EQ(c.Delete(("/v1/documents/" + std::to_string(id)).c_str(), auth(kAdminKey))->status, 200);
  EXPECT_FALSE(find(kAnnKey));
  expect_error(c.Delete(("/v1/documents/" + std::to_string(id)).c_str(), auth(kAdminKey)), 404, "no_such_document");
}

TEST(HttpServer, WithoutKeysEveryRequestIsTheLocalPrincipal) {
  Running r(Config{}, false);
  auto c = r.client();
  auto res = c.Post("/v1/search", "{\"query\": \"expenses\"}", "application/json");
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_NE(res->body.find("handbook.md"), std::string::npos);
  EXPECT_EQ(res->body.find("/eng/"), std::string::npos);  // local holds only the default group
}

TEST(Keys, FileIsCheckedEntryByEntry) {
  TempDir dir;
  test::write_file(dir / "ok.json", R"({"keys": [{"key": "0123456789abcdef0", "user": "ann", "groups": ["eng"], "admin": true}]})");
  std::vector<ApiKey> keys = load_keys(dir / "ok.json");
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].principal.user, "ann");
  EXPECT_TRUE(keys[0].principal.admin);
  for (const char* bad : {R"({"keys": [{"key": "short", "user": "ann"}]})", R"({"keys": [{"key": "0123456789abcdef0"}]})",
                          R"({"keys": [{"key": "0123456789abcdef0", "user": "a", "groups": "eng"}]})", R"([1])", "not json"}) {
    test::write_file(dir / "bad.json", bad);
    try {
      load_keys(dir / "bad.json");
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kInvalidArgument) << bad;
    }
  }
}

}  // namespace
}  // namespace rag::server
