// Index generations end to end (issue 5): `rag ingest` and `rag rebuild` killed with SIGKILL at random moments,
// a query loop against `rag serve` while `rag rebuild` runs twice, and writers that hit a file-size limit
// (RLIMIT_FSIZE, as a full disk would) part way.
//
// Every check reads the data dir through the binary: `rag verify` (exit 0 when catalog, keyword index, vector
// index and manifest agree) and `rag search --json`. Every document has one of kGroups group words and a word of
// its own (unique per path and version), so one BM25 search for all group words lists the documents of the
// live generation (a word in every document would weigh nothing in BM25) and another finds one document's
// current version. Words end in 'x' so the stemmer keeps them whole.
//
// The seed of the crash test is printed; RAG_CRASH_SEED=N repeats a run.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/serve-process.h"
#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"

namespace rag::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kGroups = 24;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// ---- running the binary as a child we may kill ----------------------------------------------------------

// `rag ARGS...` forked and exec'd with stdout and stderr in files; with `fsize_limit`, RLIMIT_FSIZE is set in
// the child before exec (the binary ignores SIGXFSZ, so writes beyond it fail with EFBIG).
class RagChild {
 public:
  RagChild(const std::vector<std::string>& args, const std::string& scratch,
           std::optional<rlim_t> fsize_limit = std::nullopt)
      : out_path_(scratch + "/child.out"), err_path_(scratch + "/child.err") {
    std::vector<std::string> strings = {RAG_BINARY};
    strings.insert(strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    start_ = Clock::now();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {  // only async-signal-safe calls from here to exec
      int in = open("/dev/null", O_RDONLY);
      int out = open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (in < 0 || out < 0 || err < 0) _exit(126);
      dup2(in, 0), dup2(out, 1), dup2(err, 2);
      close(in), close(out), close(err);
      if (fsize_limit) {
        rlimit limit{*fsize_limit, *fsize_limit};
        if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(126);
      }
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~RagChild() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      wait();
    }
  }
  RagChild(const RagChild&) = delete;
  RagChild& operator=(const RagChild&) = delete;

  void kill_now() { kill(pid_, SIGKILL); }
  // Waits for the child; the result's exit_code is 128 + signal when it was killed.
  RunResult wait() {
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    seconds_ = seconds_since(start_);
    RunResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = read_file(out_path_);
    r.err = read_file(err_path_);
    return r;
  }
  double seconds() const { return seconds_; }

 private:
  pid_t pid_ = -1;
  std::string out_path_, err_path_;
  Clock::time_point start_;
  double seconds_ = 0;
};

RunResult run_limited(const std::vector<std::string>& args, const std::string& scratch, rlim_t fsize_limit) {
  RagChild child(args, scratch, fsize_limit);
  return child.wait();
}

// ---- a corpus whose every document can be found ---------------------------------------------------------

// "a".."z" digits of n, `width` of them: words the tokenizers keep whole.
std::string letters(uint64_t n, int width) {
  std::string s(width, 'a');
  for (int i = width - 1; i >= 0; --i, n /= 26) s[i] = static_cast<char>('a' + n % 26);
  return s;
}

std::string group_word(int group) { return "grp" + letters(group, 2) + "x"; }

// All group words: a query every document matches.
std::string all_groups_query() {
  std::string q;
  for (int g = 0; g < kGroups; ++g) q += (g ? " " : "") + group_word(g);
  return q;
}

const char* const kFiller[] = {"the",    "policy",  "travel", "expense", "report",  "manager", "approve", "submit",
                               "within", "days",    "budget", "receipt", "invoice", "project", "review",  "team",
                               "office", "meeting", "remote", "laptop",  "support", "ticket",  "release", "notes"};

// Files under a docs folder, and for each path (relative) the unique word of its current version.
class Corpus {
 public:
  Corpus(std::string docs, uint32_t seed) : docs_(std::move(docs)), rng_(seed) {}

  const std::string& docs() const { return docs_; }
  const std::map<std::string, std::string>& files() const { return files_; }

