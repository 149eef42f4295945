// Fault loops (issue 6, reliability promise 1): each writer operation runs with its Nth write (or fsync) on
// the data dir failing, for N = 1, 2, 3, ... until a run finishes without reaching N. After every failed run:
//   - it threw a rag::Error naming the data dir file it was working on (nothing else escaped, nothing
//     crashed), or it succeeded where the failed call may be shrugged off (SQLite's checkpoint at close,
//     pruning old generations after publishing);
//   - no descriptor on the data dir stays open (but Xapian's own leak, see close_xapian_leaks);
//   - CURRENT names the generation live before the run or a complete new one;
//   - verify() finds no problem;
//   - searches on the live generation (keyword and vector) return exactly the documents of that generation;
//   - the same operation run again without faults succeeds and leaves the same documents and search
//     results as a reference run that never failed.
// Operations: the first ingest into an empty data dir; an ingest that adds, replaces and removes files on
// top of a published generation; rebuild with re-embedding. Faults come from fault-injection.h (write fails
// with ENOSPC, fsync with EIO).
//
// CI runs N = 1, 1 + s, 1 + 2s, ... with s = RAG_FAULT_STRIDE (default kDefaultStride: 2, 3 under ASan) so
// the suite stays fast; the full loops, every N:
//   RAG_FAULT_STRIDE=1 build/tests/test_faults-io --gtest_filter='FaultLoopsIo.*'
// Each loop prints how many faulted runs it made and how many matching calls an unfaulted run makes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "common/error.h"
#include "index/index.h"
#include "tests/faults-io/fault-injection.h"
#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"

namespace rag::index {
namespace {

namespace fs = std::filesystem;
using test::faults::ArmedFault;
using test::faults::FaultKind;

// Every N of the six loops is about 450 runs of a small ingest or rebuild, each followed by checks and an
// unfaulted run: 31 s of CPU in release; at stride 3 under ASan+UBSan 19 s (measured with /usr/bin/time).
#if defined(__SANITIZE_ADDRESS__)
constexpr int64_t kDefaultStride = 3;
#else
constexpr int64_t kDefaultStride = 2;
#endif

int64_t stride() {
  const char* s = std::getenv("RAG_FAULT_STRIDE");
  int64_t v = s ? std::atoll(s) : kDefaultStride;
  return v >= 1 ? v : 1;
}

// File name -> content. Every document holds "common"; "oldversion"/"newversion" tell the two versions of a
// replaced document apart; the rest are unique words (none a file name, which titles would add).
using Docs = std::map<std::string, std::string>;

const Docs kBefore = {
    {"keep.txt", "common quokka stays the same in both versions"},
    {"changed.md", "# Heading\n\ncommon oldversion narwhal text before the change"},
    {"removed.txt", "common axolotl text that the second ingest removes"},
    {"also-changed.txt", "common oldversion pangolin text"},
};
const Docs kAfter = {
    {"keep.txt", "common quokka stays the same in both versions"},
    {"changed.md", "# Heading\n\ncommon newversion narwhal text after the change, a little longer"},
    {"also-changed.txt", "common newversion pangolin text, longer now"},
    {"added.txt", "common newversion okapi text added by the second ingest"},
    {"added-too.md", "# Added\n\ncommon wombat text also added"},
};
const std::vector<std::string> kQueries = {"common", "oldversion", "newversion", "quokka", "narwhal",
                                           "axolotl", "pangolin", "okapi", "wombat"};

void write_docs(const std::string& folder, const Docs& docs) {
  std::error_code ec;
  fs::remove_all(folder, ec);
  for (const auto& [name, text] : docs) test::write_file(folder + "/" + name, text);
}

// The file names of `docs` whose text holds `word` (the oracle for a one-word query).
std::set<std::string> holding(const Docs& docs, const std::string& word) {
  std::set<std::string> out;
  for (const auto& [name, text] : docs)
    if (text.find(word) != std::string::npos) out.insert(name);
  return out;
}

std::string name_of(const std::string& path) { return fs::path(path).filename().string(); }

// One loop's world: the documents folder, the model, the data dir the operation starts from.
struct World {
  test::TempDir dir;
  std::string docs = dir / "docs";
  std::string model = dir / "model.gguf";
  std::string start = dir / "start";  // copied to a fresh data dir for every run; empty for a first ingest
  std::shared_ptr<const Embedder> embedder;

