// Ingest throughput: parsers and chunking on generated documents (bytes per second), and PDF
// extraction per file (dominated by fork + poppler start-up).
//   cmake --build <build> --target ingest-parse && <build>/bench/ingest-parse
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "ingest/ingest.h"

namespace {

using namespace rag::ingest;

constexpr size_t kDocumentBytes = 1 << 20;

std::string sentence(int i) {
  return "Robot " + std::to_string(i) + " carries a pallet of spare parts to dock " + std::to_string(i % 17) +
         " and waits for the operator to confirm the delivery. ";
}

std::string markdown_document() {
  std::string out = "---\ntitle: Bench\n---\n";
  for (int i = 0; out.size() < kDocumentBytes; ++i) {
    out += "## Section " + std::to_string(i) + "\n\n";
    for (int p = 0; p < 3; ++p)
      out += sentence(i) + "**Bold** text with a [link](http://x/" + std::to_string(p) + ") and `code`.\n\n";
    out += "- first item\n  - nested item " + std::to_string(i) + "\n- second item\n\n";
    out += "| Item | Limit |\n|------|------:|\n| Meals | $" + std::to_string(i) + " |\n| Hotel | $200 |\n\n";
  }
  return out;
}

std::string html_document() {
  std::string out =
      "<!doctype html><html><head><title>Bench</title><script>var x = 1;</script></head><body><nav>n</nav>";
  for (int i = 0; out.size() < kDocumentBytes; ++i) {
    out += "<h2>Section " + std::to_string(i) + "</h2>";
    for (int p = 0; p < 3; ++p)
      out += "<p>" + sentence(i) + "<b>Bold</b> &amp; <a href=\"/x\">link</a>&mdash;done.</p>\n";
    out += "<ul><li>first<ul><li>nested</li></ul></li><li>second</li></ul>";
    out += "<table><tr><th>Item</th><th>Limit</th></tr><tr><td>Meals</td><td>$" + std::to_string(i) +
           "</td></tr></table>\n";
  }
  return out + "</body></html>";
}

std::string text_document() {
  std::string out;
  for (int i = 0; out.size() < kDocumentBytes; ++i) out += sentence(i) + (i % 4 == 3 ? "\n\n" : "\n");
  return out;
}

void BM_ParseMarkdown(benchmark::State& state) {
  std::string doc = markdown_document();
  for (auto _ : state) benchmark::DoNotOptimize(parse_markdown(doc, "bench.md"));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(doc.size()));
}

void BM_ParseHtml(benchmark::State& state) {
  std::string doc = html_document();
  for (auto _ : state) benchmark::DoNotOptimize(parse_html(doc, "bench.html"));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(doc.size()));
}

void BM_ParseText(benchmark::State& state) {
  std::string doc = text_document();
  for (auto _ : state) benchmark::DoNotOptimize(parse_text(doc, "bench.txt"));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(doc.size()));
}

void BM_Chunk(benchmark::State& state) {
  ParsedDocument doc = parse_markdown(markdown_document(), "bench.md");
  size_t chunks = 0;
  for (auto _ : state) chunks = chunk_document(doc).size();
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(doc.text.size()));
  state.counters["chunks"] = double(chunks);
}

// The sample corpus's 4-page PDF: one fork, one poppler load, four pages.
void BM_ParsePdf(benchmark::State& state) {
  // CMake compiles with absolute source paths: the repository is two levels above this file.
  std::string source = __FILE__;
  std::string root = source.substr(0, source.rfind("/bench/"));
  std::string path = root + "/data/sample/products/warehouse-safety-guide.pdf";
  for (auto _ : state) benchmark::DoNotOptimize(parse_pdf(path));
  state.SetItemsProcessed(int64_t(state.iterations()));
}

BENCHMARK(BM_ParseMarkdown)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ParseHtml)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ParseText)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Chunk)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ParsePdf)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