  void add() {
    const int id = next_id_++;
    std::string rel = "s" + std::to_string(id % 7) + "/doc" + std::to_string(id) + (id % 2 ? ".txt" : ".md");
    write(rel);
  }
  void modify_random() {
    if (!files_.empty()) write(pick());
  }
  void remove_random() {
    if (files_.empty()) return;
    std::string rel = pick();
    fs::remove(docs_ + "/" + rel);
    files_.erase(rel);
  }
  // A few adds, modifications and deletions.
  void churn(int changes) {
    for (int i = 0; i < changes; ++i) {
      switch (rng_() % 3) {
        case 0: add(); break;
        case 1: modify_random(); break;
        default: remove_random(); break;
      }
    }
  }
  std::mt19937& rng() { return rng_; }

 private:
  std::string pick() {
    auto it = files_.begin();
    std::advance(it, rng_() % files_.size());
    return it->first;
  }
  void write(const std::string& rel) {
    const std::string word = "uq" + letters(next_version_++, 5) + "x";
    const int id = std::stoi(rel.substr(rel.find("/doc") + 4));
    std::string text;
    if (rel.ends_with(".md")) text += "# Document " + word + "\n\n";
    const int sentences = 6 + static_cast<int>(rng_() % 10);
    for (int s = 0; s < sentences; ++s) {
      const int words = 8 + static_cast<int>(rng_() % 8);
      for (int w = 0; w < words; ++w) text += std::string(w ? " " : "") + kFiller[rng_() % std::size(kFiller)];
      text += s == 2 ? " " + word + " and " + group_word(id % kGroups) + ".\n" : ".\n";
    }
    write_file(docs_ + "/" + rel, text);
    files_[rel] = word;
  }

