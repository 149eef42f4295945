#include <gtest/gtest.h>

#include <random>

#include "common/text.h"
#include "tests/ingest/helpers.h"
#include "tests/support/pdf-writer.h"
#include "tests/support/support.h"

namespace rag::ingest {
namespace {

using test::expect_error;

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t';
}

// A document from blocks, laid out as the parsers do.
ParsedDocument make_doc(std::vector<Block> blocks) {
  ParsedDocument doc;
  doc.type = DocType::kText;
  doc.title = "t";
  for (Block& b : blocks) {
    if (!doc.text.empty()) doc.text += "\n\n";
    b.begin = doc.text.size();
    doc.text += b.text;
    b.end = doc.text.size();
  }
  doc.blocks = std::move(blocks);
  return doc;
}

Block heading(std::string text, int level) {
  return {.kind = BlockKind::kHeading, .text = std::move(text), .level = level};
}
Block para(std::string text, int page = 0) {
  return {.kind = BlockKind::kParagraph, .text = std::move(text), .page = page};
}
Block row(std::string text, int table, bool header = false) {
  return {.kind = BlockKind::kTableRow, .text = std::move(text), .table = table, .header_row = header};
}

std::string words(int count, const std::string& stem = "word") {
  std::string out;
  for (int i = 0; i < count; ++i) out += (i ? " " : "") + stem + std::to_string(i);
  return out;
}

// The slow oracle: every invariant stated at the top of ingest/chunk.cpp, checked from the outside.
void expect_chunk_invariants(const ParsedDocument& doc, const std::vector<Chunk>& chunks,
                             const ChunkOptions& options) {
  std::vector<bool> covered(doc.text.size(), false);
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    SCOPED_TRACE("chunk " + std::to_string(i));
    EXPECT_EQ(c.ordinal, static_cast<int>(i));
    ASSERT_LE(c.begin, c.end);
    ASSERT_LE(c.end, doc.text.size());
    EXPECT_TRUE(utf8_valid(c.text));
    std::string body = doc.text.substr(c.begin, c.end - c.begin);
    EXPECT_FALSE(body.empty());
    bool plain = c.text == body;
    bool table = false;
    if (!plain) {
      // A table chunk: its table's header row, a blank line, then the body, which starts with a row.
      for (const Block& b : doc.blocks)
        if (b.kind == BlockKind::kTableRow && b.header_row && c.text == b.text + "\n\n" + body) table = true;
    }
    EXPECT_TRUE(plain || table) << "text: [" << c.text << "]\nbody: [" << body << "]";
    if (c.text.size() > options.max_bytes) ADD_FAILURE() << "chunk of " << c.text.size() << " bytes";
    // Cuts fall between words (or at a character boundary inside an overlong word).
    if (c.begin > 0 && !is_space(doc.text[c.begin - 1]) && !is_space(doc.text[c.begin])) {
      EXPECT_NE(static_cast<unsigned char>(doc.text[c.begin]) & 0xC0, 0x80) << "begin inside a character";
    }
    if (c.end < doc.text.size() && !is_space(doc.text[c.end])) {
      EXPECT_NE(static_cast<unsigned char>(doc.text[c.end]) & 0xC0, 0x80) << "end inside a character";
    }
    EXPECT_FALSE(is_space(body.front()));
    EXPECT_FALSE(is_space(body.back()));
    if (i > 0) {
      EXPECT_GE(c.begin, chunks[i - 1].begin);
    }
    for (size_t k = c.begin; k < c.end; ++k) covered[k] = true;
  }
  for (size_t k = 0; k < doc.text.size(); ++k)
    if (!is_space(doc.text[k]) && !covered[k]) {
      ADD_FAILURE() << "byte " << k << " is in no chunk";
      break;
    }
}

TEST(Chunk, HeadingsStartChunksAndBuildPaths) {
  ParsedDocument doc =
      make_doc({heading("Handbook", 1), para("Intro text."), heading("Travel", 2), para("Book early."),
                heading("Hotels", 3), para("Max 200."), heading("Expenses", 2), para("Keep receipts."),
                heading("Appendix", 1), heading("Forms", 2), para("Form A.")});
  ChunkOptions options;
  std::vector<Chunk> chunks = chunk_document(doc, options);
  expect_chunk_invariants(doc, chunks, options);
  struct Expected {
    std::string text, path;
  };
  std::vector<Expected> expected = {
      {"Handbook\n\nIntro text.", "Handbook"},
      {"Travel\n\nBook early.", "Handbook > Travel"},
      {"Hotels\n\nMax 200.", "Handbook > Travel > Hotels"},
      {"Expenses\n\nKeep receipts.", "Handbook > Expenses"},
      // Consecutive headings share a chunk, so the parent's words are searchable.
      {"Appendix\n\nForms\n\nForm A.", "Appendix > Forms"}};
  ASSERT_EQ(chunks.size(), expected.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].text, expected[i].text);
    EXPECT_EQ(chunks[i].heading_path, expected[i].path);
  }
}

