// Issue 6, promise 1 (and 2) under load: one writer ingests (adding, changing and removing files) and
// rebuilds in a loop while client threads search and stream answers over loopback, as several principals.
// Built under ThreadSanitizer by scripts/tsan.sh; also runs in any build (label slow).
//
// The service is in process (tests/support/in-process-server.h) with the tiny random-weight embedder,
// reranker and generator, so every stage runs: hybrid retrieval, reranking, prefix cache, streamed decoding.
// The writer keeps every generation (keep_generations far above what a run publishes), so no catalog row is
// purged and the oracle below stays exact.
//
// Checks, after the run:
//   - every reply was 200; every search ran hybrid (an embedder) and reranked what it found; every stream
//     ended with a `done` event (no `error` event, no cut), and its deltas add up to the answer it reports;
//   - every chunk id a reply returned was live in the generation the reply names: in
//     Catalog::chunk_ids_live_at(generation_change(data, gen)), and belongs to the document (path) the reply
//     gave it;
//   - a principal never received a chunk of a folder it may not read (by path, and by the catalog's
//     chunk_ids_readable_by for its principal strings);
//   - the writer published generations and the clients followed them.
//
// RAG_STRESS_SECONDS=N sets the duration (default 60); RAG_STRESS_SEED=N repeats a writer's sequence.
#include <gtest/gtest.h>
#include <httplib.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "index/generation.h"  // generation_change: private to index/, the oracle's way to a generation's counter
#include "index/index.h"
#include "retrieve/retrieve.h"
#include "tests/support/in-process-server.h"
#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"
#include "tests/support/tiny-generator.h"

namespace rag::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kClients = 8;
// Far above the generations a run publishes (a few per second at most), so nothing is ever purged.
constexpr int kKeepGenerations = 1 << 20;
constexpr int kAskMaxTokens = 12;

#if defined(__SANITIZE_THREAD__)
// TSan starts a background thread of its own at the first pthread_create and keeps it: start it before the
// resource accounting (tests/support/resource-accounting.cpp) counts the process's threads, so it is not
// taken for a thread this test left behind.
[[maybe_unused]] const bool kTsanBackgroundThreadStarted = [] {
  std::thread([] {}).join();
  return true;
}();
#endif

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < 1 || n > 86400) {
    ADD_FAILURE() << name << "=" << v << ": expected a whole number 1..86400";
    return fallback;
  }
  return static_cast<int>(n);
}

// ---- corpus and principals ------------------------------------------------------------------------------

// Each folder's .ragacl; "open" has none, so its documents are readable by the default group "everyone".
struct Folder {
  std::string name;
  std::string acl;
};
const std::vector<Folder> kFolders = {{"alice", "user:alice"}, {"eng", "group:eng"}, {"open", ""}};

struct Asker {
  std::string key;
  Principal principal;
  std::set<std::string> readable;  // folder names
};
const std::vector<Asker> kAskers = {
    {"key-alice-0123456789abcdef", {"alice", {"everyone"}, false}, {"alice", "open"}},
    {"key-bob-0123456789abcdef00", {"bob", {"eng", "everyone"}, false}, {"eng", "open"}},
    {"key-carol-0123456789abcdef", {"carol", {"eng"}, false}, {"eng"}},
    {"key-dave-0123456789abcdef0", {"dave", {}, false}, {}},
};

// Words the tiny embedder has whole tokens for, so vectors differ by topic; every folder uses every topic,
// so a principal's queries always match documents it may not read (a missing filter would show).
const std::vector<std::string> kTopicWords = {"cell",  "cells",  "protein", "gene",   "cancer",  "patients",
                                              "study", "risk",   "vacation", "days",  "policy",  "travel",
                                              "expense", "limit", "cat",     "dog"};

std::string folder_of(const std::string& path, const std::string& docs) {
  if (path.rfind(docs + "/", 0) != 0) return "";
  const std::string rest = path.substr(docs.size() + 1);
  return rest.substr(0, rest.find('/'));
}

