#include <gtest/gtest.h>

#include <algorithm>

#include "index/index.h"
#include "tests/support/support.h"

namespace rag::index {
namespace {

bool has(const std::vector<std::string>& terms, const std::string& term) {
  return std::find(terms.begin(), terms.end(), term) != terms.end();
}

TEST(KeywordIndex, ChunkIdIsTheDocidAndIdTitleHeadingAndAclTermsArePresent) {
  test::TempDir dir;
  KeywordIndex index(dir / "xapian", KeywordIndex::Mode::kWrite);
  index.replace({7, 3, "Zebra handbook", "Care > Feeding", "Zebras graze on grasses.", {"user:ann", "group:eng"}});
  index.replace({9, 4, "Other", "", "Nothing here.", {}});
  index.commit(42);
  EXPECT_EQ(index.size(), 2);
  EXPECT_EQ(index.committed_change(), 42);
  auto terms = index.terms(7);
  for (const char* expected : {"Q7", "D3", "Auser:ann", "Agroup:eng", "Szebra", "Hfeeding", "ZHfeed", "zebra", "Zgraze", "grasses"})
    EXPECT_TRUE(has(terms, expected)) << expected;
  EXPECT_FALSE(has(terms, "Q9"));
  auto other = index.terms(9);
  EXPECT_TRUE(has(other, "Q9"));
  // An empty ACL is indexed under the sentinel principal only.
  std::vector<std::string> acl_terms;
  std::copy_if(other.begin(), other.end(), std::back_inserter(acl_terms), [](const std::string& t) { return t[0] == 'A'; });
  EXPECT_EQ(acl_terms, std::vector<std::string>{std::string("A") + kNoAclPrincipal});

  index.replace({7, 3, "Zebra handbook", "", "Lions now.", {}});  // replacement drops the old terms
  terms = index.terms(7);
  EXPECT_FALSE(has(terms, "grasses"));
  EXPECT_FALSE(has(terms, "Auser:ann"));
  EXPECT_TRUE(has(terms, "lions"));

  index.remove(7);
  index.remove(12345);  // absent: not an error
  index.commit(43);
  EXPECT_TRUE(index.terms(7).empty());
  EXPECT_EQ(index.size(), 1);
  index.remove_all();
  index.commit(44);
  EXPECT_EQ(index.size(), 0);
}

TEST(KeywordIndex, ReaderSeesCommittedStateAndFreshDatabaseHasNoCounter) {
  test::TempDir dir;
  {
    KeywordIndex writer(dir / "xapian", KeywordIndex::Mode::kWrite);
    EXPECT_EQ(writer.committed_change(), -1);
    writer.replace({1, 1, "t", "", "alpha", {}});
    writer.commit(5);
  }
  KeywordIndex reader(dir / "xapian", KeywordIndex::Mode::kRead);
  EXPECT_EQ(reader.size(), 1);
  EXPECT_EQ(reader.committed_change(), 5);
}

}  // namespace
}  // namespace rag::index
