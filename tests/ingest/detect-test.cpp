#include <gtest/gtest.h>

#include "ingest/ingest.h"

namespace rag::ingest {
namespace {

struct DetectCase {
  std::string name;
  std::string head;
  std::string path;
  DocType expected;
};

class DetectTest : public testing::TestWithParam<DetectCase> {};

TEST_P(DetectTest, DetectsType) {
  const DetectCase& c = GetParam();
  EXPECT_EQ(doc_type_name(detect_type(c.head, c.path)), doc_type_name(c.expected)) << c.name;
}

const std::string kBinary("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);

INSTANTIATE_TEST_SUITE_P(
    Cases, DetectTest,
    testing::Values(
        DetectCase{"pdf_magic", "%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj", "report.bin", DocType::kPdf},
        DetectCase{"pdf_magic_no_extension", "%PDF-1.4\n", "report", DocType::kPdf},
        DetectCase{"pdf_magic_after_junk", "garbage\n%PDF-1.4\n", "report.txt", DocType::kPdf},
        DetectCase{"pdf_extension_without_magic", "not really", "broken.pdf", DocType::kPdf},
        DetectCase{"doctype_beats_txt", "<!DOCTYPE html><html><body>x", "page.txt", DocType::kHtml},
        DetectCase{"html_tag_beats_md", "\n  <html lang=en>", "notes.md", DocType::kHtml},
        DetectCase{"head_tag", "<head><title>x</title></head>", "x", DocType::kHtml},
        DetectCase{"body_tag_with_bom", "\xEF\xBB\xBF<body>hi</body>", "x.txt", DocType::kHtml},
        DetectCase{"comment_then_html", "<!-- generated -->\n<html>", "x.dat", DocType::kHtml},
        DetectCase{"htmlish_word_is_not_html", "<htmlfoo>", "x.txt", DocType::kText},
        DetectCase{"markdown_extension", "# Title\n\ntext", "README.md", DocType::kMarkdown},
        DetectCase{"markdown_long_extension", "text", "notes.MARKDOWN", DocType::kMarkdown},
        DetectCase{"html_extension", "<p>fragment</p>", "frag.htm", DocType::kHtml},
        DetectCase{"text_extension", "plain words", "a.txt", DocType::kText},
        DetectCase{"unknown_extension_utf8", "name,age\nann,4\n", "people.csv", DocType::kText},
        DetectCase{"no_extension_text", "just text", "LICENSE", DocType::kText},
        DetectCase{"cp1252_txt", "caf\xE9 cr\xE8me", "menu.txt", DocType::kText},
        DetectCase{"cp1252_unknown_extension", "caf\xE9 \xE8", "blob.dat", DocType::kUnknown},
        DetectCase{"nul_bytes", std::string("ab\0cd", 5), "a.txt", DocType::kUnknown},
        DetectCase{"png", kBinary, "image.png", DocType::kUnknown},
        DetectCase{"control_bytes", std::string(40, '\x01') + "text", "a.md", DocType::kUnknown},
        DetectCase{"utf16le_html", std::string("\xFF\xFE<\0h\0t\0m\0l\0>\0", 14), "p.txt", DocType::kHtml},
        DetectCase{"utf16be_text", std::string("\xFE\xFF\0h\0i", 6), "p.txt", DocType::kText},
        DetectCase{"utf8_cut_mid_character", "caf\xC3", "x.log", DocType::kText}),
    [](const testing::TestParamInfo<DetectCase>& info) { return info.param.name; });

TEST(DocTypeName, NamesEveryType) {
  EXPECT_EQ(doc_type_name(DocType::kText), "text");
  EXPECT_EQ(doc_type_name(DocType::kMarkdown), "markdown");
  EXPECT_EQ(doc_type_name(DocType::kHtml), "html");
  EXPECT_EQ(doc_type_name(DocType::kPdf), "pdf");
  EXPECT_EQ(doc_type_name(DocType::kUnknown), "unknown");
}

}  // namespace
}  // namespace rag::ingest
