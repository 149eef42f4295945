#include <gtest/gtest.h>

#include "common/args.h"
#include "common/error.h"
#include "common/hash.h"
#include "common/text.h"

namespace rag {
namespace {

TEST(Utf8, RepairReplacesEachInvalidByteAndKeepsValidText) {
  struct Case {
    std::string input, expected;
  } cases[] = {
      {"plain ascii", "plain ascii"},
      {"caf\xC3\xA9", "caf\xC3\xA9"},
      {"bad \xFF byte", "bad \xEF\xBF\xBD byte"},
      {"truncated \xE2\x82", "truncated \xEF\xBF\xBD\xEF\xBF\xBD"},
      {"overlong \xC0\xAF", "overlong \xEF\xBF\xBD\xEF\xBF\xBD"},
      {"surrogate \xED\xA0\x80", "surrogate \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"literal \xEF\xBF\xBD stays", "literal \xEF\xBF\xBD stays"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(utf8_repair(c.input), c.expected) << c.input;
    EXPECT_TRUE(utf8_valid(utf8_repair(c.input)));
  }
  EXPECT_FALSE(utf8_valid("\xFF"));
}

TEST(Utf8, Cp1252MapsTheC1RangeToPunctuation) {
  EXPECT_EQ(cp1252_to_utf8("\x93quoted\x94 \x80"), "\xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x82\xAC");
  EXPECT_EQ(latin1_to_utf8("\xE9"), "\xC3\xA9");
}

TEST(Text, CollapseWhitespaceTrimsAndFoldsNbsp) {
  EXPECT_EQ(collapse_whitespace("  a\t\n b\xC2\xA0\xC2\xA0 c  "), "a b c");
  EXPECT_EQ(collapse_whitespace(" \n "), "");
}

TEST(Hash, EqualBytesHashEqualAndHexIs32Digits) {
  EXPECT_EQ(hash_bytes("abc"), hash_bytes("abc"));
  EXPECT_NE(hash_bytes("abc"), hash_bytes("abd"));
  EXPECT_EQ(hash_bytes("").hex().size(), 32u);
  EXPECT_THROW(hash_file("/nonexistent/file"), Error);
}

TEST(Args, ParsesOptionsFlagsAndPositionals) {
  CommandSpec spec{"demo", "PATH...", "demo", {data_option(), {"k", "N", "results"}, {"json", "", "json"},
                                               {"acl", "P", "principal", true}}};
  std::vector<std::string> words = {"a", "--k", "7", "--json", "--acl=user:x", "--acl", "group:y", "--data=/d", "b"};
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  ParsedArgs args = parse_args(spec, static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(args.positional, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(args.get_int("k", 10, 1, 100), 7);
  EXPECT_TRUE(args.has("json"));
  EXPECT_EQ(args.get_all("acl"), (std::vector<std::string>{"user:x", "group:y"}));
  EXPECT_EQ(data_dir(args), "/d");
}

TEST(Args, RejectsUnknownOptionsMissingValuesAndOutOfRangeNumbers) {
  CommandSpec spec{"demo", "", "demo", {{"k", "N", "results"}}};
  auto parse = [&](std::vector<std::string> words) {
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    return parse_args(spec, static_cast<int>(argv.size()), argv.data());
  };
  EXPECT_THROW(parse({"--bogus"}), Error);
  EXPECT_THROW(parse({"--k"}), Error);
  EXPECT_THROW(parse({"--k", "0"}).get_int("k", 1, 1, 100), Error);
  EXPECT_THROW(parse({"--k", "7x"}).get_int("k", 1, 1, 100), Error);
  try {
    parse({"--bogus"});
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("--bogus"), std::string::npos);
  }
}

}  // namespace
}  // namespace rag
