// Plain text: encoding detected (BOM, UTF-8, else windows-1252), paragraphs split on blank lines.
#include <algorithm>

#include "common/error.h"
#include "ingest/decode.h"
#include "ingest/document-builder.h"
#include "ingest/ingest.h"

namespace rag::ingest {

namespace {

bool blank(std::string_view line) {
  for (char c : line)
    if (c != ' ' && c != '\t') return false;
  return true;
}

}  // namespace

ParsedDocument parse_text(std::string_view bytes, std::string_view name) {
  require_not_empty(bytes, name);
  Encoding encoding = detect_encoding(bytes);
  bool utf16 = encoding == Encoding::kUtf16Le || encoding == Encoding::kUtf16Be;
  if (!utf16 && looks_binary(bytes)) fail(Errc::kCorrupt, "{}: binary content, not text", name);
  std::string decoded = to_utf8(bytes, encoding);
  if (utf16 && looks_binary(decoded)) fail(Errc::kCorrupt, "{}: binary content, not text", name);
  std::string text = strip_controls(decoded);

  DocumentBuilder builder(DocType::kText);
  std::string paragraph;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = std::min(text.find('\n', pos), text.size());
    std::string_view line = std::string_view(text).substr(pos, eol - pos);
    pos = eol + 1;
    if (blank(line)) {
      builder.add(BlockKind::kParagraph, paragraph);
      paragraph.clear();
    } else {
      paragraph.append(line).push_back('\n');
    }
  }
  builder.add(BlockKind::kParagraph, paragraph);
  // Plain text has no headings to take a title from.
  return builder.finish("", name, false);
}

}  // namespace rag::ingest