TEST(Chunk, PacksToTargetWithWholeWordOverlap) {
  ParsedDocument doc = make_doc({para(words(40)), para(words(40, "more")), para(words(40, "last"))});
  ChunkOptions options{.target_bytes = 300, .max_bytes = 600, .overlap_bytes = 40};
  std::vector<Chunk> chunks = chunk_document(doc, options);
  expect_chunk_invariants(doc, chunks, options);
  ASSERT_GE(chunks.size(), 2u);
  for (size_t i = 1; i < chunks.size(); ++i) {
    // Each chunk carries at most overlap_bytes of the previous one, starting at a word.
    ASSERT_LT(chunks[i].begin, chunks[i - 1].end);
    EXPECT_LE(chunks[i - 1].end - chunks[i].begin, options.overlap_bytes);
    EXPECT_TRUE(is_space(doc.text[chunks[i].begin - 1]));
  }
  ChunkOptions no_overlap = options;
  no_overlap.overlap_bytes = 0;
  std::vector<Chunk> plain = chunk_document(doc, no_overlap);
  expect_chunk_invariants(doc, plain, no_overlap);
  for (size_t i = 1; i < plain.size(); ++i) EXPECT_GE(plain[i].begin, plain[i - 1].end);
}

TEST(Chunk, NoOverlapAcrossHeadings) {
  ParsedDocument doc = make_doc({heading("A", 1), para(words(30)), heading("B", 1), para(words(30, "b"))});
  ChunkOptions options{.target_bytes = 1000, .max_bytes = 2000, .overlap_bytes = 100};
  std::vector<Chunk> chunks = chunk_document(doc, options);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[1].begin, doc.blocks[2].begin);
  EXPECT_TRUE(chunks[1].text.starts_with("B\n\n"));
}

TEST(Chunk, TableHeaderRepeatedAndRowsWhole) {
  std::vector<Block> blocks = {heading("Limits", 2), para("The table below lists limits.")};
  blocks.push_back(row("Category | Daily limit | Approver", 0, true));
  for (int i = 0; i < 40; ++i)
    blocks.push_back(
        row("Category " + std::to_string(i) + " | $" + std::to_string(10 * i) + " | manager", 0));
  blocks.push_back(para("After the table."));
  ParsedDocument doc = make_doc(blocks);
  ChunkOptions options{.target_bytes = 200, .max_bytes = 400, .overlap_bytes = 50};
  std::vector<Chunk> chunks = chunk_document(doc, options);
  expect_chunk_invariants(doc, chunks, options);
  ASSERT_GT(chunks.size(), 3u);
  size_t rows_seen = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    bool has_row =
        c.text.find("Category ") != std::string::npos && c.text.find(" | manager") != std::string::npos;
    if (i > 0 && has_row) {
      EXPECT_TRUE(c.text.starts_with("Category | Daily limit | Approver\n\n")) << c.text;
    }
    for (int r = 0; r < 40; ++r) {
      std::string row_text = "Category " + std::to_string(r) + " | $" + std::to_string(10 * r) + " | manager";
      size_t at = c.text.find(row_text);
      if (at == std::string::npos) continue;
      ++rows_seen;
      // A row is whole: it ends at the end of the chunk or before a block separator.
      size_t after = at + row_text.size();
      EXPECT_TRUE(after == c.text.size() || c.text.compare(after, 2, "\n\n") == 0);
    }
    EXPECT_EQ(c.heading_path, "Limits");
  }
  EXPECT_EQ(rows_seen, 40u) << "each row in exactly one chunk (rows never overlap)";
}

TEST(Chunk, OversizedBlockSplitsAtSentencesThenWords) {
  std::string sentences;
  for (int i = 0; i < 60; ++i)
    sentences += "This is sentence number " + std::to_string(i) + " of a long paragraph. ";
  ParsedDocument doc = make_doc({para(collapse_whitespace(sentences)), para(words(300))});
  ChunkOptions options{.target_bytes = 200, .max_bytes = 300, .overlap_bytes = 0};
  std::vector<Chunk> chunks = chunk_document(doc, options);
  expect_chunk_invariants(doc, chunks, options);
  for (const Chunk& c : chunks) {
    if (c.end <= doc.blocks[0].end) {
      EXPECT_EQ(c.text.back(), '.') << "split at a sentence end: " << c.text;
    }
  }
  // The word list has no sentence ends: pieces end at word boundaries (checked by the invariants).
  EXPECT_GT(chunks.size(), 10u);
}

