#include <gtest/gtest.h>

#include <random>

#include "tests/ingest/helpers.h"
#include "tests/support/support.h"

namespace rag::ingest {
namespace {

using test::expect_error;
using test::expect_well_formed;

struct FileCase {
  std::string name;
  std::string file_name;
  std::string content;
  DocType type;
  std::string first_block;
};

class ParseFileTest : public testing::TestWithParam<FileCase> {};

TEST_P(ParseFileTest, DetectsAndParses) {
  const FileCase& c = GetParam();
  rag::test::TempDir dir;
  rag::test::write_file(dir / c.file_name, c.content);
  ParsedDocument doc = parse_file(dir / c.file_name);
  expect_well_formed(doc);
  EXPECT_EQ(doc_type_name(doc.type), doc_type_name(c.type));
  ASSERT_FALSE(doc.blocks.empty());
  EXPECT_EQ(doc.blocks[0].text, c.first_block);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParseFileTest,
    testing::Values(FileCase{"markdown_by_extension", "a.md", "# Title\n\nbody", DocType::kMarkdown, "Title"},
                    FileCase{"html_by_extension", "a.htm", "<h2>Hi</h2>", DocType::kHtml, "Hi"},
                    FileCase{"html_by_content_named_txt", "saved.txt", "<!doctype html><p>from a browser</p>",
                             DocType::kHtml, "from a browser"},
                    FileCase{"html_by_content_named_md", "page.md", "<html><body><p>x</p></body></html>",
                             DocType::kHtml, "x"},
                    FileCase{"text_by_extension", "a.txt", "# not a heading in text", DocType::kText,
                             "# not a heading in text"},
                    FileCase{"text_unknown_extension", "data.csv", "a,b\n1,2", DocType::kText, "a,b 1,2"},
                    FileCase{"text_no_extension", "README", "plain", DocType::kText, "plain"}),
    [](const testing::TestParamInfo<FileCase>& info) { return info.param.name; });

TEST(ParseFile, Failures) {
  rag::test::TempDir dir;
  rag::test::write_file(dir / "empty.txt", "");
  expect_error([&] { parse_file(dir / "empty.txt"); }, Errc::kCorrupt, "empty file");

  std::string junk;
  std::mt19937 rng(7);
  for (int i = 0; i < 5000; ++i) junk += static_cast<char>(rng());
  rag::test::write_file(dir / "junk.txt", junk);
  expect_error([&] { parse_file(dir / "junk.txt"); }, Errc::kCorrupt, "binary content");
  rag::test::write_file(dir / "junk.bin", junk);
  expect_error([&] { parse_file(dir / "junk.bin"); }, Errc::kUnsupported, "unknown or binary");

  rag::test::write_file(dir / "big.md", std::string(2000, 'a'));
  ParseOptions small;
  small.max_file_bytes = 1999;
  expect_error([&] { parse_file(dir / "big.md", small); }, Errc::kLimit,
               "2000 bytes exceeds the limit of 1999");
  small.max_file_bytes = 2000;
  EXPECT_EQ(parse_file(dir / "big.md", small).text.size(), 2000u);

  expect_error([&] { parse_file(dir / "absent.md"); }, Errc::kNotFound, "absent.md");
  expect_error([&] { parse_file(dir.path()); }, Errc::kUnsupported, "not a regular file");
}

// Mutated inputs through every in-memory parser: each either fails with a typed error or yields a
// well-formed document. Runs under ASan/UBSan in CI, which is what makes it worth having.
TEST(ParseFile, MutatedInputsNeverBreakParsers) {
  const std::vector<std::string> seeds = {
      "---\ntitle: T\n---\n# H\n\n- a\n  - b\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n```\ncode\n```\n[l](u) "
      "`c` **b**",
      "<!doctype html><meta charset=latin1><title>T</title><nav>n</nav><h1>H</h1><ul><li>a<ul><li>b</ul></ul>"
      "<table><thead><tr><th>x<th>y</thead><tr><td>1<td>2</table><pre>code</pre><p>&amp;&#x41;&mdash;</p>",
      "para one\nline\n\npara two \xE2\x82\xAC\n"};
  std::mt19937 rng(99);
  const std::string specials = "<>&#;[]()`*_|-=\n \"'!/\x80\xC3\xFF";
  for (int iteration = 0; iteration < 3000; ++iteration) {
    std::string input = seeds[iteration % seeds.size()];
    int edits = 1 + rng() % 8;
    for (int e = 0; e < edits && !input.empty(); ++e) {
      size_t at = rng() % input.size();
      switch (rng() % 4) {
        case 0:
          input[at] = specials[rng() % specials.size()];
          break;
        case 1:
          input.insert(at, 1, specials[rng() % specials.size()]);
          break;
        case 2:
          input.erase(at, 1 + rng() % 4);
          break;
        default:
          input.resize(at);
          break;
      }
    }
    for (auto parse : {parse_text, parse_markdown, parse_html}) {
      try {
        ParsedDocument doc = parse(input, "mutated");
        expect_well_formed(doc);
        std::vector<Chunk> chunks =
            chunk_document(doc, {.target_bytes = 40, .max_bytes = 80, .overlap_bytes = 10});
        EXPECT_FALSE(chunks.empty());
      } catch (const Error& e) {
        EXPECT_TRUE(e.code() == Errc::kCorrupt) << e.what();
      }
    }
    if (HasFailure()) {
      ADD_FAILURE() << "input: " << input;
      break;
    }
  }
}

}  // namespace
}  // namespace rag::ingest
