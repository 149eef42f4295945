#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <limits>
#include <thread>

#include "common/text.h"
#include "tests/ingest/helpers.h"
#include "tests/support/pdf-writer.h"
#include "tests/support/support.h"

namespace rag::ingest {
namespace {

using test::expect_error;
using test::expect_well_formed;

std::string text_page_objects_pdf(const std::string& trailer_extra,
                                  std::vector<std::string> extra_objects = {}) {
  std::string content = "BT /F1 12 Tf 20 100 Td (Hello from a hand made PDF) Tj ET";
  std::vector<std::string> objects = {
      "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
      "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
      "/Resources << /Font << /F1 5 0 R >> >> >>",
      "<< /Length " + std::to_string(content.size()) + " >>\nstream\n" + content + "\nendstream",
      "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"};
  for (std::string& o : extra_objects) objects.push_back(std::move(o));
  return rag::test::pdf_from_objects(objects, trailer_extra);
}

class PdfTest : public testing::Test {
 protected:
  std::string write_sample(const std::string& name, const std::vector<std::string>& pages,
                           const std::string& title) {
    std::string path = dir_ / name;
    rag::test::write_pdf(path, pages, title);
    return path;
  }
  rag::test::TempDir dir_;
};

TEST_F(PdfTest, PagesTitleAndParagraphs) {
  std::string path =
      write_sample("handbook.pdf",
                   {"Welcome to Northwind\n\nThe first page has two paragraphs. This one is long enough that "
                    "the PDF writer "
                    "has to wrap it over more than one line of the page, which extraction must join again.",
                    "Page two talks about expenses.", "Page three is about on-call rotations."},
                   "Employee Handbook");
  ParsedDocument doc = parse_file(path);
  expect_well_formed(doc);
  EXPECT_EQ(doc.type, DocType::kPdf);
  EXPECT_EQ(doc.title, "Employee Handbook");
  EXPECT_EQ(doc.page_count, 3);
  ASSERT_EQ(doc.blocks.size(), 4u);
  EXPECT_EQ(doc.blocks[0].text, "Welcome to Northwind");
  EXPECT_EQ(doc.blocks[0].page, 1);
  EXPECT_EQ(doc.blocks[1].page, 1);
  EXPECT_NE(doc.blocks[1].text.find("more than one line of the page, which extraction"), std::string::npos)
      << doc.blocks[1].text;
  EXPECT_EQ(doc.blocks[2].text, "Page two talks about expenses.");
  EXPECT_EQ(doc.blocks[2].page, 2);
  EXPECT_EQ(doc.blocks[3].text, "Page three is about on-call rotations.");
  EXPECT_EQ(doc.blocks[3].page, 3);
  // Chunks keep the page of their first block.
  std::vector<Chunk> chunks = chunk_document(doc, {.target_bytes = 60, .max_bytes = 200, .overlap_bytes = 0});
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.front().page, 1);
  EXPECT_EQ(chunks.back().page, 3);
}

TEST_F(PdfTest, TitleFallsBackToFirstLineWithoutMetadata) {
  std::string path = write_sample("untitled.pdf", {"Quarterly Report\n\nBody text."}, "");
  EXPECT_EQ(parse_pdf(path).title, "Quarterly Report");
}

TEST_F(PdfTest, EmptyPagesAreSkippedButCounted) {
  std::string path = write_sample("gaps.pdf", {"", "Only page two has text.", ""}, "Gaps");
  ParsedDocument doc = parse_pdf(path);
  EXPECT_EQ(doc.page_count, 3);
  ASSERT_EQ(doc.blocks.size(), 1u);
  EXPECT_EQ(doc.blocks[0].page, 2);
}

TEST_F(PdfTest, NoTextIsCorrupt) {
  std::string path = write_sample("blank.pdf", {"", ""}, "Blank");
  expect_error([&] { parse_pdf(path); }, Errc::kCorrupt, "no text");
}

TEST_F(PdfTest, HandMadePdfParses) {
  // The oracle for pdf_from_objects: without /Encrypt it is an ordinary readable PDF.
  std::string path = dir_ / "plain.pdf";
  rag::test::write_file(path, text_page_objects_pdf(""));
  ParsedDocument doc = parse_pdf(path);
  ASSERT_EQ(doc.blocks.size(), 1u);
  EXPECT_EQ(doc.blocks[0].text, "Hello from a hand made PDF");
  EXPECT_EQ(doc.title, "Hello from a hand made PDF");
}

TEST_F(PdfTest, EncryptedIsUnsupported) {
  // Standard security handler, revision 2: /U does not match the empty user password, so poppler
  // reports the document locked.
  std::string u(64, 'A'), o(64, 'B');
  std::string path = dir_ / "locked.pdf";
  rag::test::write_file(path, text_page_objects_pdf("/Encrypt 6 0 R /ID [<0123456789ABCDEF0123456789ABCDEF> "
                                                    "<0123456789ABCDEF0123456789ABCDEF>]",
                                                    {"<< /Filter /Standard /V 1 /R 2 /Length 40 /O <" + o +
                                                     "> /U <" + u + "> /P -4 >>"}));
  expect_error([&] { parse_file(path); }, Errc::kUnsupported, "encrypted PDF (password required)");
}

struct BrokenPdfCase {
  std::string name;
  std::string bytes;
};

class BrokenPdfTest : public PdfTest, public testing::WithParamInterface<BrokenPdfCase> {};

TEST_P(BrokenPdfTest, IsCorrupt) {
  std::string path = dir_ / "broken.pdf";
  rag::test::write_file(path, GetParam().bytes);
  expect_error([&] { parse_file(path); }, Errc::kCorrupt, "broken.pdf");
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokenPdfTest,
    testing::Values(BrokenPdfCase{"header_only", "%PDF-1.7\n"},
                    BrokenPdfCase{"garbage_after_header",
                                  "%PDF-1.4\n\x01\x02\x03 this is not a PDF body \xff\xfe"},
                    BrokenPdfCase{"pdf_extension_text", "just some words in a file named .pdf"},
                    BrokenPdfCase{"truncated", text_page_objects_pdf("").substr(0, 120)}),
    [](const testing::TestParamInfo<BrokenPdfCase>& info) { return info.param.name; });

TEST_F(PdfTest, TruncatedGeneratedPdfFailsOrKeepsWhatItCan) {
  std::string path =
      write_sample("full.pdf", {"Page one words.", "Page two words.", "Page three words."}, "Full");
  std::string bytes = rag::test::read_file(path);
  for (size_t keep : {bytes.size() / 4, bytes.size() / 2, bytes.size() - 30}) {
    std::string cut_path = dir_ / ("cut-" + std::to_string(keep) + ".pdf");
    rag::test::write_file(cut_path, bytes.substr(0, keep));
    // poppler reconstructs what it can from a damaged file: either a typed error or valid text, never a
    // crash.
    try {
      ParsedDocument doc = parse_file(cut_path);
      expect_well_formed(doc);
      EXPECT_LE(doc.page_count, 3);
    } catch (const Error& e) {
      EXPECT_EQ(errc_name(e.code()), errc_name(Errc::kCorrupt)) << e.what();
    }
  }
}

TEST_F(PdfTest, WallClockLimitKillsTheChild) {
  std::string path = write_sample("slow.pdf", {"Some text."}, "Slow");
  ParseOptions options;
  options.pdf_time_limit_s = 0;
  expect_error([&] { parse_pdf(path, options); }, Errc::kLimit, "PDF extraction exceeded 0 s");
  // No child is left behind: the killed extraction child was the worker's, and the main thread stops its
  // worker after each PDF (pdf-worker-test.cpp checks the workers of other threads).
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
  // Out-of-range limits are clamped rather than overflowing the deadline.
  options.pdf_time_limit_s = std::numeric_limits<double>::infinity();
  EXPECT_EQ(parse_pdf(path, options).title, "Slow");
  options.pdf_time_limit_s = std::numeric_limits<double>::quiet_NaN();
  expect_error([&] { parse_pdf(path, options); }, Errc::kLimit, "exceeded");
}

TEST_F(PdfTest, MemoryLimitFailsWithTypedError) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "RLIMIT_AS is not applied under AddressSanitizer";
#else
  std::string path = write_sample("big.pdf", {std::string(4000, 'x'), "more"}, "Big");
  ParseOptions options;
  options.pdf_memory_limit_bytes = 1;  // nothing beyond what the process already maps
  try {
    parse_pdf(path, options);
    ADD_FAILURE() << "extraction succeeded without memory";
  } catch (const Error& e) {
    EXPECT_TRUE(e.code() == Errc::kLimit || e.code() == Errc::kCorrupt) << e.what();
  }
  // The test process itself is unharmed: a normal extraction still works.
  EXPECT_EQ(parse_pdf(path).page_count, 2);
#endif
}

