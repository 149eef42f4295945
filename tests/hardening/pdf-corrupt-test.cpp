// Hand-made hostile PDFs, enumerated: each case is built by code and must end as a typed error from
// parse_file() (extraction runs in a child process with hard limits, so a crash or a bomb fails that one
// document) and, ingested, as a per-document failure with its reason in the catalog while the good document
// beside it is indexed. poppler repairs some damage (a broken xref is rebuilt by scanning the objects): those
// cases may instead give back the text that is really there, and say so in the table.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <zlib.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/error.h"
#include "index/index.h"
#include "ingest/ingest.h"
#include "tests/support/pdf-writer.h"
#include "tests/support/support.h"

namespace rag::ingest {
namespace {

const std::string kFont = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>";

std::string content_stream(const std::string& content, const std::string& dict_extra = "") {
  return "<< /Length " + std::to_string(content.size()) + dict_extra + " >>\nstream\n" + content + "\nendstream";
}

// Catalog, pages, one page, its content (object 4), the font (object 5).
std::string one_page(const std::string& content_object, const std::string& trailer_extra = "",
                     std::vector<std::string> extra = {}) {
  std::vector<std::string> objects = {
      "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
      "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
      content_object, kFont};
  for (auto& o : extra) objects.push_back(std::move(o));
  return rag::test::pdf_from_objects(objects, trailer_extra);
}

const char kGarbage[] = "\x01\x02\xff\xfe garbage \x00\x7f";  // with a NUL inside

const std::string kText = "BT /F1 12 Tf 20 100 Td (Readable words on a hand made page) Tj ET";

// zlib stream of `segments` MiB of zeros built without compressing them all: one MiB deflated and ended with
// a full flush is a self-contained, byte-aligned piece that can be repeated; an empty final block ends it.
// The Adler-32 trailer is left zero (decoders that check it find out only at the very end).
std::string flate_bomb(int segments) {
  std::string mib(1 << 20, '\0');
  auto deflate_piece = [&](z_stream& z, const std::string& in, int flush) {
    std::string out(compressBound(in.size()) + 64, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    deflate(&z, flush);
    out.resize(out.size() - z.avail_out);
    return out;
  };
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, 15, 9, Z_DEFAULT_STRATEGY);
  std::string head = deflate_piece(z, "", Z_NO_FLUSH);  // the 2-byte zlib header comes with the first output
  std::string piece = deflate_piece(z, mib, Z_FULL_FLUSH);
  std::string tail = deflate_piece(z, "", Z_FINISH);
  deflateEnd(&z);
  std::string out = head;
  out.reserve(head.size() + piece.size() * segments + tail.size());
  for (int i = 0; i < segments; ++i) out += piece;
  // Z_FINISH wrote the final empty block and the Adler-32 of one MiB; keep the block, zero the checksum.
  out += tail.substr(0, tail.size() - 4) + std::string(4, '\0');
  return out;
}

enum class Outcome {
  kFails,       // must be the typed error
  kFailsOrText  // poppler may repair it: the typed error, or the text that is really there
};

struct Case {
  const char* name;
  std::string bytes;
  Errc code;
  Outcome outcome = Outcome::kFails;
};

std::vector<Case> cases() {
  const std::string good = one_page(content_stream(kText));
  std::string truncated_xref = good.substr(0, good.find("xref\n") + 30);  // cut inside the table, no trailer
  std::string xref_garbage = good;
  xref_garbage.replace(good.find("xref\n") + 5, 20, "9 Z\n9999999999 zz n ");
  std::string bad_startxref = good.substr(0, good.rfind("startxref")) + "startxref\n999999999\n%%EOF\n";
  const std::string u(64, 'A'), o(64, 'B');
  const std::string id = "/ID [<0123456789ABCDEF0123456789ABCDEF> <0123456789ABCDEF0123456789ABCDEF>]";
  return {
      {"truncated xref table", truncated_xref, Errc::kCorrupt, Outcome::kFailsOrText},
      {"garbage in the xref table", xref_garbage, Errc::kCorrupt, Outcome::kFailsOrText},
      {"startxref past the end", bad_startxref, Errc::kCorrupt, Outcome::kFailsOrText},
      {"page tree whose Kids is itself",
       rag::test::pdf_from_objects({"<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [2 0 R] /Count 1 >>"}), Errc::kCorrupt},
      {"two page tree nodes in a cycle",
       rag::test::pdf_from_objects({"<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 2 >>",
               "<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>"}),
       Errc::kCorrupt},
      {"page tree with a huge Count",
       rag::test::pdf_from_objects({"<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [2 0 R 2 0 R 2 0 R] /Count 2147483647 >>"}),
       Errc::kCorrupt},
      {"stream Length 2^32 - 1", one_page("<< /Length 4294967295 >>\nstream\n" + kText + "\nendstream"),
       Errc::kCorrupt, Outcome::kFailsOrText},
      {"stream Length 10^20", one_page("<< /Length 100000000000000000000 >>\nstream\n" + kText + "\nendstream"),
       Errc::kCorrupt, Outcome::kFailsOrText},
      {"stream Length negative", one_page("<< /Length -5 >>\nstream\n" + kText + "\nendstream"), Errc::kCorrupt,
       Outcome::kFailsOrText},
      {"encrypted, RC4 40-bit, unknown user password",
       one_page(content_stream(kText), "/Encrypt 6 0 R " + id,
                {"<< /Filter /Standard /V 1 /R 2 /Length 40 /O <" + o + "> /U <" + u + "> /P -4 >>"}),
       Errc::kUnsupported},
      {"encrypted, RC4 128-bit, unknown user password",
       one_page(content_stream(kText), "/Encrypt 6 0 R " + id,
                {"<< /Filter /Standard /V 2 /R 3 /Length 128 /O <" + o + "> /U <" + u + "> /P -4 >>"}),
       Errc::kUnsupported},
      {"encrypted with an unknown security handler",
       one_page(content_stream(kText), "/Encrypt 6 0 R " + id, {"<< /Filter /NoSuchHandler /V 1 /R 2 >>"}),
       Errc::kUnsupported},
      {"garbage after %PDF", "%PDF-1.7\n" + std::string(kGarbage, sizeof kGarbage - 1) + std::string(4000, '\xa5'),
       Errc::kCorrupt},
      {"nothing after %PDF", "%PDF-1.4\n", Errc::kCorrupt},
      {"%PDF then a text file", "%PDF-1.4\nThese are plain words, not objects.\n", Errc::kCorrupt},
  };
}

class HardeningPdf : public testing::Test {
 protected:
  test::TempDir dir_;
};

void expect_typed(const Case& c, const std::string& path, const ParseOptions& options = {}) {
  try {
    ParsedDocument doc = parse_file(path, options);
    if (c.outcome == Outcome::kFails) {
      ADD_FAILURE() << "parsed without error: " << doc.text.substr(0, 200);
    } else {
      EXPECT_NE(doc.text.find("Readable words"), std::string::npos) << "repaired into other text: " << doc.text;
    }
  } catch (const Error& e) {
    EXPECT_EQ(errc_name(e.code()), errc_name(c.code)) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "the message names the file: " << e.what();
  }
}

TEST_F(HardeningPdf, BaseDocumentParses) {
  test::write_file(dir_ / "good.pdf", one_page(content_stream(kText)));
  EXPECT_NE(parse_file(dir_ / "good.pdf").text.find("Readable words"), std::string::npos);
}

TEST_F(HardeningPdf, EveryCaseIsATypedErrorFromParse) {
  int i = 0;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const std::string path = dir_ / ("case-" + std::to_string(i++) + ".pdf");
    test::write_file(path, c.bytes);
    expect_typed(c, path);
  }
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1) << "an extraction child was left unreaped";
}

