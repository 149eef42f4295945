// Private to ingest/: turning outside bytes into UTF-8, and telling text from binary.
#pragma once

#include <string>
#include <string_view>

namespace rag::ingest {

enum class Encoding { kUtf8, kUtf8Bom, kUtf16Le, kUtf16Be, kCp1252 };

// BOM first (UTF-8, UTF-16 LE/BE), then valid UTF-8, else windows-1252 (a superset of Latin-1 that
// never fails, which is what most legacy Western text is).
Encoding detect_encoding(std::string_view bytes);

// Converts bytes in `encoding` to valid UTF-8, dropping a BOM. Invalid sequences become U+FFFD.
std::string to_utf8(std::string_view bytes, Encoding encoding);

// Shorthand for to_utf8(bytes, detect_encoding(bytes)).
std::string decode_text(std::string_view bytes);

// True when bytes look binary: a NUL byte, or more than 1 in 20 bytes being control characters other
// than tab, new line, carriage return and form feed. UTF-16 input must be decoded first.
bool looks_binary(std::string_view bytes);

// Drops control characters other than tab, new line and form feed (which becomes a new line), and
// normalises CR LF and lone CR to LF. Input and output are UTF-8.
std::string strip_controls(std::string_view text);

}  // namespace rag::ingest
