#include <gtest/gtest.h>

#include "tests/ingest/helpers.h"

namespace rag::ingest {
namespace {

using test::BlockView;
using test::expect_error;
using test::expect_well_formed;
using test::views;

constexpr auto H = BlockKind::kHeading;
constexpr auto P = BlockKind::kParagraph;
constexpr auto L = BlockKind::kListItem;
constexpr auto C = BlockKind::kCode;
constexpr auto R = BlockKind::kTableRow;

struct HtmlCase {
  std::string name;
  std::string html;
  std::vector<BlockView> blocks;
};

class HtmlTest : public testing::TestWithParam<HtmlCase> {};

TEST_P(HtmlTest, ParsesBlocks) {
  const HtmlCase& c = GetParam();
  ParsedDocument doc = parse_html(c.html, "site/page.html");
  expect_well_formed(doc);
  EXPECT_EQ(doc.type, DocType::kHtml);
  EXPECT_EQ(views(doc), c.blocks);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HtmlTest,
    testing::Values(
        HtmlCase{"headings_and_paragraphs",
                 "<h1>Top</h1><p>One <b>bold</b>\n word.</p><h3 class=x>Deep</h3><p>Two",
                 {{H, "Top", 1}, {P, "One bold word."}, {H, "Deep", 3}, {P, "Two"}}},
        HtmlCase{"implied_paragraph_ends", "<p>a<p>b<div>c</div>d", {{P, "a"}, {P, "b"}, {P, "c"}, {P, "d"}}},
        HtmlCase{"lists_nested",
                 "<ul><li>a<li>b<ul><li>b1</li></ul></li><li>c</ul><ol><li>one</ol>",
                 {{L, "a", 1}, {L, "b", 1}, {L, "b1", 2}, {L, "c", 1}, {L, "one", 1}}},
        HtmlCase{"pre_is_code", "<pre>\nline 1\n  line &lt;2&gt;\n</pre>", {{C, "line 1\n  line <2>"}}},
        HtmlCase{"br_is_a_space", "<p>one<br>two<br/>three</p>", {{P, "one two three"}}},
        HtmlCase{"table_th_row",
                 "<table><tr><th>Item</th><th>Limit</th></tr><tr><td>Meals</td><td>$50</td></tr>"
                 "<tr><td><p>Hotel</p> room</td><td>$200</td></tr></table><p>after</p>",
                 {{R, "Item | Limit"}, {R, "Meals | $50"}, {R, "Hotel room | $200"}, {P, "after"}}},
        HtmlCase{"table_implied_ends",
                 "<table><tr><td>a<td>b<tr><td>c<td>d</table>",
                 {{R, "a | b"}, {R, "c | d"}}},
        HtmlCase{
            "dropped_furniture",
            "<nav><a href=/>Home</a></nav><header>Site header</header><script>var x = '<p>no</p>';</script>"
            "<style>p { color: red }</style><noscript>enable js</noscript><template><p>tpl</p></template>"
            "<aside>ad</aside><svg><title>icon</title><text>svg text</text></svg><iframe>frame</iframe>"
            "<form><label>Name</label><input></form><p>kept</p><footer>(c) site</footer>",
            {{P, "kept"}}},
        HtmlCase{"script_end_tag_case_insensitive", "<SCRIPT>a</b></ScRiPt ><p>after</p>", {{P, "after"}}},
        HtmlCase{"comments_and_doctype",
                 "<!DOCTYPE html><!-- <p>hidden</p> --><?xml x?><p>shown</p>",
                 {{P, "shown"}}},
        HtmlCase{"named_entities",
                 "<p>&amp; &lt; &gt; &quot; &apos; &nbsp;x &mdash; &ndash; &hellip; &copy; &reg; &rsquo; "
                 "&lsquo; &ldquo; &rdquo; &eacute; &euro; &bogus; &amp</p>",
                 {{P,
                   "& < > \" ' x \xE2\x80\x94 \xE2\x80\x93 \xE2\x80\xA6 \xC2\xA9 \xC2\xAE \xE2\x80\x99 "
                   "\xE2\x80\x98 \xE2\x80\x9C \xE2\x80\x9D \xC3\xA9 \xE2\x82\xAC &bogus; &"}}},
        HtmlCase{"numeric_entities",
                 "<p>&#65;&#x42;&#X43; &#8212; &#0; &#xD800; &#x110000; &#150; &#99999999999999;</p>",
                 {{P, "ABC \xE2\x80\x94 \xEF\xBF\xBD \xEF\xBF\xBD \xEF\xBF\xBD \xE2\x80\x93 \xEF\xBF\xBD"}}},
        HtmlCase{"quoted_attribute_with_gt", "<p title=\"a > b\">text</p>", {{P, "text"}}},
        HtmlCase{"lone_less_than", "<p>1 < 2 and 3 <4</p>", {{P, "1 < 2 and 3 <4"}}},
        HtmlCase{"unterminated_tag_ends_input", "<p>kept</p><div class=\"x", {{P, "kept"}}},
        HtmlCase{"unterminated_comment_ends_input", "<p>kept</p><!-- forever", {{P, "kept"}}},
        HtmlCase{"stray_end_tags_ignored", "</div></nav><p>a</p></table></li>", {{P, "a"}}}),
    [](const testing::TestParamInfo<HtmlCase>& info) { return info.param.name; });

TEST(Html, TableHeaderRowsFlagged) {
  ParsedDocument doc = parse_html(
      "<table><thead><tr><td>h1</td><td>h2</td></tr></thead><tbody><tr><td>a</td><td>b</td></tr></tbody></"
      "table>"
      "<table><tr><th>k</th><td>v</td></tr></table>",
      "t.html");
  ASSERT_EQ(doc.blocks.size(), 3u);
  EXPECT_TRUE(doc.blocks[0].header_row);
  EXPECT_FALSE(doc.blocks[1].header_row);
  EXPECT_EQ(doc.blocks[0].table, 0);
  EXPECT_EQ(doc.blocks[1].table, 0);
  EXPECT_FALSE(doc.blocks[2].header_row) << "a row with a td is not a header row";
  EXPECT_EQ(doc.blocks[2].table, 1);
}

TEST(Html, NestedTableIsTextOfTheOuterCell) {
  ParsedDocument doc = parse_html(
      "<table><tr><td>outer<table><tr><td>inner</td></tr></table></td><td>x</td></tr></table>", "n.html");
  EXPECT_EQ(views(doc), (std::vector<BlockView>{{R, "outer inner | x"}}));
}

TEST(Html, Title) {
  EXPECT_EQ(parse_html("<title> Expense &amp; Travel </title><h1>Other</h1>", "a.html").title,
            "Expense & Travel");
  EXPECT_EQ(parse_html("<p>x</p><h1>First <i>h1</i></h1><h1>Second</h1>", "a.html").title, "First h1");
  EXPECT_EQ(parse_html("<p>no heading</p>", "dir/on-call.html").title, "on-call");
  // Long titles are cut at a character boundary.
  std::string long_title;
  while (long_title.size() < 2000) long_title += "\xC3\xA9t\xC3\xA9 ";
  ParsedDocument long_doc = parse_html("<title>" + long_title + "</title><p>x</p>", "a.html");
  EXPECT_LE(long_doc.title.size(), 512u);
  EXPECT_GT(long_doc.title.size(), 500u);
  test::expect_well_formed(long_doc);
  // A title inside an SVG is not the page's.
  EXPECT_EQ(parse_html("<svg><title>icon</title></svg><p>x</p>", "dir/p.htm").title, "p");
}

struct CharsetCase {
  std::string name;
  std::string html;
  std::string expected;
};

class HtmlCharsetTest : public testing::TestWithParam<CharsetCase> {};

TEST_P(HtmlCharsetTest, HonoursDeclaredCharset) {
  ParsedDocument doc = parse_html(GetParam().html, "c.html");
  ASSERT_EQ(doc.blocks.size(), 1u);
  EXPECT_EQ(doc.blocks[0].text, GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HtmlCharsetTest,
    testing::Values(
        CharsetCase{"meta_charset_latin1", "<meta charset=\"ISO-8859-1\"><p>caf\xE9</p>", "caf\xC3\xA9"},
        CharsetCase{
            "http_equiv_cp1252",
            "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1252\"><p>\x93q\x94</p>",
            "\xE2\x80\x9Cq\xE2\x80\x9D"},
        CharsetCase{"meta_utf8_repairs_invalid", "<meta charset=utf-8><p>caf\xC3\xA9 \xFF</p>",
                    "caf\xC3\xA9 \xEF\xBF\xBD"},
        CharsetCase{"undeclared_valid_utf8", "<p>\xC3\xA9t\xC3\xA9</p>", "\xC3\xA9t\xC3\xA9"},
        CharsetCase{"undeclared_invalid_utf8_is_cp1252", "<p>\xE9t\xE9</p>", "\xC3\xA9t\xC3\xA9"},
        CharsetCase{"unsupported_charset_read_as_cp1252", "<meta charset=koi8-r><p>\xE9</p>", "\xC3\xA9"},
        CharsetCase{"bom_beats_meta", "\xEF\xBB\xBF<meta charset=latin1><p>\xC3\xA9</p>", "\xC3\xA9"}),
    [](const testing::TestParamInfo<CharsetCase>& info) { return info.param.name; });

TEST(Html, EmptyBinaryAndTextless) {
  expect_error([] { parse_html("", "e.html"); }, Errc::kCorrupt, "empty file");
  expect_error([] { parse_html("<html><script>x</script></html>", "e.html"); }, Errc::kCorrupt, "no text");
  expect_error([] { parse_html(std::string("<p>\0\0\0</p>", 10), "e.html"); }, Errc::kCorrupt, "binary");
}

TEST(Html, DeepNestingIsBounded) {
  std::string html;
  for (int i = 0; i < 100'000; ++i) html += "<div><span>";
  html += "deep text";
  ParsedDocument doc = parse_html(html, "deep.html");
  EXPECT_EQ(views(doc), (std::vector<BlockView>{{P, "deep text"}}));
  std::string lists;
  for (int i = 0; i < 10'000; ++i) lists += "<ul><li>x";
  expect_well_formed(parse_html(lists, "lists.html"));
}

TEST(Html, ManyUnterminatedQuotesStayLinear) {
  std::string html;
  while (html.size() < 300'000) html += "<a href=\"x>t ";
  ParsedDocument doc = parse_html(html, "q.html");
  expect_well_formed(doc);
}

}  // namespace
}  // namespace rag::ingest