TEST_F(PdfTest, ConcurrentExtractionsFromThreads) {
  // The ingest job parses files on several threads, each with its own worker; each extraction must see
  // only its own pipe. This also runs under ASan: no thread of this process forks any more.
  std::vector<std::string> paths;
  for (int i = 0; i < 6; ++i)
    paths.push_back(write_sample("t" + std::to_string(i) + ".pdf",
                                 {"Document " + std::to_string(i), "Second page."}, "T" + std::to_string(i)));
  std::vector<std::string> titles(paths.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < paths.size(); ++i)
    threads.emplace_back([&, i] {
      try {
        for (int round = 0; round < 3; ++round) titles[i] = parse_pdf(paths[i]).title;
      } catch (const std::exception& e) {
        titles[i] = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < paths.size(); ++i) EXPECT_EQ(titles[i], "T" + std::to_string(i));
}

TEST_F(PdfTest, SizeLimitBeforeReading) {
  std::string path = write_sample("size.pdf", {"Some text."}, "Size");
  ParseOptions options;
  options.max_file_bytes = 100;
  expect_error([&] { parse_file(path, options); }, Errc::kLimit, "exceeds the limit of 100 bytes");
  expect_error([&] { parse_pdf(path, options); }, Errc::kLimit, "exceeds the limit of 100 bytes");
}

TEST_F(PdfTest, MissingFile) {
  expect_error([&] { parse_pdf(dir_ / "absent.pdf"); }, Errc::kNotFound, "absent.pdf");
}

}  // namespace
}  // namespace rag::ingest