TEST(Chunk, OverlongWordHardSplitAtCharacterBoundary) {
  std::string word;
  while (word.size() < 1000) word += "\xC3\xA9\xE2\x82\xAC";  // é€, 2- and 3-byte characters
  ParsedDocument doc = make_doc({para("before " + word + " after")});
  ChunkOptions options{.target_bytes = 50, .max_bytes = 64, .overlap_bytes = 10};
  std::vector<Chunk> chunks = chunk_document(doc, options);
  expect_chunk_invariants(doc, chunks, options);
  EXPECT_GT(chunks.size(), 15u);
}

TEST(Chunk, PageOfFirstBlock) {
  ParsedDocument doc =
      make_doc({para(words(20, "one"), 1), para(words(20, "two"), 2), para(words(20, "three"), 3)});
  ChunkOptions options{.target_bytes = 200, .max_bytes = 400, .overlap_bytes = 0};
  std::vector<Chunk> chunks = chunk_document(doc, options);
  expect_chunk_invariants(doc, chunks, options);
  ASSERT_EQ(chunks.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(chunks[i].page, i + 1);
}

// The page oracle of invariant 6: every block whose text the chunk's byte range covers is on the chunk's page.
void expect_one_page_per_chunk(const ParsedDocument& doc, const std::vector<Chunk>& chunks) {
  for (const Chunk& c : chunks) {
    int blocks_covered = 0;
    for (const Block& b : doc.blocks) {
      if (b.end <= c.begin || b.begin >= c.end) continue;
      ++blocks_covered;
      EXPECT_EQ(b.page, c.page) << "chunk " << c.ordinal << " [" << c.text << "] covers block [" << b.text
                                << "] of page " << b.page;
    }
    EXPECT_GT(blocks_covered, 0) << "chunk " << c.ordinal;
  }
}

TEST(Chunk, APageChangeStartsAChunkWithoutOverlap) {
  // Small paragraphs that would share one chunk on one page; overlap on.
  Block intro = heading("Intro", 1), next = heading("Next", 2);
  intro.page = 1;
  next.page = 2;
  ParsedDocument doc = make_doc({intro, para("alpha beta gamma", 1), para("delta epsilon", 2), para("zeta eta", 2),
                                 next, para("theta iota kappa", 3)});
  ChunkOptions options{.target_bytes = 1000, .max_bytes = 2000, .overlap_bytes = 150};
  std::vector<Chunk> chunks = chunk_document(doc, options);
  expect_chunk_invariants(doc, chunks, options);
  expect_one_page_per_chunk(doc, chunks);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[0].text, "Intro\n\nalpha beta gamma");
  EXPECT_EQ(chunks[0].page, 1);
  EXPECT_EQ(chunks[1].text, "delta epsilon\n\nzeta eta");  // nothing carried over from page 1
  EXPECT_EQ(chunks[1].page, 2);
  EXPECT_EQ(chunks[1].heading_path, "Intro");
  // A heading at the foot of page 2 stays there; the text under it on page 3 carries it in heading_path.
  EXPECT_EQ(chunks[2].text, "Next");
  EXPECT_EQ(chunks[2].page, 2);
  EXPECT_EQ(chunks[3].text, "theta iota kappa");
  EXPECT_EQ(chunks[3].page, 3);
  EXPECT_EQ(chunks[3].heading_path, "Intro > Next");
}

// Random multi-page documents (every block on a page, as a PDF gives them): the invariants and the page oracle.
TEST(Chunk, RandomMultiPageDocumentsCiteOnePagePerChunk) {
  std::mt19937 rng(777);
  for (int iteration = 0; iteration < 200; ++iteration) {
    std::vector<Block> blocks;
    int page = 1;
    int block_count = 1 + rng() % 30;
    for (int b = 0; b < block_count; ++b) {
      if (rng() % 3 == 0) page += 1 + rng() % 2;  // sometimes a page without text
      std::string text = words(1 + rng() % (rng() % 4 == 0 ? 120 : 20), "w" + std::to_string(b) + "x");
      Block block = rng() % 5 == 0 ? heading(collapse_whitespace(text.substr(0, 30)), 1 + rng() % 3) : para(text);
      block.page = page;
      blocks.push_back(std::move(block));
    }
    ParsedDocument doc = make_doc(blocks);
    ChunkOptions options;
    options.max_bytes = 16 + rng() % 600;
    options.target_bytes = 1 + rng() % options.max_bytes;
    options.overlap_bytes = rng() % 200;
    SCOPED_TRACE("iteration " + std::to_string(iteration));
    std::vector<Chunk> chunks = chunk_document(doc, options);
    expect_chunk_invariants(doc, chunks, options);
    expect_one_page_per_chunk(doc, chunks);
    if (HasFailure()) break;
  }
}

