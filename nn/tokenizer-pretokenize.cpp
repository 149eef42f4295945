// Byte-level BPE pre-tokenizers, written by hand over code point flags instead of regexes (std::regex has
// no \p{L}). Each pre-tokenizer is a list of passes applied one after the other, as llama.cpp's
// unicode_regex_split does: a pass cuts every current segment into the pieces its regex matches and the
// gaps between them, and both become segments. The gpt2 and llama3 passes port llama.cpp's custom
// splitters; the others reproduce what its std::regex fallback matches on the category-collapsed text.
#include <functional>

#include "common/text.h"
#include "nn/tokenizer-impl.h"
#include "nn/unicode.h"

namespace rag::nn {
namespace {

constexpr char32_t kOutOfRange = 0xFFFFFFFF;

using Segments = std::vector<size_t>;  // lengths in code points, covering the text in order

// One segment's view of the code points: anything outside it reads as "no code point, no flags", which
// is what the regexes' look-ahead sees at the segment's end.
struct Span {
  const std::vector<char32_t>& cpts;
  size_t begin, end;
  char32_t cpt(size_t pos) const { return pos >= begin && pos < end ? cpts[pos] : kOutOfRange; }
  CodepointFlags flags(size_t pos) const {
    return pos >= begin && pos < end ? codepoint_flags(cpts[pos]) : CodepointFlags{};
  }
};

// Emits pieces of a segment in order; empty pieces are dropped.
struct Cutter {
  Segments& out;
  size_t prev;
  size_t cut(size_t end) {
    size_t length = end - prev;
    if (length > 0) out.push_back(length);
    prev = end;
    return length;
  }
};

// A pass that partitions each segment completely by scanning it.
using PartitionPass = std::function<void(const Span&, Cutter&)>;
// A regex-like pass: the length of the match starting at pos, 0 when none.
using MatchPass = std::function<size_t(const Span&, size_t pos)>;

Segments apply(const std::vector<char32_t>& cpts, const Segments& segments, const PartitionPass& pass) {
  Segments out;
  out.reserve(segments.size());
  size_t start = 0;
  for (size_t length : segments) {
    Span span{cpts, start, start + length};
    Cutter cutter{out, start};
    pass(span, cutter);
    cutter.cut(span.end);
    start += length;
  }
  return out;
}

// Leftmost non-overlapping matches, as std::regex_iterator finds them; the gaps stay as pieces.
Segments apply(const std::vector<char32_t>& cpts, const Segments& segments, const MatchPass& match) {
  return apply(cpts, segments, PartitionPass([&](const Span& s, Cutter& cutter) {
                 for (size_t pos = s.begin; pos < s.end;) {
                   size_t length = match(s, pos);
                   if (length == 0) {
                     ++pos;
                     continue;
                   }
                   cutter.cut(pos);
                   pos += length;
                   cutter.cut(pos);
                 }
               }));
}

bool is_contraction_letter(char32_t c) { return c == 's' || c == 't' || c == 'm' || c == 'd'; }

bool is_contraction_pair(char32_t a, char32_t b) {
  return (a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l');
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void gpt2_pass(const Span& s, Cutter& cutter) {
  for (size_t pos = s.begin; pos < s.end;) {
    const char32_t cpt = s.cpt(pos);
    const CodepointFlags flags = s.flags(pos);
    if (cpt == '\'' && pos + 1 < s.end) {
      char32_t next = s.cpt(pos + 1);
      if (is_contraction_letter(next)) {
        pos += cutter.cut(pos + 2);
        continue;
      }
      if (pos + 2 < s.end && is_contraction_pair(next, s.cpt(pos + 2))) {
        pos += cutter.cut(pos + 3);
        continue;
      }
    }
    CodepointFlags flags2 = cpt == ' ' ? s.flags(pos + 1) : flags;
    if (flags2.is_letter()) {
      pos += cpt == ' ';
      while (flags2.is_letter()) flags2 = s.flags(++pos);
      cutter.cut(pos);
      continue;
    }
    if (flags2.is_number()) {
      pos += cpt == ' ';
      while (flags2.is_number()) flags2 = s.flags(++pos);
      cutter.cut(pos);
      continue;
    }
    auto is_other = [](CodepointFlags f) {
      return !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.defined();
    };
    if (is_other(flags2)) {
      pos += cpt == ' ';
      while (is_other(flags2)) flags2 = s.flags(++pos);
      cutter.cut(pos);
      continue;
    }
    size_t spaces = 0;
    while (s.flags(pos + spaces).is_whitespace()) ++spaces;
    if (spaces > 1 && s.cpt(pos + spaces) != kOutOfRange) {  // \s+(?!\S): leave one for the next word
      pos += spaces - 1;
      cutter.cut(pos);
      continue;
    }
    if (spaces > 0) {
      pos += spaces;
      cutter.cut(pos);
      continue;
    }
    cutter.cut(++pos);
  }
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
void llama3_pass(const Span& s, Cutter& cutter, size_t max_digits, bool unicode_case) {
  auto lower = [&](char32_t c) -> char32_t {
    if (unicode_case) return c == kOutOfRange ? c : to_lower(c);
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
  };
  for (size_t pos = s.begin; pos < s.end;) {
    const char32_t cpt = s.cpt(pos);
    const CodepointFlags flags = s.flags(pos);
    if (cpt == '\'' && pos + 1 < s.end) {
      char32_t next = lower(s.cpt(pos + 1));
      if (is_contraction_letter(next)) {
        pos += cutter.cut(pos + 2);
        continue;
      }
      if (pos + 2 < s.end && is_contraction_pair(next, lower(s.cpt(pos + 2)))) {
        pos += cutter.cut(pos + 3);
        continue;
      }
    }
    if (!(cpt == '\r' || cpt == '\n' || flags.is_number())) {
      if (flags.is_letter() || s.flags(pos + 1).is_letter()) {
        ++pos;
        while (s.flags(pos).is_letter()) ++pos;
        cutter.cut(pos);
        continue;
      }
    }
    if (flags.is_number()) {
      size_t first = pos;
      while (s.flags(pos).is_number()) {
        if (++pos - first >= max_digits) {
          cutter.cut(pos);
          first = pos;
        }
      }
      cutter.cut(pos);
      continue;
    }
    CodepointFlags flags2 = cpt == ' ' ? s.flags(pos + 1) : flags;
    auto is_other = [](CodepointFlags f) { return !(f.is_whitespace() || f.is_letter() || f.is_number()); };
    if (is_other(flags2) && flags.defined()) {
      pos += cpt == ' ';
      while (is_other(flags2) && flags2.defined()) flags2 = s.flags(++pos);
      char32_t c = s.cpt(pos);
      while (c == '\r' || c == '\n') c = s.cpt(++pos);
      cutter.cut(pos);
      continue;
    }
    size_t spaces = 0, last_newline_end = 0;
    while (s.flags(pos + spaces).is_whitespace()) {
      char32_t c = s.cpt(pos + spaces);
      if (c == '\r' || c == '\n') last_newline_end = pos + spaces + 1;
      ++spaces;
    }
    if (last_newline_end > 0) {
      pos = last_newline_end;
      cutter.cut(pos);
      continue;
    }
    if (spaces > 1 && s.cpt(pos + spaces) != kOutOfRange) {
      pos += spaces - 1;
      cutter.cut(pos);
      continue;
    }
    if (spaces > 0) {
      pos += spaces;
      cutter.cut(pos);
      continue;
    }
    cutter.cut(++pos);
  }
}

// A run of code points satisfying `pred`, optionally after one white-space code point (\s?X+).
size_t run_length(const Span& s, size_t pos, bool optional_space, const std::function<bool(size_t)>& pred) {
  size_t start = pos;
  if (optional_space && s.flags(pos).is_whitespace() && pos + 1 < s.end && pred(pos + 1)) ++pos;
  if (pos >= s.end || !pred(pos)) return 0;
  while (pos < s.end && pred(pos)) ++pos;
  return pos - start;
}

bool is_cjk_or_hangul(const Span& s, size_t pos) {
  char32_t c = s.cpts[pos];
  // The regex runs on text where non-ASCII white space was replaced, so U+3000 and friends never match.
  if (codepoint_flags(c).is_whitespace()) return false;
  return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x0800 && c <= 0x4E00) || (c >= 0xAC00 && c <= 0xD7FF);
}

bool is_default_punctuation(char32_t c) {
  if (codepoint_flags(c).is_whitespace()) return false;
  return codepoint_flags(c).is_punctuation() || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' ||
         c == '^' || c == '~' || c == '|';
}

}  // namespace

bool pre_tokenizer_for(const std::string& name, PreTokenizer& kind, bool& ignore_merges, bool& add_bos) {
  ignore_merges = false;
  add_bos = false;
  auto any_of = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (name == n) return true;
    return false;
  };
  if (name.empty() || name == "default") {
    kind = PreTokenizer::kDefault;
  } else if (any_of({"gpt2", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
                     "mpt", "olmo", "jais", "trillion", "roberta-bpe", "jina-v1-en", "jina-v2-code",
                     "exaone4"})) {
    kind = PreTokenizer::kGpt2;
  } else if (any_of({"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "dbrx", "smaug-bpe"})) {
    kind = PreTokenizer::kLlama3;
    ignore_merges = add_bos = !(name == "dbrx" || name == "smaug-bpe");
  } else if (any_of({"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"})) {
    kind = PreTokenizer::kQwen2;
  } else if (name == "deepseek-coder") {
    kind = PreTokenizer::kDeepseekCoder;
  } else if (any_of({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"})) {
    kind = PreTokenizer::kStarcoder;
  } else {
    return false;
  }
  return true;
}

std::vector<std::string> pre_tokenize(PreTokenizer kind, std::string_view text) {
  const std::vector<char32_t> cpts = utf8_to_codepoints(text);
  Segments segments{cpts.size()};
  if (cpts.empty()) return {};

  auto flag_run = [](bool optional_space, bool (CodepointFlags::*test)() const) {
    return MatchPass([=](const Span& s, size_t pos) {
      return run_length(s, pos, optional_space, [&](size_t p) { return (s.flags(p).*test)(); });
    });
  };
  auto single_digit = MatchPass([](const Span& s, size_t pos) -> size_t { return s.flags(pos).is_number(); });
  auto gpt2 = PartitionPass(gpt2_pass);

  switch (kind) {
    case PreTokenizer::kGpt2:
      segments = apply(cpts, segments, gpt2);
      break;
    case PreTokenizer::kLlama3:
      segments = apply(cpts, segments,
                       PartitionPass([](const Span& s, Cutter& c) { llama3_pass(s, c, 3, true); }));
      break;
    case PreTokenizer::kQwen2:
      segments = apply(cpts, segments,
                       PartitionPass([](const Span& s, Cutter& c) { llama3_pass(s, c, 1, false); }));
      break;
    case PreTokenizer::kDeepseekCoder:
      segments = apply(cpts, segments, MatchPass([](const Span& s, size_t pos) -> size_t {
                         return s.cpts[pos] == '\r' || s.cpts[pos] == '\n';
                       }));
      segments = apply(cpts, segments, flag_run(true, &CodepointFlags::is_letter));
      segments = apply(cpts, segments, flag_run(true, &CodepointFlags::is_punctuation));
      segments = apply(cpts, segments, MatchPass([](const Span& s, size_t pos) {
                         return run_length(s, pos, false, [&](size_t p) { return is_cjk_or_hangul(s, p); });
                       }));
      segments = apply(cpts, segments, single_digit);
      break;
    case PreTokenizer::kStarcoder:
      segments = apply(cpts, segments, single_digit);
      segments = apply(cpts, segments, gpt2);
      break;
    case PreTokenizer::kDefault:
      segments = apply(cpts, segments, MatchPass([](const Span& s, size_t pos) {
                         return run_length(s, pos, false,
                                           [&](size_t p) { return is_default_punctuation(s.cpts[p]); });
                       }));
      segments = apply(cpts, segments, gpt2);
      segments = apply(cpts, segments, flag_run(false, &CodepointFlags::is_number));
      segments = apply(cpts, segments, MatchPass([](const Span& s, size_t pos) -> size_t {
                         for (size_t i = 0; i < 3; ++i) {
                           char32_t c = s.cpt(pos + i);
                           if (c < '0' || c > '9') return 0;
                         }
                         return 3;
                       }));
      break;
  }

  std::vector<std::string> words;
  words.reserve(segments.size());
  size_t start = 0;
  for (size_t length : segments) {
    std::string word;
    for (size_t i = start; i < start + length; ++i) utf8_append(word, cpts[i]);
    words.push_back(std::move(word));
    start += length;
  }
  return words;
}

}  // namespace rag::nn
