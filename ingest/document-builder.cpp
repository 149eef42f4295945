#include "ingest/document-builder.h"

#include "common/error.h"
#include "common/text.h"

namespace rag::ingest {

namespace {

constexpr size_t kMaxTitleBytes = 512;

std::string trim_code(std::string_view text) {
  size_t end = text.size();
  while (end > 0 &&
         (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' ' || text[end - 1] == '\t'))
    --end;
  size_t begin = 0;
  while (begin < end && (text[begin] == '\n' || text[begin] == '\r')) ++begin;
  std::string out;
  out.reserve(end - begin);
  for (size_t i = begin; i < end; ++i)
    if (text[i] != '\r') out += text[i];
  return out;
}

}  // namespace

bool DocumentBuilder::add(BlockKind kind, std::string_view text, int level, int page, int table,
                          bool header_row) {
  std::string repaired = utf8_repair(text);
  std::string clean = kind == BlockKind::kCode ? trim_code(repaired) : collapse_whitespace(repaired);
  if (clean.empty()) return false;
  if (kind == BlockKind::kHeading && first_heading_.empty()) first_heading_ = clean;
  if (!doc_.text.empty()) doc_.text += "\n\n";
  Block block;
  block.kind = kind;
  block.level = level;
  block.page = page;
  block.table = kind == BlockKind::kTableRow ? table : -1;
  block.header_row = kind == BlockKind::kTableRow && header_row;
  block.begin = doc_.text.size();
  doc_.text += clean;
  block.end = doc_.text.size();
  block.text = std::move(clean);
  doc_.blocks.push_back(std::move(block));
  return true;
}

ParsedDocument DocumentBuilder::finish(std::string_view title, std::string_view name, bool heading_title) {
  if (doc_.blocks.empty()) fail(Errc::kCorrupt, "{}: no text", name);
  std::string clean = collapse_whitespace(utf8_repair(title));
  if (clean.empty() && heading_title) clean = first_heading_;
  if (clean.empty()) clean = collapse_whitespace(utf8_repair(file_stem(name)));
  if (clean.empty()) clean = std::string(name);
  if (clean.size() > kMaxTitleBytes) {
    // A <title> or heading can be arbitrarily long; titles are shown in lists and citations.
    size_t end = kMaxTitleBytes;
    while (end > 0 && (static_cast<unsigned char>(clean[end]) & 0xC0) == 0x80) --end;
    clean.resize(end);
  }
  doc_.title = std::move(clean);
  return std::move(doc_);
}

std::string file_stem(std::string_view path) {
  size_t slash = path.find_last_of('/');
  std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  size_t dot = base.find_last_of('.');
  if (dot != std::string_view::npos && dot > 0) base = base.substr(0, dot);
  return std::string(base);
}

std::string file_extension(std::string_view path) {
  size_t slash = path.find_last_of('/');
  std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  size_t dot = base.find_last_of('.');
  if (dot == std::string_view::npos || dot == 0) return "";
  return ascii_lower(base.substr(dot));
}

void require_not_empty(std::string_view bytes, std::string_view name) {
  if (bytes.empty()) fail(Errc::kCorrupt, "{}: empty file", name);
}

}  // namespace rag::ingest
