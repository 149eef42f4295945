#include "nn/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>
#include <random>
#include <sstream>

#include "common/error.h"
#include "common/text.h"
#include "nn/gguf.h"
#include "nn/tokenizer-impl.h"
#include "tests/support/support.h"

namespace rag::nn {
namespace {

struct Fixture {
  std::vector<std::string> inputs;
  std::vector<std::vector<int32_t>> expected;
};

std::string vocab_path(const std::string& name) {
  return test::shared_path("fixtures/vocab/ggml-vocab-" + name + ".gguf");
}

// The .inp/.out convention of llama.cpp's tests/test-tokenizer-0.cpp: inputs separated by
// "\n__ggml_vocab_test__\n" (so each input keeps its own leading and trailing newlines), one line of
// space-separated ids per input.
Fixture read_fixture(const std::string& name) {
  Fixture f;
  const std::string raw = test::read_file(vocab_path(name) + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0; pos < raw.size();) {
    size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      f.inputs.push_back(raw.substr(pos));
      break;
    }
    f.inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::istringstream out(test::read_file(vocab_path(name) + ".out"));
  for (std::string line; std::getline(out, line);) {
    std::istringstream ids(line);
    std::vector<int32_t> row;
    for (int32_t id; ids >> id;) row.push_back(id);
    f.expected.push_back(std::move(row));
  }
  return f;
}

std::unique_ptr<Tokenizer> load(const std::string& name) {
  auto file = GgufFile::open(vocab_path(name));
  return Tokenizer::from_gguf(*file);
}

std::string join(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

const char* const kFixtures[] = {"bert-bge", "gpt-2", "llama-spm", "phi-3", "deepseek-coder"};

class Conformance : public testing::TestWithParam<const char*> {};

TEST_P(Conformance, EveryFixtureLineMatchesLlamaCpp) {
  const std::string name = GetParam();
  Fixture f = read_fixture(name);
  ASSERT_EQ(f.inputs.size(), f.expected.size()) << name << ": inputs and expected lines differ in number";
  ASSERT_GT(f.inputs.size(), 40u);
  auto tokenizer = load(name);
  size_t matched = 0;
  for (size_t i = 0; i < f.inputs.size(); ++i) {
    std::vector<int32_t> got = tokenizer->encode(f.inputs[i], false, false);
    if (got == f.expected[i]) ++matched;
    else
      ADD_FAILURE() << name << " input " << i << ": '" << f.inputs[i] << "'\n  expected " << join(f.expected[i])
                    << "\n  got      " << join(got);
  }
  EXPECT_EQ(matched, f.inputs.size()) << name;
}

INSTANTIATE_TEST_SUITE_P(Vocab, Conformance, testing::ValuesIn(kFixtures),
                         [](const testing::TestParamInfo<const char*>& info) {
                           std::string s = info.param;
                           for (char& c : s) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return s;
                         });

std::string random_utf8(std::mt19937& rng, size_t length) {
  // Mostly ASCII with spaces and newlines, plus 2-, 3- and 4-byte characters.
  static const char32_t kPool[] = {' ', ' ', '\n', '\t', 'a', 'Z', '7', '\'', '.', 0xE9, 0x416, 0x4E2D, 0x1F600,
                                   0x00A0, 0x3000, 0x0301, 0xFF5E, 0x10348};
  std::uniform_int_distribution<size_t> pick(0, std::size(kPool) + 25);
  std::string s;
  for (size_t i = 0; i < length; ++i) {
    size_t k = pick(rng);
    utf8_append(s, k < std::size(kPool) ? kPool[k] : static_cast<char32_t>('a' + (k - std::size(kPool))));
  }
  return s;
}

TEST(ByteLevelBpe, DecodeGivesBackTheExactText) {
  std::mt19937 rng(42);
  for (const char* name : {"gpt-2", "deepseek-coder"}) {
    auto tokenizer = load(name);
    for (const std::string& input : read_fixture(name).inputs)
      EXPECT_EQ(tokenizer->decode(tokenizer->encode(input, false)), input) << name << ": '" << input << "'";
    for (int i = 0; i < 200; ++i) {
      std::string input = random_utf8(rng, 1 + i % 40);
      EXPECT_EQ(tokenizer->decode(tokenizer->encode(input, false)), input) << name << ": '" << input << "'";
    }
  }
}

TEST(SentencePiece, DecodeRemovesTheSpacePrefixAndReversesByteFallback) {
  std::mt19937 rng(7);
  for (const char* name : {"llama-spm", "phi-3"}) {
    auto tokenizer = load(name);
    for (const std::string& input : read_fixture(name).inputs)
      EXPECT_EQ(tokenizer->decode(tokenizer->encode(input, false)), input) << name << ": '" << input << "'";
    for (int i = 0; i < 200; ++i) {
      std::string input = random_utf8(rng, 1 + i % 40);
      EXPECT_EQ(tokenizer->decode(tokenizer->encode(input, false)), input) << name << ": '" << input << "'";
    }
    // With BOS added and skipped on decode, the text is the same.
    std::vector<int32_t> ids = tokenizer->encode("Hello world", true);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), tokenizer->bos());
    EXPECT_EQ(tokenizer->decode(ids, true), "Hello world");
  }
}

TEST(WordPiece, AddSpecialWrapsInClsAndSepAndDecodeJoinsWords) {
  auto tokenizer = load("bert-bge");
  std::vector<int32_t> ids = tokenizer->encode("Hello World!", true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 101);
  EXPECT_EQ(ids.back(), 102);
  EXPECT_EQ(tokenizer->cls(), 101);
  EXPECT_EQ(tokenizer->sep(), 102);
  EXPECT_EQ(tokenizer->decode(ids, true), "hello world!");  // clean_up_tokenization_spaces, as Hugging Face and llama.cpp
  // Accents are stripped and case folded: "Äpfel" is "apfel".
  EXPECT_EQ(tokenizer->encode("\xC3\x84pfel", false), tokenizer->encode("apfel", false));
}

TEST(WordPiece, EncodePairMarksSegmentsAndTruncatesTheLongerOne) {
  auto tokenizer = load("bert-bge");
  std::vector<int32_t> a = tokenizer->encode("what is a cat", false);
  std::vector<int32_t> b = tokenizer->encode("a cat is a small domesticated carnivorous mammal", false);
  PairEncoding pair = tokenizer->encode_pair("what is a cat", "a cat is a small domesticated carnivorous mammal");
  ASSERT_EQ(pair.ids.size(), a.size() + b.size() + 3);
  ASSERT_EQ(pair.type_ids.size(), pair.ids.size());
  EXPECT_EQ(pair.ids[0], 101);
  EXPECT_EQ(pair.ids[a.size() + 1], 102);
  EXPECT_EQ(pair.ids.back(), 102);
  EXPECT_EQ(pair.type_ids[a.size() + 1], 0);
  EXPECT_EQ(pair.type_ids[a.size() + 2], 1);
  EXPECT_EQ(pair.type_ids.back(), 1);

  PairEncoding cut = tokenizer->encode_pair("what is a cat", "a cat is a small domesticated carnivorous mammal", 10);
  EXPECT_EQ(cut.ids.size(), 10u);
  EXPECT_EQ(cut.ids.back(), 102);
  EXPECT_EQ(std::vector<int32_t>(cut.ids.begin() + 1, cut.ids.begin() + 1 + 3), std::vector<int32_t>(a.begin(), a.begin() + 3));
}

TEST(SpecialTokens, ParsedOnlyWhenAskedAndPhi3EatsTheFollowingSpace) {
  auto tokenizer = load("phi-3");
  const int32_t user = tokenizer->find("<|user|>");
  ASSERT_EQ(user, 32010);
  std::vector<int32_t> plain = tokenizer->encode("<|user|> hi", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), user), 0);
  std::vector<int32_t> parsed = tokenizer->encode("<|user|> hi", false, true);
  ASSERT_GE(parsed.size(), 2u);
  EXPECT_EQ(parsed[0], user);
  // The space after <|user|> is stripped, then the ▁ prefix is added again: same as "<|user|>hi".
  EXPECT_EQ(parsed, tokenizer->encode("<|user|>hi", false, true));
  EXPECT_TRUE(tokenizer->is_control(user));
  EXPECT_TRUE(tokenizer->is_eog(tokenizer->find("<|end|>")));
  EXPECT_EQ(tokenizer->decode(parsed, true), "hi");
}

