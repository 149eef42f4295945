// Shared by the ingest tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "ingest/ingest.h"

namespace rag::ingest::test {

// Runs `fn`, expecting a rag::Error with `code` whose message contains `fragment`.
template <typename Fn>
void expect_error(Fn&& fn, Errc code, const std::string& fragment) {
  try {
    fn();
    ADD_FAILURE() << "expected " << errc_name(code) << " containing \"" << fragment << "\", got success";
  } catch (const Error& e) {
    EXPECT_EQ(errc_name(e.code()), errc_name(code)) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

// Blocks as (kind, text) for compact comparison.
struct BlockView {
  BlockKind kind;
  std::string text;
  int level = 0;
  bool operator==(const BlockView&) const = default;
};

inline std::vector<BlockView> views(const ParsedDocument& doc) {
  std::vector<BlockView> out;
  for (const Block& b : doc.blocks)
    out.push_back(
        {b.kind, b.text, b.kind == BlockKind::kHeading || b.kind == BlockKind::kListItem ? b.level : 0});
  return out;
}

inline std::string kind_name(BlockKind kind) {
  switch (kind) {
    case BlockKind::kHeading:
      return "heading";
    case BlockKind::kParagraph:
      return "paragraph";
    case BlockKind::kListItem:
      return "item";
    case BlockKind::kCode:
      return "code";
    case BlockKind::kTableRow:
      return "row";
  }
  return "?";
}

inline void PrintTo(const BlockView& v, std::ostream* os) {
  *os << "{" << kind_name(v.kind) << " " << v.level << " \"" << v.text << "\"}";
}

// Checks the layout invariants every parser must keep: text is the blocks joined by "\n\n", each
// block's range points at its text, and all text is valid UTF-8.
void expect_well_formed(const ParsedDocument& doc);

}  // namespace rag::ingest::test