// 2 GiB of zeros in a 2 MiB content stream: the child runs out of its wall clock (or memory) and the parent
// reports a limit; nothing is inflated in the test process.
TEST_F(HardeningPdf, FlateBombIsStoppedByTheChildsLimits) {
  const std::string bomb = flate_bomb(2048);
  ASSERT_LT(bomb.size(), 4u << 20);
  const std::string path = dir_ / "bomb.pdf";
  test::write_file(path, one_page(content_stream(bomb, " /Filter /FlateDecode")));
  ParseOptions options;
  options.pdf_time_limit_s = 3;
  options.pdf_memory_limit_bytes = 256ll << 20;
  try {
    ParsedDocument doc = parse_file(path, options);
    ADD_FAILURE() << "a page of zeros gave text: " << doc.text.size() << " bytes";
  } catch (const Error& e) {
    EXPECT_TRUE(e.code() == Errc::kLimit || e.code() == Errc::kCorrupt) << errc_name(e.code()) << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

// Ingested beside a good document: each hostile file is one failed document with a one-line reason in the
// catalog, the good one is indexed, and the ingest itself succeeds.
TEST_F(HardeningPdf, IngestRecordsEachFailureWithItsReason) {
  const std::string docs = dir_ / "docs";
  test::write_file(docs + "/good.pdf", one_page(content_stream(kText)));
  const std::vector<Case> all = cases();
  for (size_t i = 0; i < all.size(); ++i) test::write_file(docs + "/case-" + std::to_string(i) + ".pdf", all[i].bytes);
  index::IngestOptions options;
  options.roots = {docs};
  options.threads = 1;
  const index::IngestSummary summary = index::ingest(dir_ / "data", options);
  index::Catalog catalog(index::catalog_path(dir_ / "data"), index::Catalog::Mode::kRead);
  int failed = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(all[i].name);
    auto doc = catalog.document_by_path(docs + "/case-" + std::to_string(i) + ".pdf");
    ASSERT_TRUE(doc.has_value());
    if (doc->status == "error") {
      ++failed;
      EXPECT_FALSE(doc->error.empty());
      EXPECT_EQ(doc->error.find('\n'), std::string::npos) << doc->error;
      EXPECT_EQ(doc->chunk_count, 0);
    } else {
      EXPECT_EQ(all[i].outcome, Outcome::kFailsOrText) << "indexed: " << doc->title;
    }
  }
  EXPECT_EQ(summary.failed, failed);
  auto good = catalog.document_by_path(docs + "/good.pdf");
  ASSERT_TRUE(good.has_value());
  EXPECT_EQ(good->status, "ok");
  EXPECT_GE(good->chunk_count, 1);
}

}  // namespace
}  // namespace rag::ingest