TEST(StreamDecoder, NeverEmitsHalfACharacter) {
  std::mt19937 rng(3);
  for (const char* name : {"gpt-2", "llama-spm", "deepseek-coder"}) {
    auto tokenizer = load(name);
    std::vector<std::string> inputs = read_fixture(name).inputs;
    for (int i = 0; i < 50; ++i) inputs.push_back(random_utf8(rng, 30));
    for (const std::string& input : inputs) {
      std::vector<int32_t> ids = tokenizer->encode(input, true);
      StreamDecoder stream(*tokenizer);
      std::string streamed;
      for (int32_t id : ids) {
        std::string delta = stream.push(id);
        EXPECT_TRUE(utf8_valid(delta)) << name << ": '" << input << "'";
        streamed += delta;
      }
      streamed += stream.flush();
      EXPECT_EQ(streamed, tokenizer->decode(ids, true)) << name;
    }
  }
}

TEST(StreamDecoder, HoldsSplitBytesAndRepairsInvalidOnes) {
  auto tokenizer = load("llama-spm");
  const int32_t e2 = tokenizer->find("<0xE2>"), x82 = tokenizer->find("<0x82>"), xac = tokenizer->find("<0xAC>");
  ASSERT_NE(e2, kNoToken);
  StreamDecoder stream(*tokenizer);
  EXPECT_EQ(stream.push(e2), "");
  EXPECT_EQ(stream.push(x82), "");
  EXPECT_EQ(stream.push(xac), "\xE2\x82\xAC");  // €
  EXPECT_EQ(stream.push(e2), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");  // a dangling lead byte comes out as U+FFFD
}

TEST(HostileInput, LongRunsAreTokenizedInBoundedTime) {
  for (const char* name : kFixtures) {
    auto tokenizer = load(name);
    for (const std::string& unit : {std::string("a"), std::string(" "), std::string("\xF0\x9F\x98\x80"), std::string("3")}) {
      std::string input;
      while (input.size() < 100 * 1024) input += unit;
      auto start = std::chrono::steady_clock::now();
      std::vector<int32_t> ids = tokenizer->encode(input, true);
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      EXPECT_FALSE(ids.empty()) << name;
      EXPECT_LT(seconds, 10.0) << name << ": 100 KB of '" << unit << "'";
      if (tokenizer->model() == TokenizerModel::kBpe) {
        EXPECT_EQ(tokenizer->decode(ids, true), input) << name;
      }
    }
  }
}

TEST(HostileInput, InvalidUtf8IsRepairedBeforeTokenizing) {
  const std::string bad = "ok \xFF\xFE \xE2\x82 end\xC0";
  for (const char* name : kFixtures) {
    auto tokenizer = load(name);
    std::vector<int32_t> ids = tokenizer->encode(bad, false);
    EXPECT_EQ(ids, tokenizer->encode(utf8_repair(bad), false)) << name;
    if (tokenizer->model() != TokenizerModel::kWordPiece) {
      EXPECT_EQ(tokenizer->decode(ids), utf8_repair(bad)) << name;
    }
    // Ids outside the vocabulary decode to nothing instead of crashing.
    std::vector<int32_t> junk = {-5, static_cast<int32_t>(tokenizer->vocab_size()), INT32_MAX};
    EXPECT_EQ(tokenizer->decode(junk), "") << name;
    EXPECT_EQ(tokenizer->piece(-1), "");
    EXPECT_EQ(tokenizer->token_text(INT32_MAX), "");
  }
}

// Pre-tokenizers without a fixture file, checked against what their regexes match (tokenizer-impl.h).
TEST(PreTokenizer, SplitsAsTheRegexesDo) {
  struct Case {
    PreTokenizer kind;
    std::string text;
    std::vector<std::string> words;
  } cases[] = {
      {PreTokenizer::kGpt2, "Hello, y'all!  ok", {"Hello", ",", " y", "'", "all", "!", " ", " ok"}},
      {PreTokenizer::kGpt2, "I'll 1234 \n", {"I", "'ll", " 1234", " \n"}},
      {PreTokenizer::kLlama3, "Hello, y'all! 1234567", {"Hello", ",", " y", "'all", "!", " ", "123", "456", "7"}},
      {PreTokenizer::kLlama3, "\n\n  x", {"\n\n", " ", " x"}},
      {PreTokenizer::kLlama3, "I'LL go", {"I", "'LL", " go"}},
      {PreTokenizer::kLlama3, "a...\n\nb", {"a", "...\n\n", "b"}},
      {PreTokenizer::kQwen2, "x 123", {"x", " ", "1", "2", "3"}},
      {PreTokenizer::kDeepseekCoder, "int x=42;\n\u4e2d\u6587ok", {"int", " x", "=", "4", "2", ";", "\n", "\u4e2d\u6587", "ok"}},
      {PreTokenizer::kStarcoder, "v12 ab", {"v", "1", "2", " ab"}},
      {PreTokenizer::kDefault, "ab+=12345", {"ab", "+=", "123", "45"}},
  };
  for (const Case& c : cases) EXPECT_EQ(pre_tokenize(c.kind, c.text), c.words) << c.text;
}

TEST(HostileInput, RandomBytesNeverCrashAnyTokenizer) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255), length(0, 300);
  std::vector<std::unique_ptr<Tokenizer>> tokenizers;
  for (const char* name : kFixtures) tokenizers.push_back(load(name));
  for (int i = 0; i < 300; ++i) {
    std::string input;
    for (int n = length(rng); n > 0; --n) input += static_cast<char>(byte(rng));
    if (i % 3 == 0) input += "<|user|></s><s>[CLS]<|endoftext|>";
    for (const auto& tokenizer : tokenizers) {
      for (bool special : {false, true}) {
        std::vector<int32_t> ids = tokenizer->encode(input, special, special);
        for (int32_t id : ids) ASSERT_TRUE(id >= 0 && static_cast<size_t>(id) < tokenizer->vocab_size());
        StreamDecoder stream(*tokenizer, !special);
        for (int32_t id : ids) ASSERT_TRUE(utf8_valid(stream.push(id)));
        ASSERT_TRUE(utf8_valid(stream.flush()));
      }
    }
  }
}

