// Principals: `--as USER[:GROUP,...]` parsing and the principal strings a search filters by.
#include <gtest/gtest.h>

#include "common/error.h"
#include "retrieve/retrieve.h"

namespace rag::retrieve {
namespace {

using Strings = std::vector<std::string>;

TEST(Principal, ParsesUserAndGroups) {
  struct Case {
    const char* text;
    std::string user;
    Strings groups;
  } cases[] = {
      {"ann", "ann", {}},
      {"ann:eng", "ann", {"eng"}},
      {"ann:eng,ops,everyone", "ann", {"eng", "ops", "everyone"}},
      {"bob@example.com:team-a", "bob@example.com", {"team-a"}},
  };
  for (const auto& c : cases) {
    Principal p = parse_principal(c.text);
    EXPECT_EQ(p.user, c.user) << c.text;
    EXPECT_EQ(p.groups, c.groups) << c.text;
  }
}

TEST(Principal, MalformedTextIsAnErrorNamingThePart) {
  struct Case {
    const char* text;
    const char* fragment;
  } cases[] = {
      {"", "empty user"},       {":eng", "empty user"},   {"ann:", "no group after ':'"},
      {"ann:eng,", "empty group"}, {"ann:,eng", "empty group"}, {"ann:eng,,ops", "empty group"},
      {"an n", "user 'an n'"},  {"ann:e g", "group 'e g'"}, {"ann:eng:ops", "group 'eng:ops'"},
  };
  for (const auto& c : cases) {
    try {
      parse_principal(c.text);
      ADD_FAILURE() << "no error for '" << c.text << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kInvalidArgument) << c.text;
      EXPECT_NE(std::string(e.what()).find(c.fragment), std::string::npos) << c.text << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("USER:GROUP"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(parse_principal(std::string(201, 'a')), Error);
}

TEST(Principal, StringsAddTheNoAclSentinelOnlyForTheDefaultGroup) {
  EXPECT_EQ(principal_strings({"ann", {}}, "everyone"), (Strings{"user:ann"}));
  EXPECT_EQ(principal_strings({"ann", {"eng", "everyone"}}, "everyone"),
            (Strings{"acl:none", "group:eng", "group:everyone", "user:ann"}));
  EXPECT_EQ(principal_strings({"ann", {"eng", "eng"}}, "staff"), (Strings{"group:eng", "user:ann"}));
  EXPECT_EQ(principal_strings({"ann", {"staff"}}, "staff"), (Strings{"acl:none", "group:staff", "user:ann"}));
  // No default group: nobody reads documents without an ACL.
  EXPECT_EQ(principal_strings({"ann", {"everyone"}}, ""), (Strings{"group:everyone", "user:ann"}));
  EXPECT_THROW(principal_strings({"", {}}, "everyone"), Error);
  EXPECT_THROW(principal_strings({"ann", {"a b"}}, "everyone"), Error);
}

TEST(Principal, DefaultGroupComesFromTheEnvironment) {
  ::unsetenv("RAG_DEFAULT_GROUP");
  EXPECT_EQ(default_group_from_env(), "everyone");
  ::setenv("RAG_DEFAULT_GROUP", "staff", 1);
  EXPECT_EQ(default_group_from_env(), "staff");
  ::setenv("RAG_DEFAULT_GROUP", "", 1);
  EXPECT_EQ(default_group_from_env(), "everyone");
  ::unsetenv("RAG_DEFAULT_GROUP");
}

TEST(Names, ModesAndFusionsRoundTrip) {
  for (Mode m : {Mode::kBm25, Mode::kDense, Mode::kHybrid}) EXPECT_EQ(parse_mode(mode_name(m)), m);
  for (Fusion f : {Fusion::kWeighted, Fusion::kRrf}) EXPECT_EQ(parse_fusion(fusion_name(f)), f);
  EXPECT_THROW(parse_mode("vector"), Error);
  EXPECT_THROW(parse_fusion("max"), Error);
}

}  // namespace
}  // namespace rag::retrieve