  World() {
    test::TinyBertSpec spec;
    spec.context = 128;
    test::write_tiny_bert(model, spec);
    embedder = open_embedder(model);
    fs::create_directories(start);
  }

  IngestOptions ingest_options() const {
    IngestOptions o;
    o.roots = {docs};
    o.threads = 1;
    o.batch_bytes = 1;  // a catalog and Xapian commit per file: more states a failure can land in
    o.embedder = embedder;
    o.embedder_path = model;
    return o;
  }

  std::string fresh_copy(const std::string& name) const {
    std::string data = dir / name;
    std::error_code ec;
    fs::remove_all(data, ec);
    fs::copy(start, data, fs::copy_options::recursive);
    return data;
  }
};

// What the live generation answers, in a form two data dirs can be compared by.
struct Snapshot {
  std::vector<std::string> documents;  // "name status chunks hash"
  std::map<std::string, std::vector<std::string>> keyword, vector;  // query -> "score name snippet", sorted

  bool operator==(const Snapshot&) const = default;
};

std::string describe(const Snapshot& s) {
  std::string out;
  for (const auto& d : s.documents) out += "  doc " + d + "\n";
  for (const auto& [q, hits] : s.keyword)
    for (const auto& h : hits) out += "  kw " + q + ": " + h + "\n";
  for (const auto& [q, hits] : s.vector)
    for (const auto& h : hits) out += "  vec " + q + ": " + h + "\n";
  return out;
}

Snapshot snapshot(const World& w, const std::string& data) {
  Snapshot s;
  {
    Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
    for (const auto& d : catalog.documents_under(w.docs))
      s.documents.push_back(fmt::format("{} {} {} {}", name_of(d.path), d.status, d.chunk_count, d.content_hash));
  }
  Searcher searcher(data);
  SearchOptions options;
  options.k = 100;
  for (const auto& q : kQueries) {
    auto& kw = s.keyword[q];
    for (const auto& h : searcher.search(q, options))
      kw.push_back(fmt::format("{:.6f} {} {}", h.score, name_of(h.path), h.snippet));
    std::sort(kw.begin(), kw.end());
    auto& vec = s.vector[q];
    for (const auto& h : searcher.hydrate(searcher.vector_candidates(q, *w.embedder, options), q, options))
      vec.push_back(fmt::format("{:.6f} {}", h.score, name_of(h.path)));
    std::sort(vec.begin(), vec.end());
  }
  return s;
}

// The live generation of `data` answers exactly as a generation of `docs` must.
void expect_serves(const World& w, const std::string& data, const Docs& docs, const std::string& context) {
  Searcher searcher(data);
  SearchOptions options;
  options.k = 100;
  std::set<std::string> all;
  for (const auto& [name, text] : docs) all.insert(name);
  for (const auto& q : kQueries) {
    std::set<std::string> got;
    for (const auto& h : searcher.search(q, options)) got.insert(name_of(h.path));
    EXPECT_EQ(got, holding(docs, q)) << context << ": keyword query '" << q << "'";
  }
  // k above the chunk count: a vector search returns every chunk of the generation.
  std::set<std::string> got;
  for (const auto& h : searcher.hydrate(searcher.vector_candidates("common", *w.embedder, options), "common", options))
    got.insert(name_of(h.path));
  EXPECT_EQ(got, all) << context << ": vector search";
}

// Descriptors still open on files under `folder` after a failed run. Xapian 1.4.22 leaks one when a table's
// fsync fails in commit (it unlinks the new version file "v.tmp" but never closes it; reproduced with Xapian
// alone): those are closed here and counted, so that any other descriptor left open, ours, is a failure.
int64_t close_xapian_leaks(const std::string& folder) {
  std::error_code ec;
  std::string real = fs::canonical(folder, ec).string();
  std::vector<std::pair<int, std::string>> open;
  for (const auto& e : fs::directory_iterator("/proc/self/fd", ec)) {
    std::string target = fs::read_symlink(e.path(), ec).string();
    if (!ec && target.rfind(real + "/", 0) == 0) open.emplace_back(std::stoi(e.path().filename().string()), target);
  }
  int64_t closed = 0;
  for (const auto& [fd, target] : open) {
    if (target.ends_with("/xapian/v.tmp (deleted)")) {
      ::close(fd);
      ++closed;
    } else {
      ADD_FAILURE() << "fd " << fd << " left open on " << target;
    }
  }
  return closed;
}

struct Operation {
  std::string name;
  Docs before;   // what the live generation holds before the operation (empty: there is none)
  Docs after;    // what it holds after
  std::function<void(World&)> prepare;            // fills w.start and leaves w.docs as the operation sees it
  std::function<void(World&, const std::string&)> run;
};

struct LoopCounts {
  int64_t runs = 0;        // runs with a fault (the last, unfaulted one not counted)
  int64_t calls = 0;       // matching calls of an unfaulted run
  int64_t xapian_leaks = 0;  // descriptors Xapian leaked (see close_xapian_leaks)
  int64_t absorbed = 0;    // faulted runs that succeeded all the same
  std::set<std::string> absorbed_files;  // the files of their failed calls, relative to the data dir
};

// One fault loop: op under kind, N = 1, 1 + stride, ... until a run finishes before its Nth call.
LoopCounts fault_loop(const Operation& op, FaultKind kind) {
  World w;
  op.prepare(w);
  const int64_t before_gen = current_generation(w.start);

  std::string reference_dir = w.fresh_copy("reference");
  LoopCounts counts;
  {
    ArmedFault count_only(reference_dir, kind, 0);
    op.run(w, reference_dir);
    counts.calls = count_only.calls();
  }
  EXPECT_TRUE(verify(reference_dir).ok());
  const Snapshot reference = snapshot(w, reference_dir);
  expect_serves(w, reference_dir, op.after, op.name + " reference");

  const int64_t step = stride();
  for (int64_t n = 1;; n += step) {
    std::string context = fmt::format("{} with {} call {} failing", op.name, fault_kind_name(kind), n);
    std::string data = w.fresh_copy("data");
    std::optional<Error> error;
    bool fired = false, escaped = false;
    std::string failed_path;
    {
      ArmedFault fault(data, kind, n);
      try {
        op.run(w, data);
      } catch (const Error& e) {
        error = e;
      } catch (const std::exception& e) {
        escaped = true;
        ADD_FAILURE() << context << ": escaped as a " << typeid(e).name() << ", not a rag::Error: " << e.what();
      }
      fired = fault.fired();
      failed_path = fault.failed_path();
    }
    if (!fired) {
      if (error) ADD_FAILURE() << context << ": failed without a fault: " << error->what();
      else EXPECT_EQ(snapshot(w, data), reference) << context;
      break;
    }
    ++counts.runs;
    SCOPED_TRACE(context + " (" + failed_path + ")");
    // Each check on its own, so one that throws is a failure naming its step, not an escaped exception.
    auto check = [&](const char* step, const std::function<void()>& body) {
      try {
        body();
      } catch (const std::exception& e) {
        ADD_FAILURE() << step << ": " << e.what();
      }
    };
    counts.xapian_leaks += close_xapian_leaks(data);
    if (error) {
      // Every message names the data dir file or folder it was working on.
      EXPECT_NE(std::string(error->what()).find(data), std::string::npos) << error->what();
    } else if (!escaped) {
      ++counts.absorbed;
      std::string real = fs::canonical(data).string();
      counts.absorbed_files.insert(failed_path.size() > real.size() ? failed_path.substr(real.size() + 1) : "the data dir");
    }
    check("the live generation", [&] {
      const int64_t gen = current_generation(data);
      if (gen == before_gen && gen == 0) {
        EXPECT_THROW(Searcher searcher(data), Error);
      } else if (gen == before_gen) {
        expect_serves(w, data, op.before, "previous generation live");
      } else {
        EXPECT_GT(gen, before_gen);
        expect_serves(w, data, op.after, "new generation live");
      }
    });
    check("verify", [&] {
      if (!fs::exists(catalog_path(data))) return;  // failed before creating the catalog
      VerifyReport report = verify(data);
      EXPECT_TRUE(report.ok()) << report.problems.front();
    });
    check("the unfaulted run after it", [&] {
      {
        ArmedFault count_only(data, kind, 0);  // skips the syncs, as the faulted runs do
        op.run(w, data);
      }
      EXPECT_TRUE(verify(data).ok());
      Snapshot after = snapshot(w, data);
      EXPECT_EQ(after, reference) << "got:\n" << describe(after) << "reference:\n" << describe(reference);
    });
    if (::testing::Test::HasFailure()) break;  // one failing N says enough; the rest would repeat it
  }
  std::printf("fault loop %s / %s: %lld faulted runs (stride %lld) of which %lld succeeded all the same, "
              "%lld matching calls in an unfaulted run, %lld descriptors leaked by Xapian closed\n",
              op.name.c_str(), fault_kind_name(kind), static_cast<long long>(counts.runs),
              static_cast<long long>(step), static_cast<long long>(counts.absorbed),
              static_cast<long long>(counts.calls), static_cast<long long>(counts.xapian_leaks));
  for (const auto& file : counts.absorbed_files) std::printf("  a failed call on %s did not fail the run\n", file.c_str());
  return counts;
}

Operation first_ingest() {
  return {"first ingest", {}, kBefore, [](World& w) { write_docs(w.docs, kBefore); },
          [](World& w, const std::string& data) { ingest(data, w.ingest_options()); }};
}

Operation second_ingest() {
  return {"ingest adding, replacing and removing", kBefore, kAfter,
          [](World& w) {
            write_docs(w.docs, kBefore);
            ingest(w.start, w.ingest_options());
            write_docs(w.docs, kAfter);
          },
          [](World& w, const std::string& data) { ingest(data, w.ingest_options()); }};
}

Operation rebuild_reembedding() {
  return {"rebuild", kBefore, kBefore,
          [](World& w) {
            write_docs(w.docs, kBefore);
            ingest(w.start, w.ingest_options());
          },
          [](World&, const std::string& data) {
            RebuildOptions o;
            o.reembed = true;
            rebuild(data, o);
          }};
}

void expect_loop_ran(const LoopCounts& counts) {
  // The operation writes and syncs, so the loop failed something (a loop that never fired tests nothing).
  EXPECT_GT(counts.calls, 0);
  EXPECT_GT(counts.runs, 0);
}

TEST(FaultLoopsIo, FirstIngestWithTheNthWriteFailing) { expect_loop_ran(fault_loop(first_ingest(), FaultKind::kWrite)); }
TEST(FaultLoopsIo, FirstIngestWithTheNthFsyncFailing) { expect_loop_ran(fault_loop(first_ingest(), FaultKind::kSync)); }
TEST(FaultLoopsIo, IngestOverAGenerationWithTheNthWriteFailing) {
  expect_loop_ran(fault_loop(second_ingest(), FaultKind::kWrite));
}
TEST(FaultLoopsIo, IngestOverAGenerationWithTheNthFsyncFailing) {
  expect_loop_ran(fault_loop(second_ingest(), FaultKind::kSync));
}
TEST(FaultLoopsIo, RebuildWithTheNthWriteFailing) { expect_loop_ran(fault_loop(rebuild_reembedding(), FaultKind::kWrite)); }
TEST(FaultLoopsIo, RebuildWithTheNthFsyncFailing) { expect_loop_ran(fault_loop(rebuild_reembedding(), FaultKind::kSync)); }

}  // namespace
}  // namespace rag::index
