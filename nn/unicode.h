// Code point properties for the tokenizers (private to nn/): general-category class, white space, lower
// case and the first code point of the NFD decomposition. The tables in unicode-tables.cpp are generated
// by nn/gen-unicode-tables.py and follow llama.cpp's unicode-data so that pre-tokenization matches it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rag::nn {

// One general-category class per code point (kCategoryMask), plus derived bits. Code points outside the
// Unicode range have no bits at all, which the splitters use as "past the end of the segment".
struct CodepointFlags {
  enum : uint16_t {
    kNumber = 0x02,       // \p{N}
    kLetter = 0x04,       // \p{L}
    kSeparator = 0x08,    // \p{Z}
    kAccentMark = 0x10,   // \p{M}
    kPunctuation = 0x20,  // \p{P}
    kSymbol = 0x40,       // \p{S}
    kControl = 0x80,      // \p{C}, including unassigned code points
    kCategoryMask = 0xFF,
    kWhitespace = 0x100,  // Unicode White_Space, what \s matches
  };
  uint16_t bits = 0;

  bool is_number() const { return bits & kNumber; }
  bool is_letter() const { return bits & kLetter; }
  bool is_accent_mark() const { return bits & kAccentMark; }
  bool is_punctuation() const { return bits & kPunctuation; }
  bool is_symbol() const { return bits & kSymbol; }
  bool is_control() const { return bits & kControl; }
  bool is_whitespace() const { return bits & kWhitespace; }
  bool defined() const { return bits != 0; }
};

CodepointFlags codepoint_flags(char32_t cp);
char32_t to_lower(char32_t cp);   // first code point of the lower-case mapping; cp itself when none
char32_t nfd_first(char32_t cp);  // first code point of the NFD decomposition (the base letter)

// Decodes valid UTF-8 (callers repair input first with rag::utf8_repair).
std::vector<char32_t> utf8_to_codepoints(std::string_view text);

// GPT-2's reversible byte-to-character map: printable bytes stand for themselves, the rest map to
// U+0100 and up. byte_to_unicode(b) is the UTF-8 of that character; unicode_to_byte inverts it and
// returns -1 for a character that is not in the map.
const std::string& byte_to_unicode(uint8_t byte);
int unicode_to_byte(char32_t cp);

namespace unicode_tables {
struct FlagRange {
  char32_t first;  // the range runs to the next entry's first - 1
  uint16_t flags;
};
struct CodepointPair {
  char32_t from, to;
};
struct NfdRange {
  char32_t first, last, nfd;
};
extern const FlagRange kFlagRanges[];
extern const size_t kFlagRangeCount;
extern const char32_t kWhitespace[];
extern const size_t kWhitespaceCount;
extern const CodepointPair kLowercase[];  // sorted by `from`
extern const size_t kLowercaseCount;
extern const NfdRange kNfdRanges[];  // sorted, disjoint
extern const size_t kNfdRangeCount;
}  // namespace unicode_tables

}  // namespace rag::nn
