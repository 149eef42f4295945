// UTF-8 and text helpers shared by parsers, chunking and tokenizers. All strings in the project are
// UTF-8; anything that comes from outside is validated or repaired here before it is passed on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace rag {

constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes one code point at text[pos]; advances pos by its length. An invalid or truncated sequence
// (overlong, surrogate, > U+10FFFF) yields kReplacementChar and advances by one byte.
char32_t utf8_next(std::string_view text, size_t& pos);

void utf8_append(std::string& out, char32_t cp);

bool utf8_valid(std::string_view text);

// Valid UTF-8 with each invalid byte replaced by U+FFFD. Valid input is returned unchanged.
std::string utf8_repair(std::string_view text);

// Converts single-byte encodings to UTF-8. windows-1252 is the superset browsers use for "latin1".
std::string latin1_to_utf8(std::string_view text);
std::string cp1252_to_utf8(std::string_view text);

// Collapses runs of white space (ASCII and U+00A0) into one space and trims both ends.
std::string collapse_whitespace(std::string_view text);

std::string ascii_lower(std::string_view text);

}  // namespace rag
