#include "common/text.h"

#include <gtest/gtest.h>

#include "tests/ingest/helpers.h"

namespace rag::ingest {
namespace {

using test::BlockView;
using test::expect_error;
using test::expect_well_formed;
using test::views;

constexpr auto P = BlockKind::kParagraph;

struct TextCase {
  std::string name;
  std::string bytes;
  std::vector<std::string> paragraphs;
};

class TextParseTest : public testing::TestWithParam<TextCase> {};

TEST_P(TextParseTest, SplitsParagraphsAndDecodes) {
  const TextCase& c = GetParam();
  ParsedDocument doc = parse_text(c.bytes, "dir/notes.txt");
  expect_well_formed(doc);
  std::vector<BlockView> expected;
  for (const std::string& p : c.paragraphs) expected.push_back({P, p});
  EXPECT_EQ(views(doc), expected);
  EXPECT_EQ(doc.type, DocType::kText);
  EXPECT_EQ(doc.title, "notes");
  EXPECT_EQ(doc.page_count, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TextParseTest,
    testing::Values(
        TextCase{"one_line", "hello world", {"hello world"}},
        TextCase{"paragraphs",
                 "first line\nsecond   line\n\n\n  \nnext\tpara\n",
                 {"first line second line", "next para"}},
        TextCase{"crlf", "a\r\nb\r\n\r\nc", {"a b", "c"}},
        TextCase{"utf8_bom",
                 "\xEF\xBB\xBF"
                 "caf\xC3\xA9",
                 {"caf\xC3\xA9"}},
        TextCase{"utf16le_bom", std::string("\xFF\xFEh\0\xE9\0\n\0\n\0x\0", 12), {"h\xC3\xA9", "x"}},
        TextCase{
            "utf16be_bom_surrogate_pair", std::string("\xFE\xFF\xD8\x3D\xDE\x00", 6), {"\xF0\x9F\x98\x80"}},
        TextCase{"utf16le_lone_surrogate", std::string("\xFF\xFE\x00\xD8h\0", 6), {"\xEF\xBF\xBDh"}},
        TextCase{"cp1252",
                 "caf\xE9 \x93quoted\x94 \x80",
                 {"caf\xC3\xA9 \xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x82\xAC"}},
        TextCase{"form_feed_splits_lines", "page one\fpage two", {"page one page two"}},
        TextCase{"stray_control_dropped",
                 "a long enough line of text with one \x1b"
                 " escape",
                 {"a long enough line of text with one escape"}}),
    [](const testing::TestParamInfo<TextCase>& info) { return info.param.name; });

TEST(TextParse, BinaryJunkIsCorrupt) {
  std::string junk;
  for (int i = 0; i < 512; ++i) junk += static_cast<char>((i * 37 + 11) % 256);
  expect_error([&] { parse_text(junk, "junk.txt"); }, Errc::kCorrupt, "binary content");
  expect_error([&] { parse_text(std::string("text\0more", 9), "nul.txt"); }, Errc::kCorrupt,
               "binary content");
}

TEST(TextParse, EmptyAndBlankInputs) {
  expect_error([] { parse_text("", "empty.txt"); }, Errc::kCorrupt, "empty file");
  expect_error([] { parse_text(" \n\n\t\n", "blank.txt"); }, Errc::kCorrupt, "no text");
  expect_error([] { parse_text("\xEF\xBB\xBF", "bom-only.txt"); }, Errc::kCorrupt, "no text");
}

TEST(TextParse, InvalidUtf8NeverPassesThrough) {
  // Mostly valid UTF-8 with one stray byte is read as windows-1252, which is valid once converted.
  ParsedDocument doc = parse_text("na\xC3\xAFve \xFF end", "x.txt");
  EXPECT_TRUE(utf8_valid(doc.text));
  expect_well_formed(doc);
}

}  // namespace
}  // namespace rag::ingest
