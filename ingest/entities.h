// Private to ingest/: HTML character references (used by the HTML and Markdown parsers).
#pragma once

#include <string>
#include <string_view>

namespace rag::ingest {

// Appends `text` to `out` with character references decoded: named ones from a table of the common
// entities (terminated by ';', plus the legacy amp/lt/gt/quot/nbsp without it), decimal "&#8212;" and hex
// "&#x2014;". NUL, surrogates and values above U+10FFFF become U+FFFD; 0x80-0x9F are read as
// windows-1252, as browsers do. Unknown references are kept literally.
void append_decoded(std::string& out, std::string_view text);

std::string decode_entities(std::string_view text);

}  // namespace rag::ingest