// The writer's view of the files on disk: folder/name -> version.
class Corpus {
 public:
  Corpus(std::string docs, uint32_t seed) : docs_(std::move(docs)), rng_(seed) {
    for (const Folder& f : kFolders) {
      fs::create_directories(docs_ + "/" + f.name);
      if (!f.acl.empty()) test::write_file(docs_ + "/" + f.name + "/.ragacl", f.acl + "\n");
    }
  }

  void add() {
    const std::string rel = kFolders[rng_() % kFolders.size()].name + "/doc-" + std::to_string(next_++) + ".md";
    write(rel, 1);
  }
  void change() {
    if (files_.empty()) return add();
    auto it = pick();
    write(it->first, it->second + 1);
  }
  void remove() {
    if (files_.size() <= 6) return add();  // keep something to find
    auto it = pick();
    fs::remove(docs_ + "/" + it->first);
    files_.erase(it);
  }
  void step() {
    const unsigned r = rng_() % 3;
    if (r == 0) add();
    else if (r == 1) change();
    else remove();
  }

 private:
  std::map<std::string, int>::iterator pick() {
    auto it = files_.begin();
    std::advance(it, static_cast<long>(rng_() % files_.size()));
    return it;
  }
  std::string words(int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += (i ? " " : "") + kTopicWords[rng_() % kTopicWords.size()];
    return s;
  }
  // Headed sections, so a document has several chunks (a heading always starts one).
  void write(const std::string& rel, int version) {
    std::string text = "# " + words(3) + "\n\n";
    const int sections = 2 + static_cast<int>(rng_() % 3);
    for (int s = 0; s < sections; ++s) {
      text += "## " + words(2) + "\n\n";
      for (int p = 0; p < 3; ++p) text += "The " + words(6) + " is " + words(4) + " for the " + words(3) + ".\n";
      text += "Version " + std::to_string(version) + " of " + rel + ".\n\n";
    }
    test::write_file(docs_ + "/" + rel, text);
    files_[rel] = version;
  }

  std::string docs_;
  std::mt19937 rng_;
  std::map<std::string, int> files_;
  int next_ = 0;
};

// ---- what the clients saw ---------------------------------------------------------------------------------

struct Hit {
  int64_t generation = 0;
  int64_t chunk_id = 0;
  int64_t doc_id = 0;
  std::string path;
  size_t asker = 0;  // index in kAskers
};

struct Observed {
  std::mutex mutex;
  int64_t failure_count = 0;
  std::vector<std::string> failures;  // the first few, in order
  std::vector<Hit> hits;
  std::set<int64_t> generations;

  void fail(std::string what) {
    std::lock_guard lock(mutex);
    if (failure_count++ < 20) failures.push_back(std::move(what));
  }
};

// One reply's hits (search "results", ask "sources"): each must carry the fields the oracle needs and lie in
// a folder the asker may read.
bool collect(const json& list, int64_t generation, size_t asker, const std::string& docs, std::vector<Hit>& out,
             std::string& failure) {
  if (!list.is_array()) {
    failure = "no hit list";
    return false;
  }
  for (const json& h : list) {
    if (!h.is_object() || !h.value("chunk_id", json()).is_number_integer() ||
        !h.value("doc_id", json()).is_number_integer() || !h.value("path", json()).is_string()) {
      failure = "malformed hit " + h.dump();
      return false;
    }
    Hit hit{generation, h.at("chunk_id"), h.at("doc_id"), h.at("path"), asker};
    if (!kAskers[asker].readable.count(folder_of(hit.path, docs))) {
      failure = kAskers[asker].principal.user + " received " + hit.path;
      return false;
    }
    out.push_back(std::move(hit));
  }
  return true;
}

// A Server-Sent Events body: (event, data) pairs in order.
std::vector<std::pair<std::string, std::string>> sse_events(const std::string& body) {
  std::vector<std::pair<std::string, std::string>> events;
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find("\n\n", start);
    if (end == std::string::npos) end = body.size();
    std::string event = "message", data;
    size_t line_start = start;
    while (line_start < end) {
      size_t line_end = std::min(body.find('\n', line_start), end);
      const std::string line = body.substr(line_start, line_end - line_start);
      if (line.rfind("event: ", 0) == 0) event = line.substr(7);
      else if (line.rfind("data: ", 0) == 0) data += line.substr(6);
      line_start = line_end + 1;
    }
    events.emplace_back(event, data);
    start = end + 2;
  }
  return events;
}

