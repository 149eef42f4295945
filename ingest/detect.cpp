// File type detection: content first, extension second. Content wins because names lie (an HTML page
// saved as .txt, a PDF without extension), but only content with an unambiguous signature is trusted;
// Markdown has none, so it is known by its extension alone.
#include <algorithm>

#include "common/text.h"
#include "ingest/decode.h"
#include "ingest/document-builder.h"
#include "ingest/ingest.h"

namespace rag::ingest {

namespace {

constexpr size_t kSniffBytes = 1024;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

bool looks_like_html(std::string_view head) {
  std::string lower = ascii_lower(head.substr(0, std::min(head.size(), kSniffBytes)));
  std::string_view text = lower;
  // Leading comments are common in generated pages; skip them before looking for the first tag.
  for (;;) {
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    if (text.substr(0, 4) != "<!--") break;
    size_t end = text.find("-->");
    if (end == std::string_view::npos) return false;
    text.remove_prefix(end + 3);
  }
  for (std::string_view tag : {"<!doctype html", "<html", "<head", "<body"}) {
    if (text.substr(0, tag.size()) != tag) continue;
    if (text.size() == tag.size()) return true;
    char next = text[tag.size()];
    if (is_space(next) || next == '>' || next == '/') return true;
  }
  return false;
}

// The head may end inside a multi-byte character; that alone must not make it invalid UTF-8.
bool valid_utf8_prefix(std::string_view head) {
  size_t lead = head.size();
  while (lead > 0 && head.size() - lead < 3 && (static_cast<unsigned char>(head[lead - 1]) & 0xC0) == 0x80)
    --lead;
  if (lead > 0) {
    auto b = static_cast<unsigned char>(head[lead - 1]);
    size_t length = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    if (length > head.size() - (lead - 1)) head = head.substr(0, lead - 1);
  }
  return utf8_valid(head);
}

}  // namespace

std::string_view doc_type_name(DocType type) {
  switch (type) {
    case DocType::kText:
      return "text";
    case DocType::kMarkdown:
      return "markdown";
    case DocType::kHtml:
      return "html";
    case DocType::kPdf:
      return "pdf";
    case DocType::kUnknown:
      break;
  }
  return "unknown";
}

DocType detect_type(std::string_view head, std::string_view path) {
  // PDF readers accept the header anywhere in the first KiB; so do we.
  if (head.substr(0, kSniffBytes).find("%PDF-") != std::string_view::npos) return DocType::kPdf;

  std::string ext = file_extension(path);
  // A file named .pdf without the header is still meant as a PDF; poppler will say it is broken.
  if (ext == ".pdf") return DocType::kPdf;
  Encoding encoding = detect_encoding(head);
  std::string text;
  if (encoding == Encoding::kUtf16Le || encoding == Encoding::kUtf16Be) {
    text = to_utf8(head, encoding);
  } else {
    if (looks_binary(head)) return DocType::kUnknown;
    if (encoding == Encoding::kUtf8Bom) head.remove_prefix(3);
    text = std::string(head);
  }
  if (looks_binary(text)) return DocType::kUnknown;
  if (looks_like_html(text)) return DocType::kHtml;

  if (ext == ".md" || ext == ".markdown") return DocType::kMarkdown;
  if (ext == ".html" || ext == ".htm" || ext == ".xhtml") return DocType::kHtml;
  if (ext == ".txt" || ext == ".text") return DocType::kText;
  // An unknown extension is text only when it is clean UTF-8: high bytes in an unknown format are more
  // likely a binary format without NULs than a legacy-encoded text file.
  if (encoding != Encoding::kCp1252 || valid_utf8_prefix(head)) return DocType::kText;
  return DocType::kUnknown;
}

}  // namespace rag::ingest
