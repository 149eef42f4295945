// The shipped sample corpus (data/sample) must ingest cleanly: it is what the e2e tests and a new user
// try first.
#include <gtest/gtest.h>

#include <map>

#include "tests/ingest/helpers.h"

namespace rag::ingest {
namespace {

const std::string kSample = std::string(RAG_SOURCE_DIR) + "/data/sample";

TEST(SampleCorpus, WalksParsesAndChunks) {
  std::vector<FileEntry> entries = walk({kSample});
  std::map<std::string, DocType> expected = {{"engineering/incident-report-template.txt", DocType::kText},
                                             {"engineering/on-call-runbook.md", DocType::kMarkdown},
                                             {"handbook/expense-policy.md", DocType::kMarkdown},
                                             {"handbook/remote-work.html", DocType::kHtml},
                                             {"handbook/welcome.md", DocType::kMarkdown},
                                             {"hr/parental-leave.md", DocType::kMarkdown},
                                             {"it/security-faq.txt", DocType::kText},
                                             {"products/rover-x2-spec.html", DocType::kHtml},
                                             {"products/warehouse-safety-guide.pdf", DocType::kPdf}};
  ASSERT_EQ(entries.size(), expected.size());
  size_t words = 0;
  for (const FileEntry& entry : entries) {
    std::string relative = entry.path.substr(kSample.size() + 1);
    SCOPED_TRACE(relative);
    ASSERT_TRUE(expected.count(relative));
    EXPECT_TRUE(entry.error.empty()) << entry.error;
    std::vector<std::string> acl;
    if (relative.starts_with("hr/")) acl = {"group:hr", "user:maya.okafor"};
    EXPECT_EQ(entry.acl, acl);
    ParsedDocument doc = parse_file(entry.path);
    test::expect_well_formed(doc);
    EXPECT_EQ(doc_type_name(doc.type), doc_type_name(expected[relative]));
    std::vector<Chunk> chunks = chunk_document(doc);
    EXPECT_FALSE(chunks.empty());
    for (char c : doc.text) words += c == ' ';
  }
  EXPECT_GT(words, 2500u) << "a few thousand words in all";
}

TEST(SampleCorpus, StructureSurvivesParsing) {
  ParsedDocument expenses = parse_file(kSample + "/handbook/expense-policy.md");
  EXPECT_EQ(expenses.title, "Expense and Travel Policy");
  std::vector<Chunk> chunks =
      chunk_document(expenses, {.target_bytes = 400, .max_bytes = 800, .overlap_bytes = 60});
  bool hotel_row = false;
  for (const Chunk& c : chunks) {
    if (c.text.find("Hotel (per night) | $220 | $200 | $180 | Director") == std::string::npos) continue;
    hotel_row = true;
    EXPECT_EQ(c.heading_path, "Expense and Travel Policy > Travel > Daily limits");
    EXPECT_NE(c.text.find("Category | Tacoma and Toronto | Rotterdam | Other cities | Approver above limit"),
              std::string::npos);
  }
  EXPECT_TRUE(hotel_row);

  ParsedDocument spec = parse_file(kSample + "/products/rover-x2-spec.html");
  EXPECT_EQ(spec.title, "Rover X2 \xE2\x80\x94 Technical Specification");
  EXPECT_EQ(spec.text.find("Products"), std::string::npos) << "navigation dropped";
  EXPECT_EQ(spec.text.find("analytics"), std::string::npos) << "script dropped";
  EXPECT_EQ(spec.text.find("Internal use only"), std::string::npos) << "footer dropped";
  EXPECT_NE(spec.text.find("Payload | 600 kg | evenly distributed on the top plate"), std::string::npos);

  ParsedDocument guide = parse_file(kSample + "/products/warehouse-safety-guide.pdf");
  EXPECT_EQ(guide.title, "Warehouse Safety Guide for Rover Deployments");
  EXPECT_EQ(guide.page_count, 4);
  // The last words of every page made it onto the page and back out.
  const std::vector<std::pair<std::string, int>> page_ends = {{"limited to 1.2 metres per second.", 1},
                                                              {"clearing a blocked aisle.", 2},
                                                              {"its logs help us find the cause.", 3},
                                                              {"safety@northwind.example.", 4}};
  for (const auto& [text, page] : page_ends) {
    bool found = false;
    for (const Block& b : guide.blocks) {
      if (b.text.find(text) == std::string::npos) continue;
      found = true;
      EXPECT_EQ(b.page, page) << text;
    }
    EXPECT_TRUE(found) << text;
  }
}

}  // namespace
}  // namespace rag::ingest