struct Counts {
  std::atomic<int64_t> searches{0}, streams{0}, hits{0}, tokens{0};
};

// One client thread: searches and streamed asks, alternating, until `stop`.
void client_loop(int port, size_t asker, const std::string& docs, uint32_t seed, const std::atomic<bool>& stop,
                 Observed& seen, Counts& counts) {
  std::mt19937 rng(seed);
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(600, 0);
  http.set_write_timeout(60, 0);
  const Asker& who = kAskers[asker];
  const httplib::Headers headers = {{"Authorization", "Bearer " + who.key}};
  auto query = [&] {
    std::string q;
    for (int i = 0; i < 3; ++i) q += (i ? " " : "") + kTopicWords[rng() % kTopicWords.size()];
    return q;
  };
  for (int64_t i = 0; !stop.load(); ++i) {
    const std::string where = who.principal.user + " request " + std::to_string(i);
    std::vector<Hit> hits;
    std::string failure;
    int64_t generation = -1;
    if (i % 2 == 0) {
      httplib::Result r = http.Post("/v1/search", headers, json{{"query", query()}, {"k", 8}}.dump(), "application/json");
      if (!r) {
        seen.fail(where + " (search): " + httplib::to_string(r.error()));
        continue;
      }
      const json body = json::parse(r->body, nullptr, false);
      if (r->status != 200) failure = "status " + std::to_string(r->status) + ": " + r->body.substr(0, 300);
      else if (!body.is_object() || !body.value("index_generation", json()).is_number_integer())
        failure = "bad body: " + r->body.substr(0, 300);
      else if (body.value("models", json::object()).value("embedder", "none") == "none")
        failure = "the search was not hybrid (no embedder ran): " + r->body.substr(0, 300);
      else if (!body.value("results", json::array()).empty() &&
               body.value("models", json::object()).value("reranker", "none") == "none")
        failure = "results were not reranked: " + r->body.substr(0, 300);
      else if (generation = body.at("index_generation"); collect(body.value("results", json()), generation, asker,
                                                                 docs, hits, failure))
        ++counts.searches;
    } else {
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/ask";
      req.headers = headers;
      req.set_header("Content-Type", "application/json");
      req.body = json{{"question", query()}, {"stream", true}, {"max_tokens", kAskMaxTokens}, {"temperature", 0.8},
                      {"seed", rng() % 1000}}.dump();
      std::string streamed;
      req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
        streamed.append(data, n);
        return true;
      };
      httplib::Response res;
      httplib::Error error = httplib::Error::Success;
      if (!http.send(req, res, error)) {
        seen.fail(where + " (ask stream): " + httplib::to_string(error) + " after " + streamed.substr(0, 300));
        continue;
      }
      const std::string body = res.body + streamed;
      if (res.status != 200) {
        failure = "status " + std::to_string(res.status) + ": " + body.substr(0, 300);
      } else {
        std::string deltas;
        json done;
        for (const auto& [event, data] : sse_events(body)) {
          if (event == "delta") deltas += json::parse(data, nullptr, false).value("text", "");
          else if (event == "error") failure = "error event: " + data.substr(0, 300);
          else if (event == "done") done = json::parse(data, nullptr, false);
        }
        if (!failure.empty()) {
          // an error event: reported as it is
        } else if (!done.is_object()) {
          failure = "stream ended without a done event: " + body.substr(0, 300);
        } else if (!done.value("index_generation", json()).is_number_integer()) {
          failure = "done event without index_generation: " + done.dump().substr(0, 300);
        } else if (done.value("answer", "") != deltas) {
          failure = "the deltas '" + deltas + "' are not the answer '" + done.value("answer", "") + "'";
        } else if (generation = done.at("index_generation");
                   collect(done.value("sources", json()), generation, asker, docs, hits, failure)) {
          ++counts.streams;
          counts.tokens += done.value("usage", json::object()).value("completion_tokens", 0);
        }
      }
    }
    if (!failure.empty()) {
      seen.fail(where + ": " + failure);
      continue;
    }
    counts.hits += static_cast<int64_t>(hits.size());
    std::lock_guard lock(seen.mutex);
    seen.generations.insert(generation);
    seen.hits.insert(seen.hits.end(), hits.begin(), hits.end());
  }
}