  std::string docs_;
  std::mt19937 rng_;
  std::map<std::string, std::string> files_;
  int next_id_ = 0;
  uint64_t next_version_ = 0;
};

// ---- reading the data dir through the binary ------------------------------------------------------------

int64_t current_of(const std::string& data) {
  std::error_code ec;
  if (!fs::exists(data + "/CURRENT", ec)) return 0;
  return std::stoll(read_file(data + "/CURRENT"));
}

// Generation folders above CURRENT: what a writer left unpublished.
std::vector<int64_t> generations_above_current(const std::string& data) {
  const int64_t live = current_of(data);
  std::vector<int64_t> out;
  std::error_code ec;
  for (fs::directory_iterator it(data + "/gen", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos && std::stoll(name) > live)
      out.push_back(std::stoll(name));
  }
  return out;
}

std::string search_summary(const RunResult& r) { return "exit " + std::to_string(r.exit_code) + "\n" + r.err + r.out.substr(0, 2000); }

// The paths (relative to `docs`) the live generation holds, from one BM25 search for the word all share.
std::set<std::string> live_paths(const std::string& data, const std::string& docs) {
  RunResult r = run_rag({"search", all_groups_query(), "--mode", "bm25", "-k", "1000", "--candidates", "1000", "--data", data, "--json"});
  EXPECT_EQ(r.exit_code, 0) << search_summary(r);
  std::set<std::string> out;
  if (r.exit_code != 0) return out;
  const json results = json::parse(r.out)["results"];
  for (const auto& hit : results) {
    std::string path = hit["path"];
    out.insert(path.starts_with(docs + "/") ? path.substr(docs.size() + 1) : path);
  }
  return out;
}

std::set<std::string> keys_of(const std::map<std::string, std::string>& files) {
  std::set<std::string> out;
  for (const auto& [rel, word] : files) out.insert(rel);
  return out;
}

// The live generation holds exactly `expected` (path -> unique word): the list of paths matches, and `samples`
// documents picked at random are found by their own word, in BM25 and in the default (hybrid) mode.
void expect_live(const std::string& data, const std::string& docs, const std::map<std::string, std::string>& expected,
                 std::mt19937& rng, int samples, const std::string& where) {
  const std::set<std::string> want = keys_of(expected), got = live_paths(data, docs);
  if (got != want) {
    std::string missing, extra;
    for (const auto& p : want)
      if (!got.count(p)) missing += " " + p;
    for (const auto& p : got)
      if (!want.count(p)) extra += " " + p;
    ADD_FAILURE() << where << ": the live generation holds " << got.size() << " documents, expected " << want.size()
                  << "\n  missing:" << missing.substr(0, 1000) << "\n  extra:" << extra.substr(0, 1000);
  }
  for (int i = 0; i < samples && !expected.empty(); ++i) {
    auto it = expected.begin();
    std::advance(it, rng() % expected.size());
    const bool hybrid = i % 2 == 1;
    std::vector<std::string> args = {"search", it->second, "--data", data, "--json"};
    if (!hybrid) args.insert(args.end(), {"--mode", "bm25"});
    RunResult r = run_rag(args);
    ASSERT_EQ(r.exit_code, 0) << where << ": " << search_summary(r);
    json results = json::parse(r.out)["results"];
    bool found = false;
    for (const auto& hit : results) found |= hit["path"] == docs + "/" + it->first;
    EXPECT_TRUE(found) << where << ": " << it->first << " not found by its word " << it->second
                       << (hybrid ? " (hybrid)" : " (bm25)") << "\n" << r.out.substr(0, 1500);
    if (!hybrid) {
      EXPECT_EQ(results.size(), 1u) << where << ": " << it->second << "\n" << r.out.substr(0, 1500);
    }
  }
}

void expect_verify_passes(const std::string& data, const std::string& where) {
  RunResult v = run_rag({"verify", "--data", data});
  EXPECT_EQ(v.exit_code, 0) << where << ": rag verify --data " << data << "\n" << v.out << v.err;
}

// ---- 1. kill -9 at random moments ----------------------------------------------------------------------

uint32_t crash_seed() {
  const char* env = std::getenv("RAG_CRASH_SEED");
  return env ? static_cast<uint32_t>(std::stoul(env)) : 20261123u;
}

TEST(GenerationsCrash, KilledIngestAndRebuildLeaveAVerifiableSearchableDataDir) {
  const auto test_start = Clock::now();
  setenv("OPENBLAS_NUM_THREADS", "1", 1);
  TempDir dir;
  const std::string docs = dir / "docs", data = dir / "data", model = dir / "embedder.gguf";
  fs::create_directories(dir / "scratch");
  write_tiny_bert(model);
  const uint32_t seed = crash_seed();
  std::printf("[ seed     ] RAG_CRASH_SEED=%u\n", seed);
  Corpus corpus(docs, seed);
  std::mt19937 rng(seed + 1);
  constexpr int kInitialFiles = 240;
  for (int i = 0; i < kInitialFiles; ++i) corpus.add();

  auto timed = [&](const std::vector<std::string>& args) {
    RagChild child(args, dir / "scratch");
    RunResult r = child.wait();
    EXPECT_EQ(r.exit_code, 0) << args[0] << "\n" << r.err;
    return child.seconds();
  };
  const double first_s = timed({"ingest", docs, "--data", data, "--embed-model", model, "--quiet"});
  std::map<std::string, std::string> published = corpus.files();
  ASSERT_FALSE(HasFailure());
  // How long the writers run with the churn of a trial: the kill delays are spread over that.
  corpus.churn(70);
  double ingest_s = timed({"ingest", docs, "--data", data, "--quiet"});
  published = corpus.files();
  double rebuild_s = 1e9;
  for (int i = 0; i < 2; ++i) rebuild_s = std::min(rebuild_s, timed({"rebuild", "--data", data, "--quiet"}));
  expect_live(data, docs, published, rng, 2, "setup");
  ASSERT_FALSE(HasFailure());
  std::printf("[ timing   ] first ingest of %d files %.2f s, ingest of a trial's churn %.2f s, rebuild %.2f s\n",
              kInitialFiles, first_s, ingest_s, rebuild_s);

  constexpr int kTrialsEach = 30;
  struct Tally {
    int killed_before_publish = 0, killed_after_publish = 0, completed = 0;
    double writer_s = 0;
  } tally[2];  // [0] ingest, [1] rebuild
  for (int trial = 0; trial < 2 * kTrialsEach && !HasFailure(); ++trial) {
    const bool rebuild = trial % 2 == 1;
    const std::string where = std::string(rebuild ? "rebuild" : "ingest") + " trial " + std::to_string(trial) +
                              " (RAG_CRASH_SEED=" + std::to_string(seed) + ")";
    corpus.churn(50 + static_cast<int>(rng() % 40));
    const std::map<std::string, std::string> on_disk = corpus.files();
    double& run_s = rebuild ? rebuild_s : ingest_s;  // follows the runs that completed
    // A third of the kills very early or near the end, the rest anywhere in the run (a little beyond it, too).
    std::uniform_real_distribution<double> anywhere(0, 1.15 * run_s), early(0, 0.05 * run_s),
        late(0.8 * run_s, 1.05 * run_s);
    const int kind = static_cast<int>(rng() % 6);
    const double delay = kind == 0 ? early(rng) : kind == 1 ? late(rng) : anywhere(rng);

    const int64_t before = current_of(data);
    std::vector<std::string> args = rebuild ? std::vector<std::string>{"rebuild", "--data", data, "--quiet"}
                                            : std::vector<std::string>{"ingest", docs, "--data", data, "--quiet"};
    RagChild writer(args, dir / "scratch");
    std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    writer.kill_now();
    RunResult r = writer.wait();
    const int64_t after = current_of(data);
    Tally& t = tally[rebuild];
    t.writer_s += writer.seconds();
    if (r.exit_code == 128 + SIGKILL) {
      (after != before ? t.killed_after_publish : t.killed_before_publish)++;
      // A late kill that still came before the publish: the writer runs slower than it did when timed (the
      // machine got busier), so later trials spread their kills over a longer run. Without this a loaded CI
      // run killed all 30 rebuilds before they published and proved nothing about the other side.
      if (after == before && delay >= 0.8 * run_s) run_s *= 1.5;
    } else {
      ++t.completed;
      run_s = 0.5 * run_s + 0.5 * writer.seconds();
      ASSERT_EQ(r.exit_code, 0) << where << "\n" << r.err;
      ASSERT_NE(after, before) << where << ": a writer that exited 0 published nothing";
    }
    // Each trial ends with the catalog and the live generation in step, so a rebuild publishes what was live.
    if (after != before && !rebuild) published = on_disk;
    expect_verify_passes(data, where + ", after the kill at " + std::to_string(delay) + " s");
    expect_live(data, docs, published, rng, 2, where + ", after the kill");

    RunResult next = run_rag({"ingest", docs, "--data", data, "--quiet"});
    ASSERT_EQ(next.exit_code, 0) << where << ": the next ingest\n" << next.err;
    published = on_disk;
    EXPECT_TRUE(generations_above_current(data).empty()) << where;
    expect_verify_passes(data, where + ", after the next ingest");
    expect_live(data, docs, published, rng, 2, where + ", after the next ingest");
  }
  const char* names[] = {"ingest", "rebuild"};
  for (int i = 0; i < 2; ++i)
    std::printf("[ trials   ] %s: %d trials, killed before publishing %d, killed after publishing %d, completed "
                "%d; mean writer run %.2f s\n",
                names[i], kTrialsEach, tally[i].killed_before_publish, tally[i].killed_after_publish,
                tally[i].completed, tally[i].writer_s / kTrialsEach);
  std::printf("[ timing   ] crash test %.1f s\n", seconds_since(test_start));
  // The kills must cover both sides of the rename of CURRENT, or the test proves little.
  for (int i = 0; i < 2; ++i) {
    EXPECT_GE(tally[i].killed_before_publish, 5) << names[i];
    EXPECT_GE(tally[i].killed_after_publish + tally[i].completed, 1) << names[i];
  }
}

// ---- 2. queries while rebuilding -----------------------------------------------------------------------

TEST(GenerationsServe, QueriesNeverFailWhileRebuildRunsTwice) {
  setenv("OPENBLAS_NUM_THREADS", "1", 1);
  TempDir dir;
  const std::string docs = dir / "docs", data = dir / "data", model = dir / "embedder.gguf";
  write_tiny_bert(model);
  Corpus corpus(docs, 7);
  for (int i = 0; i < 150; ++i) corpus.add();
  RunResult ingest = run_rag({"ingest", docs, "--data", data, "--embed-model", model, "--quiet"});
  ASSERT_EQ(ingest.exit_code, 0) << ingest.err;
  const int64_t g = current_of(data);
  ASSERT_GT(g, 0);

  ServeProcess serve({"--data", data});
  const int port = serve.port();
  const std::vector<std::pair<std::string, std::string>> docs_by_word = [&] {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [rel, word] : corpus.files()) out.emplace_back(word, docs + "/" + rel);
    return out;
  }();