Vocab tiny_bpe() {
  Vocab v;
  v.model = TokenizerModel::kBpe;
  v.pre = "gpt2";
  v.tokens = {"a", "b", "ab", "c"};
  v.merges = {"a b", "zz", "q r", "a"};  // merges with unknown pieces or no pair are harmless
  return v;
}

TEST(HostileVocab, BadVocabulariesAreRefusedOrTolerated) {
  struct Case {
    const char* what;
    std::function<void(Vocab&)> edit;
    std::optional<Errc> error;
  } cases[] = {
      {"no tokens", [](Vocab& v) { v.tokens.clear(); }, Errc::kCorrupt},
      {"duplicate token", [](Vocab& v) { v.tokens.push_back("ab"); }, Errc::kCorrupt},
      {"too few scores", [](Vocab& v) { v.scores = {0.5f}; }, Errc::kCorrupt},
      {"too few types", [](Vocab& v) { v.types = {TokenType::kNormal}; }, Errc::kCorrupt},
      {"unknown pre-tokenizer", [](Vocab& v) { v.pre = "klingon"; }, Errc::kUnsupported},
      {"special ids out of range", [](Vocab& v) { v.bos = 99; v.eos = -7; v.add_bos = true; }, std::nullopt},
      {"merge into a missing token", [](Vocab& v) { v.merges.push_back("ab c"); }, std::nullopt},
      {"empty token text", [](Vocab& v) { v.tokens.push_back(""); }, std::nullopt},
  };
  for (const Case& c : cases) {
    Vocab v = tiny_bpe();
    c.edit(v);
    if (c.error) {
      try {
        Tokenizer::from_vocab(v, "tiny");
        ADD_FAILURE() << c.what << ": accepted";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), *c.error) << c.what << ": " << e.what();
        EXPECT_NE(std::string(e.what()).find("tiny"), std::string::npos) << e.what();
      }
      continue;
    }
    auto tokenizer = Tokenizer::from_vocab(v, "tiny");
    std::vector<int32_t> ids = tokenizer->encode("abc cab", true);
    for (int32_t id : ids) EXPECT_TRUE(id >= 0 && static_cast<size_t>(id) < tokenizer->vocab_size()) << c.what;
  }
  auto tokenizer = Tokenizer::from_vocab(tiny_bpe());
  EXPECT_EQ(tokenizer->encode("abc", false), (std::vector<int32_t>{2, 3}));
}