TEST(Stress, IngestAndRebuildWhileClientsSearchAndStream) {
#if defined(__SANITIZE_THREAD__)
  // libgomp is not instrumented: TSan cannot see its barriers and would report races between the threads of
  // one parallel region that are ordered by them. scripts/tsan.sh runs OpenMP single-threaded.
  ASSERT_EQ(omp_get_max_threads(), 1) << "under ThreadSanitizer run with OMP_NUM_THREADS=1 (scripts/tsan.sh)";
#endif
  const int seconds = env_int("RAG_STRESS_SECONDS", 60);
  const uint32_t seed = static_cast<uint32_t>(env_int("RAG_STRESS_SEED", static_cast<int>(std::random_device{}() % 100000 + 1)));
  std::printf("[ stress   ] %d s, seed %u (RAG_STRESS_SEED=%u repeats the writer)\n", seconds, seed, seed);

  test::TempDir dir;
  const std::string docs = dir / "docs", data = dir / "data";
  test::write_tiny_bert(dir / "embedder.gguf");
  test::TinyBertSpec reranker_spec;
  reranker_spec.reranker = true;
  reranker_spec.seed = 11;
  reranker_spec.name = "tiny-reranker";
  test::write_tiny_bert(dir / "reranker.gguf", reranker_spec);
  test::write_tiny_generator(dir / "generator.gguf");

  Corpus corpus(docs, seed);
  for (int i = 0; i < 24; ++i) corpus.add();
  index::IngestOptions ingest_options;
  ingest_options.roots = {docs};
  ingest_options.threads = 2;
  ingest_options.embedder = index::open_embedder(dir / "embedder.gguf");
  ingest_options.embedder_path = dir / "embedder.gguf";
  ingest_options.keep_generations = kKeepGenerations;
  const int64_t first = index::ingest(data, ingest_options).generation;
  ASSERT_GT(first, 0);

  Config config;
  config.data_dir = data;
  config.rerank_model = dir / "reranker.gguf";
  config.generate_model = dir / "generator.gguf";
  config.default_max_tokens = kAskMaxTokens;
  config.max_tokens = 64;
  config.kv_memory_bytes = 16 << 20;
  // Two short sources keep prompts small: under TSan a long prefill takes seconds, and the clients are here
  // to overlap the writer, not to time the generator.
  config.sources = 2;
  config.source_bytes = 400;
  config.workers = 4;
  config.queue_depth = 4 * kClients;  // every client may wait: a 429 would be a failure here
  config.request_timeout = std::chrono::minutes(10);  // TSan is slow; a 504 is not what this test is about
  HttpOptions http;
  http.keys = std::vector<ApiKey>{};
  for (const Asker& c : kAskers) http.keys->push_back({c.key, c.principal});
  test::InProcessServer server(config, http);

  std::atomic<bool> stop{false};
  Observed seen;
  Counts counts;
  std::vector<int64_t> published = {first};
  int64_t ingests = 0, rebuilds = 0;
  std::thread writer([&] {
    // No exception crosses the thread: a writer failure is recorded and ends the writer.
    try {
      for (int64_t i = 0; !stop.load(); ++i) {
        if (i % 2 == 0) {
          for (int s = 0; s < 3; ++s) corpus.step();
          const int64_t g = index::ingest(data, ingest_options).generation;
          if (g != published.back()) published.push_back(g);
          ++ingests;
        } else {
          index::RebuildOptions rebuild;
          rebuild.keep_generations = kKeepGenerations;
          rebuild.reembed = i % 4 == 1;  // re-embedding every time would leave few generations under TSan
          published.push_back(index::rebuild(data, rebuild).generation);
          ++rebuilds;
        }
      }
    } catch (const std::exception& e) {
      seen.fail(std::string("writer: ") + e.what());
    }
  });
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c)
    clients.emplace_back(client_loop, server.port(), static_cast<size_t>(c) % kAskers.size(), docs,
                         seed * 31 + static_cast<uint32_t>(c), std::cref(stop), std::ref(seen), std::ref(counts));
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (std::thread& t : clients) t.join();
  writer.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  std::printf("[ stress   ] %.1f s: %lld searches, %lld streamed answers (%lld tokens), %lld hits checked; writer: "
              "%lld ingests, %lld rebuilds, %zu generations published (%lld..%lld); clients saw %zu generations\n",
              elapsed, static_cast<long long>(counts.searches.load()), static_cast<long long>(counts.streams.load()),
              static_cast<long long>(counts.tokens.load()), static_cast<long long>(counts.hits.load()),
              static_cast<long long>(ingests), static_cast<long long>(rebuilds), published.size(),
              static_cast<long long>(published.front()), static_cast<long long>(published.back()),
              seen.generations.size());

  EXPECT_EQ(seen.failure_count, 0) << "the first: " << (seen.failures.empty() ? "" : seen.failures.front());
  EXPECT_GE(published.size(), 3u) << "the writer published too few generations to stress anything";
  EXPECT_GE(seen.generations.size(), 2u) << "the clients never saw a generation change";
  EXPECT_GT(counts.searches.load(), 0);
  EXPECT_GT(counts.streams.load(), 0);
  EXPECT_GT(counts.hits.load(), 0) << "no reply returned anything to check";

  // The oracle: each generation's chunk set from the catalog at the change counter it reflects.
  index::Catalog catalog(index::catalog_path(data), index::Catalog::Mode::kRead);
  std::map<int64_t, std::set<int64_t>> live;
  for (int64_t g : seen.generations) {
    const int64_t change = index::generation_change(data, g);
    ASSERT_GE(change, 0) << "generation " << g << " was purged or cannot be read";
    const std::vector<int64_t> ids = catalog.chunk_ids_live_at(change);
    live[g] = std::set<int64_t>(ids.begin(), ids.end());
  }
  std::vector<std::set<int64_t>> readable;
  for (const Asker& c : kAskers) {
    const std::vector<int64_t> ids = catalog.chunk_ids_readable_by(
        retrieve::principal_strings({c.principal.user, c.principal.groups}, retrieve::kDefaultGroup));
    readable.emplace_back(ids.begin(), ids.end());
  }
  int64_t wrong_generation = 0, wrong_document = 0, unreadable = 0;
  std::string first_wrong;
  auto note = [&first_wrong](int64_t& count, const std::string& what) {
    if (count++ == 0 && first_wrong.empty()) first_wrong = what;
  };
  for (const Hit& h : seen.hits) {
    const std::string what = "chunk " + std::to_string(h.chunk_id) + " (" + h.path + ") in a reply naming generation " +
                             std::to_string(h.generation) + " to " + kAskers[h.asker].principal.user;
    if (!live[h.generation].count(h.chunk_id)) note(wrong_generation, what + ": not live in that generation");
    std::optional<index::ChunkRecord> chunk = catalog.chunk(h.chunk_id);
    std::optional<index::DocumentRecord> doc = chunk ? catalog.document(chunk->doc_id) : std::nullopt;
    if (!doc || doc->id != h.doc_id || doc->path != h.path) note(wrong_document, what + ": not that document's");
    if (!readable[h.asker].count(h.chunk_id)) note(unreadable, what + ": its ACL does not admit the principal");
  }
  EXPECT_EQ(wrong_generation, 0) << first_wrong;
  EXPECT_EQ(wrong_document, 0) << first_wrong;
  EXPECT_EQ(unreadable, 0) << first_wrong;
}

}  // namespace
}  // namespace rag::server