  std::atomic<bool> stop{false};
  std::atomic<int> queries{0};
  std::mutex mutex;
  std::vector<std::string> failures;
  std::vector<int64_t> generations;  // index_generation of each reply, in order
  std::thread client([&] {
    for (size_t i = 0; !stop; ++i) {
      const auto& [word, path] = docs_by_word[i % docs_by_word.size()];
      HttpReply reply = http_request(port, "POST", "/v1/search", json{{"query", word}, {"k", 5}}.dump());
      std::string failure;
      int64_t generation = -1;
      if (reply.status != 200) {
        failure = "status " + std::to_string(reply.status) + ": " + reply.body.substr(0, 300);
      } else {
        json body = json::parse(reply.body, nullptr, false);
        if (body.is_discarded() || !body.contains("results") || !body["index_generation"].is_number_integer()) {
          failure = "bad body: " + reply.body.substr(0, 300);
        } else {
          generation = body["index_generation"];
          bool found = false;
          for (const auto& hit : body["results"]) found |= hit.value("path", "") == path;
          if (!found) failure = "no hit " + path + " for " + word + ": " + reply.body.substr(0, 300);
        }
      }
      std::lock_guard lock(mutex);
      if (!failure.empty()) failures.push_back("query " + std::to_string(i) + ": " + failure);
      generations.push_back(generation);
      ++queries;
    }
  });
  auto wait_for_queries = [&](int n) {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (queries < n && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  };
  const auto start = Clock::now();
  wait_for_queries(30);
  int during[2] = {0, 0};
  double rebuild_s[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    const int before = queries;
    const auto t0 = Clock::now();
    RunResult r = run_rag({"rebuild", "--data", data, "--quiet"});
    rebuild_s[i] = seconds_since(t0);
    during[i] = queries - before;
    EXPECT_EQ(r.exit_code, 0) << r.err;
    wait_for_queries(queries + 30);
  }
  wait_for_queries(300);
  stop = true;
  client.join();
  std::printf("[ serve    ] %d queries in %.1f s; during rebuild 1 (%.2f s): %d, during rebuild 2 (%.2f s): %d\n",
              queries.load(), seconds_since(start), rebuild_s[0], during[0], rebuild_s[1], during[1]);

  EXPECT_GE(queries.load(), 300);
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed queries; the first: " << failures.front()
                                << "\nserver log:\n" << serve.log().substr(0, 3000);
  // The replies move from g to g+1 to g+2 and never back.
  std::vector<int64_t> distinct;
  for (int64_t gen : generations)
    if (gen >= 0 && (distinct.empty() || distinct.back() != gen)) distinct.push_back(gen);
  EXPECT_EQ(distinct, (std::vector<int64_t>{g, g + 1, g + 2}));
  EXPECT_EQ(current_of(data), g + 2);
  HttpReply ready = http_request(port, "GET", "/readyz");
  ASSERT_EQ(ready.status, 200);
  EXPECT_EQ(json::parse(ready.body)["index_generation"], g + 2);
}

// ---- 3. disk full ---------------------------------------------------------------------------------------

// The one line `rag <command>: ...` on stderr; fails the test unless there is exactly one.
std::string error_line(const std::string& err, const std::string& command) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < err.size()) {
    size_t end = err.find('\n', start);
    if (end == std::string::npos) end = err.size();
    std::string line = err.substr(start, end - start);
    if (line.starts_with("rag " + command + ": ")) lines.push_back(line);
    start = end + 1;
  }
  EXPECT_EQ(lines.size(), 1u) << err;
  return lines.empty() ? "" : lines[0];
}

