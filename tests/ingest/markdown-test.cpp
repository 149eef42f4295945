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

struct MarkdownCase {
  std::string name;
  std::string markdown;
  std::vector<BlockView> blocks;
};

class MarkdownTest : public testing::TestWithParam<MarkdownCase> {};

TEST_P(MarkdownTest, ParsesBlocks) {
  const MarkdownCase& c = GetParam();
  ParsedDocument doc = parse_markdown(c.markdown, "docs/guide.md");
  expect_well_formed(doc);
  EXPECT_EQ(doc.type, DocType::kMarkdown);
  EXPECT_EQ(views(doc), c.blocks);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MarkdownTest,
    testing::Values(
        MarkdownCase{"atx_headings",
                     "# One\n## Two ##\n###### Six\n####### seven\n#nospace",
                     {{H, "One", 1}, {H, "Two", 2}, {H, "Six", 6}, {P, "####### seven #nospace"}}},
        MarkdownCase{"setext_headings",
                     "Title\n=====\n\nSub title\n---\ntext",
                     {{H, "Title", 1}, {H, "Sub title", 2}, {P, "text"}}},
        MarkdownCase{"paragraphs_and_breaks",
                     "line one\nline two\n\n---\n\nafter break",
                     {{P, "line one line two"}, {P, "after break"}}},
        MarkdownCase{"nested_lists",
                     "- a\n- b\n  - b1\n    - b1x\n  - b2\n- c\n\n1. first\n2) second",
                     {{L, "a", 1},
                      {L, "b", 1},
                      {L, "b1", 2},
                      {L, "b1x", 3},
                      {L, "b2", 2},
                      {L, "c", 1},
                      {L, "first", 1},
                      {L, "second", 1}}},
        MarkdownCase{"list_item_continuation",
                     "* item starts\n  and continues\n* [x] done task",
                     {{L, "item starts and continues", 1}, {L, "done task", 1}}},
        MarkdownCase{"fenced_code",
                     "text\n```cpp\nint main() {\n  return 0;\n}\n```\nafter",
                     {{P, "text"}, {C, "int main() {\n  return 0;\n}"}, {P, "after"}}},
        MarkdownCase{
            "tilde_fence_keeps_markup", "~~~\n# not a heading\n*raw*\n~~~", {{C, "# not a heading\n*raw*"}}},
        MarkdownCase{"unclosed_fence_runs_to_end", "```\ncode\n", {{C, "code"}}},
        MarkdownCase{"indented_code",
                     "para\n\n    ls -la\n      nested\n\nback",
                     {{P, "para"}, {C, "ls -la\n  nested"}, {P, "back"}}},
        MarkdownCase{
            "table",
            "| Item | Limit |\n|:-----|------:|\n| Meals | $50 |\n| Hotel \\| room | $200 |\n\nafter",
            {{R, "Item | Limit"}, {R, "Meals | $50"}, {R, "Hotel | room | $200"}, {P, "after"}}},
        MarkdownCase{
            "table_without_outer_pipes", "a | b\n--- | ---\n1 | **2**", {{R, "a | b"}, {R, "1 | 2"}}},
        MarkdownCase{
            "inline_markup",
            "Some **bold**, _em_, ~~gone~~ and `a*b` with [link text](http://x.y \"t\"), "
            "![alt text](img.png), <https://auto.link>, <span>html</span>, snake_case_name and 2 * 3.",
            {{P,
              "Some bold, em, gone and a*b with link text, alt text, https://auto.link, html, "
              "snake_case_name and 2 * 3."}}},
        MarkdownCase{"escapes_and_entities",
                     "\\*not em\\* &amp; &copy; &#x2014; \\&amp;",
                     {{P, "*not em* & \xC2\xA9 \xE2\x80\x94 &amp;"}}},
        MarkdownCase{"reference_links",
                     "See [the guide][g] now.\n\n[g]: https://example.com/guide",
                     {{P, "See the guide now."}}},
        MarkdownCase{"block_quote", "> quoted\n> text", {{P, "quoted text"}}},
        MarkdownCase{"heading_markup_stripped", "## The `rag` *tool*", {{H, "The rag tool", 2}}}),
    [](const testing::TestParamInfo<MarkdownCase>& info) { return info.param.name; });

TEST(Markdown, TableHeaderRowFlaggedAndTablesNumbered) {
  ParsedDocument doc =
      parse_markdown("| a | b |\n|---|---|\n| 1 | 2 |\n\ntext\n\n| c |\n|---|\n| 3 |\n", "t.md");
  ASSERT_EQ(doc.blocks.size(), 5u);
  EXPECT_TRUE(doc.blocks[0].header_row);
  EXPECT_EQ(doc.blocks[0].table, 0);
  EXPECT_FALSE(doc.blocks[1].header_row);
  EXPECT_EQ(doc.blocks[1].table, 0);
  EXPECT_EQ(doc.blocks[2].table, -1);
  EXPECT_TRUE(doc.blocks[3].header_row);
  EXPECT_EQ(doc.blocks[3].table, 1);
  EXPECT_EQ(doc.blocks[4].table, 1);
}

TEST(Markdown, TitleFromFrontMatterThenHeadingThenFileName) {
  ParsedDocument front =
      parse_markdown("---\nauthor: x\ntitle: \"Travel Policy\"\n---\n# Heading\nbody", "a/b.md");
  EXPECT_EQ(front.title, "Travel Policy");
  EXPECT_EQ(views(front), (std::vector<BlockView>{{H, "Heading", 1}, {P, "body"}}));

  EXPECT_EQ(parse_markdown("intro\n\n## First heading\n", "a/b.md").title, "First heading");
  EXPECT_EQ(parse_markdown("just text", "a/expense-policy.md").title, "expense-policy");
  // An unclosed front matter block is a thematic break followed by text.
  EXPECT_EQ(views(parse_markdown("---\ntitle: x\n", "c.md")), (std::vector<BlockView>{{P, "title: x"}}));
}

TEST(Markdown, EmptyAndBinary) {
  expect_error([] { parse_markdown("", "e.md"); }, Errc::kCorrupt, "empty file");
  expect_error([] { parse_markdown("---\n\n***\n", "e.md"); }, Errc::kCorrupt, "no text");
  expect_error([] { parse_markdown(std::string("# x\0\0", 5), "e.md"); }, Errc::kCorrupt, "binary");
}

TEST(Markdown, PathologicalInlineInputStaysLinear) {
  // Each opener would rescan to the end without memoised searches: 200k of them must finish quickly.
  for (std::string unit : {"[a", "`a", "``a", "![a", "<a", "**a", "[x]a", "[a](", "[a][b"}) {
    std::string text;
    while (text.size() < 200'000) text += unit;
    ParsedDocument doc = parse_markdown(text, "p.md");
    expect_well_formed(doc);
  }
}

}  // namespace
}  // namespace rag::ingest
