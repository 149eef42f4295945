// Private to ingest/: Markdown inline markup to plain text.
#pragma once

#include <string>
#include <string_view>

namespace rag::ingest {

// Strips inline markup, keeping what a reader sees: emphasis and strike-through markers dropped, links
// keep their text, images their alt text, code spans their content, autolinks their address, raw HTML
// tags dropped, backslash escapes and character references resolved. Linear in the input.
std::string strip_inline(std::string_view text);

}  // namespace rag::ingest
