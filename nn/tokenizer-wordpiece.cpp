// WordPiece (tokenizer.ggml.model "bert"), as llama.cpp's llm_tokenizer_wpm_session. llama.cpp's
// converter stores word-initial pieces with a "▁" prefix and continuations bare (instead of BERT's "##"),
// so every word is looked up as "▁" + word. Normalization: each code point is replaced by the first code
// point of its NFD form and accent marks are dropped (strip_accents), then lower-cased; control
// characters, NUL and U+FFFD disappear; punctuation, ASCII symbols and CJK ideographs become one-character
// words. Greedy longest match from the left; a word with an unmatched position becomes one UNK.
#include <algorithm>

#include "common/text.h"
#include "nn/tokenizer-impl.h"
#include "nn/unicode.h"

namespace rag::nn {
namespace {

const std::string kWordStart = "\xE2\x96\x81";  // ▁

// The ranges of BERT's _is_chinese_char (0x2B920 rather than 0x2B820 is the Hugging Face code's).
bool is_chinese_char(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

std::vector<std::string> split_words(const Vocab& vocab, std::string_view text) {
  std::vector<std::string> words(1);
  for (char32_t cp : utf8_to_codepoints(text)) {
    if (vocab.strip_accents) cp = nfd_first(cp);
    CodepointFlags flags = codepoint_flags(cp);
    if (flags.is_whitespace()) {
      if (!words.back().empty()) words.emplace_back();
      continue;
    }
    if (cp == 0 || cp == kReplacementChar || flags.is_control()) continue;
    if (vocab.strip_accents && flags.is_accent_mark()) continue;
    std::string s;
    utf8_append(s, vocab.lowercase ? to_lower(cp) : cp);
    if (flags.is_punctuation() || (cp < 0x7F && flags.is_symbol()) || is_chinese_char(cp)) {
      if (!words.back().empty()) words.emplace_back();
      words.back() = std::move(s);
      words.emplace_back();
    } else {
      words.back() += s;
    }
  }
  if (words.back().empty()) words.pop_back();
  return words;
}

}  // namespace

void TokenTrie::insert(std::string_view text, int32_t token) {
  int32_t node = 0;
  for (unsigned char byte : text) {
    auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), byte,
                               [](const std::pair<uint8_t, int32_t>& c, uint8_t b) { return c.first < b; });
    if (it != children.end() && it->first == byte) {
      node = it->second;
      continue;
    }
    int32_t child = static_cast<int32_t>(nodes.size());
    children.insert(it, {byte, child});
    nodes.emplace_back();
    node = child;
  }
  nodes[node].token = token;
}

size_t TokenTrie::longest_prefix(std::string_view text, int32_t& token) const {
  size_t best = 0;
  token = kNoToken;
  int32_t node = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto& children = nodes[node].children;
    auto byte = static_cast<uint8_t>(text[i]);
    auto it = std::lower_bound(children.begin(), children.end(), byte,
                               [](const std::pair<uint8_t, int32_t>& c, uint8_t b) { return c.first < b; });
    if (it == children.end() || it->first != byte) break;
    node = it->second;
    if (nodes[node].token != kNoToken) {
      best = i + 1;
      token = nodes[node].token;
    }
  }
  return best;
}

void encode_wordpiece(const Tokenizer::Impl& impl, std::string_view text, std::vector<int32_t>& out) {
  for (const std::string& word : split_words(impl.vocab, text)) {
    const std::string marked = kWordStart + word;
    const size_t first = out.size();
    bool matched = true;
    for (size_t i = 0; i < marked.size();) {
      int32_t id;
      size_t length = impl.trie.longest_prefix(std::string_view(marked).substr(i), id);
      if (length == 0) {
        matched = false;
        break;
      }
      out.push_back(id);
      i += length;
    }
    if (!matched) out.resize(first);
    if (out.size() == first && impl.vocab.unk != kNoToken) out.push_back(impl.vocab.unk);
  }
}

}  // namespace rag::nn
