#include "tests/ingest/helpers.h"

#include "common/text.h"

namespace rag::ingest::test {

void expect_well_formed(const ParsedDocument& doc) {
  std::string joined;
  for (const Block& block : doc.blocks) {
    if (!joined.empty()) joined += "\n\n";
    EXPECT_EQ(block.begin, joined.size());
    joined += block.text;
    EXPECT_EQ(block.end, joined.size());
    EXPECT_FALSE(block.text.empty());
    EXPECT_TRUE(utf8_valid(block.text));
  }
  EXPECT_EQ(doc.text, joined);
  EXPECT_TRUE(utf8_valid(doc.title));
  EXPECT_FALSE(doc.title.empty());
}

}  // namespace rag::ingest::test