TEST(Gguf, UnsupportedModelsAndMalformedKeysAreErrorsNamingTheFile) {
  test::TempDir dir;
  struct Case {
    const char* what;
    std::function<void(GgufWriter&)> edit;
    Errc error;
  } cases[] = {
      {"unknown model", [](GgufWriter& w) { w.set_string("tokenizer.ggml.model", "t5"); }, Errc::kUnsupported},
      {"no tokens", [](GgufWriter& w) { w.set_string("tokenizer.ggml.model", "llama"); }, Errc::kCorrupt},
      {"tokens not strings",
       [](GgufWriter& w) {
         w.set_string("tokenizer.ggml.model", "llama");
         w.set_int32_array("tokenizer.ggml.tokens", {1, 2});
       },
       Errc::kCorrupt},
      {"bpe without merges",
       [](GgufWriter& w) {
         w.set_string("tokenizer.ggml.model", "gpt2");
         w.set_string_array("tokenizer.ggml.tokens", {"a", "b"});
       },
       Errc::kCorrupt},
  };
  for (const Case& c : cases) {
    GgufWriter writer;
    c.edit(writer);
    const std::string path = dir / "vocab.gguf";
    writer.write(path);
    auto file = GgufFile::open(path);
    try {
      Tokenizer::from_gguf(*file);
      ADD_FAILURE() << c.what << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), c.error) << c.what << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("vocab.gguf"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace rag::nn