uintmax_t largest_file(const std::string& dir) {
  uintmax_t largest = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) largest = std::max(largest, e.file_size());
  return largest;
}

// A writer under RLIMIT_FSIZE: for each limit, a copy of the data dir `base`; the writer either succeeds (the
// limit was not reached) or fails with exit 1, one clear error line, the live generation untouched, nothing
// left behind; the next writer without the limit succeeds. Returns how many limits made the writer fail.
int check_disk_full(const TempDir& dir, const std::string& base, const std::string& docs,
                    const std::vector<std::string>& command, const std::map<std::string, std::string>& before_files,
                    const std::map<std::string, std::string>& after_files, const std::vector<rlim_t>& limits) {
  std::mt19937 rng(3);
  int failed = 0;
  for (rlim_t limit : limits) {
    const std::string where = command[0] + " with RLIMIT_FSIZE " + std::to_string(limit);
    const std::string data = dir / ("data-" + std::to_string(limit));
    fs::copy(base, data, fs::copy_options::recursive);
    std::vector<std::string> args = command;
    args.insert(args.end(), {"--data", data});
    const int64_t live = current_of(data);
    RunResult r = run_limited(args, dir.path(), limit);
    std::printf("[ diskfull ] %s: exit %d: %s\n", where.c_str(), r.exit_code,
                r.exit_code == 0 ? "" : error_line(r.err, command[0]).c_str());
    if (r.exit_code == 0) {
      expect_verify_passes(data, where);
      fs::remove_all(data);
      continue;
    }
    ++failed;
    EXPECT_EQ(r.exit_code, 1) << where << "\n" << r.err;
    const std::string line = error_line(r.err, command[0]);
    EXPECT_EQ(line.find("internal error"), std::string::npos) << where << ": " << line;
    // It names the file of the data dir that could not be written and says why (SQLite reports EFBIG as an I/O
    // error); not a follow-on error of the cleanup such as "cannot rollback - no transaction is active".
    EXPECT_NE(line.find(data + "/"), std::string::npos) << where << ": the error names no file: " << line;
    const bool says_why = line.find("too large") != std::string::npos || line.find("full") != std::string::npos ||
                          line.find("I/O error") != std::string::npos || line.find("space") != std::string::npos;
    EXPECT_TRUE(says_why) << where << ": the error does not say the write failed: " << line;
    EXPECT_EQ(line.find("rollback"), std::string::npos) << where << ": " << line;
    EXPECT_EQ(current_of(data), live) << where;
    EXPECT_TRUE(generations_above_current(data).empty()) << where << ": partial generation left behind";
    expect_verify_passes(data, where + ", after the failure");
    expect_live(data, docs, before_files, rng, 2, where + ", after the failure");

    RunResult next = run_rag(args);
    EXPECT_EQ(next.exit_code, 0) << where << ": the next run without the limit\n" << next.err;
    EXPECT_TRUE(generations_above_current(data).empty()) << where;
    expect_verify_passes(data, where + ", after the next run");
    expect_live(data, docs, after_files, rng, 2, where + ", after the next run");
    fs::remove_all(data);
  }
  return failed;
}

