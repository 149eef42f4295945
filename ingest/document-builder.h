// Private to ingest/: assembles a ParsedDocument from blocks in reading order, so every parser produces
// the same layout (block texts joined by "\n\n", each block's byte range into that text) and applies the
// same title fallback and "no text" rule.
#pragma once

#include <string>
#include <string_view>

#include "ingest/ingest.h"

namespace rag::ingest {

class DocumentBuilder {
 public:
  explicit DocumentBuilder(DocType type) { doc_.type = type; }

  // Appends a block. `text` is repaired to valid UTF-8; white space is collapsed except for kCode, whose
  // trailing blank lines are trimmed. A block that ends up empty is dropped. Returns whether it was kept.
  bool add(BlockKind kind, std::string_view text, int level = 0, int page = 0, int table = -1,
           bool header_row = false);

  // Starts a new table and returns its index for the rows that follow.
  int next_table() { return table_count_++; }

  void set_page_count(int pages) { doc_.page_count = pages; }

  // The first heading seen, for formats whose title falls back to it.
  const std::string& first_heading() const { return first_heading_; }

  // Finishes the document: title = `title` if not blank, else the first heading when `heading_title`,
  // else the file name of `name` without extension. Throws kCorrupt "no text" when no block was kept.
  ParsedDocument finish(std::string_view title, std::string_view name, bool heading_title = true);

 private:
  ParsedDocument doc_;
  std::string first_heading_;
  int table_count_ = 0;
};

// "docs/q3 report.pdf" -> "q3 report".
std::string file_stem(std::string_view path);

// Lower-case extension with the dot, "" when there is none: "a/B.MD" -> ".md".
std::string file_extension(std::string_view path);

// Throws kCorrupt "empty file" for zero bytes; every parser starts with it.
void require_not_empty(std::string_view bytes, std::string_view name);

}  // namespace rag::ingest