// The same through the PDF parser: a three-page PDF whose pages each hold less than one chunk's worth.
TEST(Chunk, PdfChunksCiteThePageTheirTextIsOn) {
  rag::test::TempDir dir;
  std::string path = dir / "pages.pdf";
  rag::test::write_pdf(path,
                  {"Page one talks about apples. " + words(30, "apple"),
                   "Page two talks about bananas. " + words(30, "banana") + "\n\nA second paragraph on page two.",
                   "Page three talks about cherries. " + words(30, "cherry")},
                  "Fruit");
  ParsedDocument doc = parse_pdf(path);
  ASSERT_EQ(doc.page_count, 3);
  ChunkOptions options;  // defaults: all three pages would fit one 1000-byte chunk
  std::vector<Chunk> chunks = chunk_document(doc, options);
  expect_chunk_invariants(doc, chunks, options);
  expect_one_page_per_chunk(doc, chunks);
  ASSERT_EQ(chunks.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(chunks[i].page, i + 1);
  EXPECT_NE(chunks[1].text.find("banana"), std::string::npos);
  EXPECT_EQ(chunks[1].text.find("apple"), std::string::npos);
}

TEST(Chunk, InvalidOptions) {
  ParsedDocument doc = make_doc({para("x")});
  expect_error([&] { chunk_document(doc, {.target_bytes = 1, .max_bytes = 2, .overlap_bytes = 0}); },
               Errc::kInvalidArgument, "max_bytes");
  EXPECT_TRUE(chunk_document(make_doc({})).empty());
}

// Random documents: mixed blocks and scripts, random sizes and options; the oracle checks every chunk.
TEST(Chunk, RandomDocumentsKeepInvariants) {
  const std::vector<std::string> alphabet = {
      "a", "b", "z", "Q", "1", ".", ",", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xE4\xB8\xAD",
      "-", "!", "?"};
  std::mt19937 rng(12345);
  for (int iteration = 0; iteration < 300; ++iteration) {
    std::vector<Block> blocks;
    int table = -1;
    int block_count = 1 + rng() % 25;
    for (int b = 0; b < block_count; ++b) {
      std::string text;
      int word_count = 1 + rng() % (rng() % 4 == 0 ? 200 : 15);
      for (int w = 0; w < word_count; ++w) {
        if (w) text += (rng() % 10 == 0) ? ". " : " ";
        int length = 1 + rng() % (rng() % 20 == 0 ? 120 : 8);
        for (int k = 0; k < length; ++k) text += alphabet[rng() % alphabet.size()];
      }
      switch (rng() % 6) {
        case 0:
          blocks.push_back(heading(text.substr(0, 40 + rng() % 40), 1 + rng() % 6));
          break;
        case 1: {
          bool start = table < 0 || blocks.empty() || blocks.back().kind != BlockKind::kTableRow;
          if (start) ++table;
          blocks.push_back(row(text.substr(0, 20 + rng() % 200), std::max(table, 0), start && rng() % 2));
          break;
        }
        default:
          blocks.push_back(para(text, 1 + b / 5));
      }
    }
    // The text of a heading built from substr may end mid-character; repair it as a parser would.
    for (Block& b : blocks) {
      b.text = collapse_whitespace(utf8_repair(b.text));
      if (b.text.empty()) b.text = "x";
    }
    ParsedDocument doc = make_doc(blocks);
    ChunkOptions options;
    options.max_bytes = 16 + rng() % 600;
    options.target_bytes = 1 + rng() % options.max_bytes;
    options.overlap_bytes = rng() % 200;
    SCOPED_TRACE("iteration " + std::to_string(iteration));
    std::vector<Chunk> chunks = chunk_document(doc, options);
    // Table header rows longer than half the cap may push a chunk past it: allow exactly that.
    size_t longest_header = 0;
    for (const Block& b : doc.blocks)
      if (b.header_row) longest_header = std::max(longest_header, b.text.size());
    ChunkOptions checked = options;
    if (longest_header + 2 > options.max_bytes / 2) checked.max_bytes += longest_header + 2;
    expect_chunk_invariants(doc, chunks, checked);
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace rag::ingest