TEST(GenerationsDiskFull, WritersStoppedByAFileSizeLimitLeaveTheLiveGenerationServing) {
  setenv("OPENBLAS_NUM_THREADS", "1", 1);
  TempDir dir;
  const std::string docs = dir / "docs", base = dir / "base", model = dir / "embedder.gguf";
  write_tiny_bert(model);
  Corpus corpus(docs, 11);
  for (int i = 0; i < 40; ++i) corpus.add();
  RunResult first = run_rag({"ingest", docs, "--data", base, "--embed-model", model, "--quiet"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::map<std::string, std::string> small = corpus.files();
  const uintmax_t small_largest = largest_file(base);
  for (int i = 0; i < 400; ++i) corpus.add();
  const std::map<std::string, std::string> large = corpus.files();

  // Limits from just above the largest file of the small data dir upwards: each trips a different writer
  // (SQLite's WAL, a Xapian table, the FAISS file) or none.
  std::vector<rlim_t> limits;
  for (double f : {1.05, 1.5, 2.5, 4.0, 8.0}) limits.push_back(static_cast<rlim_t>(small_largest * f));
  std::printf("[ diskfull ] largest file of the small data dir: %ju bytes\n", small_largest);
  const int ingest_failures = check_disk_full(dir, base, docs, {"ingest", docs, "--quiet"}, small, large, limits);
  EXPECT_GE(ingest_failures, 2);

  // Rebuild: the large corpus in the catalog, a limit below what a fresh generation needs.
  RunResult grow = run_rag({"ingest", docs, "--data", base, "--quiet"});
  ASSERT_EQ(grow.exit_code, 0) << grow.err;
  const uintmax_t large_largest = largest_file(base + "/gen");
  std::printf("[ diskfull ] largest file of the large generation: %ju bytes\n", large_largest);
  limits.clear();
  for (double f : {0.1, 0.3, 0.6, 0.9}) limits.push_back(static_cast<rlim_t>(large_largest * f));
  const int rebuild_failures = check_disk_full(dir, base, docs, {"rebuild", "--quiet"}, large, large, limits);
  EXPECT_GE(rebuild_failures, 2);
}

}  // namespace
}  // namespace rag::test
