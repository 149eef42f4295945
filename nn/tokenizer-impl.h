// The tokenizer's shared state and the per-model algorithms (private to nn/). tokenizer.cpp owns the
// special-token handling and decoding; each tokenizer-<model>.cpp owns one algorithm over text that holds
// no special tokens and is valid UTF-8.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nn/tokenizer.h"

namespace rag::nn {

// Token attributes, as llama.cpp derives them from the token types and a few names.
enum TokenAttr : uint32_t {
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrLstrip = 1u << 7,  // eat white space before the token when splitting special tokens out
  kAttrRstrip = 1u << 8,  // ... and after it
};

// Byte-level BPE pre-tokenizers: how text is cut into words before merging (tokenizer.ggml.pre).
enum class PreTokenizer {
  kGpt2,           // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kLlama3,         // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|...
  kQwen2,          // as kLlama3 with single digits
  kDeepseekCoder,  // [\r\n], \s?\p{L}+, \s?\p{P}+, CJK runs, \p{N}, applied one after the other
  kStarcoder,      // \p{N}, then kGpt2
  kDefault,        // [\p{P}$+<=>^~|]+, then kGpt2, then \p{N}+, then [0-9][0-9][0-9]
};

// Maps tokenizer.ggml.pre to a pre-tokenizer; false for a name this code does not know.
bool pre_tokenizer_for(const std::string& name, PreTokenizer& kind, bool& ignore_merges, bool& add_bos);

// Cuts `text` into words, each as its code points' UTF-8 (not yet byte-mapped).
std::vector<std::string> pre_tokenize(PreTokenizer kind, std::string_view text);

// A byte trie over the vocabulary for WordPiece's longest match.
struct TokenTrie {
  struct Node {
    int32_t token = kNoToken;
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
  };
  std::vector<Node> nodes{1};
  void insert(std::string_view text, int32_t token);
  // Longest token that is a prefix of text; returns its length (0 when none) and sets token.
  size_t longest_prefix(std::string_view text, int32_t& token) const;
};

struct Tokenizer::Impl {
  std::string source;  // file name for messages
  Vocab vocab;
  std::vector<uint32_t> attrs;  // TokenAttr bits per token
  std::unordered_map<std::string, int32_t> ids;  // token text -> id
  std::vector<int32_t> specials;  // control/user-defined/unknown tokens, longest text first
  std::set<int32_t> eog;
  int32_t eot = kNoToken;
  bool add_bos = false, add_eos = false, add_space_prefix = false;

  // Byte-level BPE.
  PreTokenizer pre_kind = PreTokenizer::kGpt2;
  bool ignore_merges = false;
  std::unordered_map<std::string, int32_t> merge_ranks;  // "left right" -> rank

  // SentencePiece byte fallback: the <0xNN> token of each byte, kNoToken when absent.
  int32_t byte_tokens[256];

  // WordPiece.
  TokenTrie trie;

  int32_t find(std::string_view text) const {
    auto it = ids.find(std::string(text));
    return it == ids.end() ? kNoToken : it->second;
  }
  bool valid(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < vocab.tokens.size(); }
};

void encode_bpe(const Tokenizer::Impl& impl, std::string_view text, std::vector<int32_t>& out);
void encode_spm(const Tokenizer::Impl& impl, std::string_view text, std::vector<int32_t>& out);
void encode_wordpiece(const Tokenizer::Impl& impl, std::string_view text, std::vector<int32_t>& out);

}  // namespace rag::nn
