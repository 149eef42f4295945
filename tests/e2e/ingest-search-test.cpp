// End-to-end: `rag ingest` and `rag search` as a user runs them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "tests/support/pdf-writer.h"
#include "tests/support/support.h"

namespace rag::test {
namespace {

using nlohmann::json;

const std::string kBinary("\x00\x01\x02\x03 binary \xff", 13);

TEST(E2eIngest, JsonSummaryAndExitStatusAcrossRuns) {
  TempDir dir;
  std::string docs = dir / "docs", data = dir / "data";
  write_file(docs + "/a.md", "# Alpha\n\nAardvarks dig burrows.\n");
  write_file(docs + "/b.txt", "Badgers dig too.\n");

  struct Step {
    const char* what;
    std::function<void()> change;
    int exit_code;
    int64_t new_files, updated, unchanged, removed, failed;
  } steps[] = {
      {"first", [] {}, 0, 2, 0, 0, 0, 0},
      {"again", [] {}, 0, 0, 0, 2, 0, 0},
      {"with a broken file", [&] { write_file(docs + "/c.bin", kBinary); }, 3, 0, 0, 2, 0, 1},
      {"b changed, c removed",
       [&] {
         write_file(docs + "/b.txt", "Badgers and more badgers.\n");
         std::remove((docs + "/c.bin").c_str());
       },
       0, 0, 1, 1, 1, 0},
  };
  for (const auto& step : steps) {
    step.change();
    RunResult r = run_rag({"ingest", docs, "--data", data, "--json"});
    ASSERT_EQ(r.exit_code, step.exit_code) << step.what << "\n" << r.err;
    json s = json::parse(r.out);  // exactly one JSON object on stdout
    for (const char* field : {"new", "updated", "unchanged", "removed", "failed", "chunks", "pages", "bytes"})
      EXPECT_TRUE(s.at(field).is_number_integer()) << field;
    EXPECT_EQ(s["new"], step.new_files) << step.what;
    EXPECT_EQ(s["updated"], step.updated) << step.what;
    EXPECT_EQ(s["unchanged"], step.unchanged) << step.what;
    EXPECT_EQ(s["removed"], step.removed) << step.what;
    EXPECT_EQ(s["failed"], step.failed) << step.what;
    EXPECT_EQ(s["failures"].size(), static_cast<size_t>(step.failed));
    if (step.failed > 0) {
      EXPECT_EQ(s["failures"][0]["path"], docs + "/c.bin");
      EXPECT_NE(r.err.find("completed with 1 failures"), std::string::npos) << r.err;
    }
  }
}

TEST(E2eIngest, HeldLockGivesExit75AndNamesTheHolder) {
  TempDir dir;
  write_file(dir / "docs/a.txt", "text");
  std::string data = dir / "data";
  ASSERT_EQ(run_rag({"ingest", dir / "docs", "--data", data, "--quiet"}).exit_code, 0);
  int fd = open((data + "/write.lock").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
  std::string pid = std::to_string(getpid()) + "\n";
  ASSERT_EQ(ftruncate(fd, 0), 0);
  ASSERT_EQ(pwrite(fd, pid.data(), pid.size(), 0), static_cast<ssize_t>(pid.size()));
  RunResult r = run_rag({"ingest", dir / "docs", "--data", data});
  EXPECT_EQ(r.exit_code, 75) << r.err;
  EXPECT_NE(r.err.find("locked by pid " + std::to_string(getpid())), std::string::npos) << r.err;
  // Readers are never blocked by the writer's lock.
  EXPECT_EQ(run_rag({"search", "text", "--data", data, "--json"}).exit_code, 0);
  close(fd);
  EXPECT_EQ(run_rag({"ingest", dir / "docs", "--data", data}).exit_code, 0);
}

TEST(E2eIngest, BadArgumentsAreUsageErrors) {
  TempDir dir;
  struct Case {
    std::vector<std::string> args;
    int exit_code;
  } cases[] = {
      {{"ingest", "--data", dir / "data"}, 2},
      {{"ingest", dir.path(), "--max-file-mb", "0", "--data", dir / "data"}, 2},
      {{"ingest", dir.path(), "--bogus"}, 2},
      {{"ingest", dir / "missing", "--data", dir / "data"}, 1},
      {{"search", "--data", dir / "data"}, 2},
      {{"search", "x", "-k", "0", "--data", dir / "data"}, 2},
      {{"bench", "nosuch"}, 2},
  };
  for (const auto& c : cases) {
    RunResult r = run_rag(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.args[0] << " " << c.args[1] << "\n" << r.err;
    EXPECT_FALSE(r.err.empty());
  }
}

TEST(E2eSearch, JsonShapeWithNullPageForNonPdf) {
  TempDir dir;
  write_file(dir / "docs/guide.md", "# Guide\n\n## Setup\n\nConfigure the frobnicator before use.\n");
  write_file(dir / "docs/other.txt", "The frobnicator is mentioned here as well.\n");
  std::string data = dir / "data";
  ASSERT_EQ(run_rag({"ingest", dir / "docs", "--data", data, "--quiet"}).exit_code, 0);
  RunResult r = run_rag({"search", "frobnicator", "-k", "5", "--data", data, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  ASSERT_EQ(out["results"].size(), 2u);
  for (const auto& hit : out["results"]) {
    EXPECT_TRUE(hit["chunk_id"].is_number_integer());
    EXPECT_TRUE(hit["doc_id"].is_number_integer());
    EXPECT_TRUE(hit["path"].is_string());
    EXPECT_TRUE(hit["title"].is_string());
    EXPECT_TRUE(hit["page"].is_null());
    EXPECT_TRUE(hit["heading"].is_string());
    EXPECT_TRUE(hit["score"].is_number());
    EXPECT_NE(hit["snippet"].get<std::string>().find("**frobnicator**"), std::string::npos) << hit["snippet"];
  }
  RunResult one = run_rag({"search", "frobnicator", "--k", "1", "--data", data, "--json"});
  EXPECT_EQ(json::parse(one.out)["results"].size(), 1u);
  RunResult human = run_rag({"search", "frobnicator", "--data", data});
  EXPECT_EQ(human.exit_code, 0);
  EXPECT_NE(human.out.find("1. "), std::string::npos);
  EXPECT_NE(human.out.find("guide.md"), std::string::npos);
  EXPECT_EQ(human.out.find("\x1b["), std::string::npos);  // no ANSI when stdout is not a terminal
}

// Three short pages fit one chunk by size; each hit must still cite the page its words are on.
TEST(E2eSearch, PdfHitsCiteThePageOfTheirWordsAndPhrasesMatch) {
  TempDir dir;
  std::filesystem::create_directories(dir / "docs");
  write_pdf(dir / "docs/manual.pdf",
            {"Installing the frobnicator takes ten minutes.", "Calibrating the quuxifier needs a torque wrench.",
             "Retiring the gizmotron is irreversible."},
            "Manual");
  std::string data = dir / "data";
  ASSERT_EQ(run_rag({"ingest", dir / "docs", "--data", data, "--quiet"}).exit_code, 0);
  struct Case {
    const char* query;
    int page;
  } cases[] = {{"frobnicator", 1}, {"quuxifier", 2}, {"gizmotron", 3}, {"\"torque wrench\"", 2}};
  for (const auto& c : cases) {
    RunResult r = run_rag({"search", c.query, "--data", data, "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json results = json::parse(r.out)["results"];
    ASSERT_EQ(results.size(), 1u) << c.query;
    EXPECT_EQ(results[0]["page"], c.page) << c.query;
  }
  RunResult none = run_rag({"search", "\"wrench torque\"", "--data", data, "--json"});
  EXPECT_EQ(json::parse(none.out)["results"].size(), 0u);
}

TEST(E2eSearch, MissingDataDirSaysToRunIngest) {
  TempDir dir;
  RunResult r = run_rag({"search", "anything", "--data", dir / "empty"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("rag ingest"), std::string::npos) << r.err;
}

TEST(E2eHelp, EveryCommandExplainsItself) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  } cases[] = {
      {{"ingest", "--help"}, "usage: rag ingest"},
      {{"search", "--help"}, "usage: rag search"},
      {{"bench", "--help"}, "ingest"},
      {{"bench", "ingest", "--help"}, "usage: rag bench ingest"},
  };
  for (const auto& c : cases) {
    RunResult r = run_rag(c.args);
    EXPECT_EQ(r.exit_code, 0) << c.args[0];
    EXPECT_NE(r.out.find(c.expected), std::string::npos) << r.out;
  }
}

TEST(E2eBench, IngestReportsThroughputWithoutTouchingAnyDataDir) {
  TempDir dir;
  for (int i = 0; i < 5; ++i) write_file(dir / ("docs/f" + std::to_string(i) + ".txt"), "some words for file");
  RunResult r = run_rag({"bench", "ingest", dir / "docs", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  EXPECT_EQ(out["files"], 5);
  EXPECT_EQ(out["failed"], 0);
  EXPECT_GT(out["files_per_s"].get<double>(), 0);
  EXPECT_GT(out["chunks"].get<int64_t>(), 0);
}

}  // namespace
}  // namespace rag::test
