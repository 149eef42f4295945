// Ingest: turns files into structured text and chunks. Knows nothing of the catalog or indexes.
//
//   walk(roots) ──FileEntry──▶ parse_file() ──ParsedDocument──▶ chunk_document() ──Chunk──▶ (index stage)
//
// Document bytes are hostile (DESIGN.md "Trust boundaries"): every parser bounds its work, PDF text is
// extracted in a child process with hard memory, CPU and wall-clock limits, and every failure is an
// rag::Error whose message names the file and says what is wrong, never a crash of the caller.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace rag::ingest {

enum class DocType { kUnknown, kText, kMarkdown, kHtml, kPdf };

std::string_view doc_type_name(DocType type);  // "text", "markdown", "html", "pdf", "unknown"

// Content first (magic bytes: %PDF-, <!doctype html / <html, NUL bytes mean binary), extension second.
// `head` is the first few KiB of the file. Returns kUnknown for binary content of no known type.
DocType detect_type(std::string_view head, std::string_view path);

// ---- walk -------------------------------------------------------------------------------------------

struct FileEntry {
  std::string path;               // as reached from the root (root joined with relative parts)
  int64_t size = 0;               // bytes
  int64_t mtime_ns = 0;           // modification time, nanoseconds since the epoch
  std::vector<std::string> acl;   // principals from the nearest .ragacl ("user:ann", "group:eng"); empty = none
  std::string error;              // non-empty when the entry could not be examined (unreadable, vanished)
};

struct WalkOptions {
  bool follow_symlinks = true;    // followed with loop detection (device, inode of every directory on the path)
};

// Recursively lists regular files under each root (a root may itself be a file), sorted by path, skipping
// hidden files and folders (names starting with '.'). Problems with single entries (permission denied,
// vanished, symlink loop) become entries with `error` set; only an unreadable root throws.
std::vector<FileEntry> walk(const std::vector<std::string>& roots, const WalkOptions& options = {});

// ---- parse ------------------------------------------------------------------------------------------

enum class BlockKind { kHeading, kParagraph, kListItem, kCode, kTableRow };

// One structural unit of a document, in reading order.
struct Block {
  BlockKind kind = BlockKind::kParagraph;
  std::string text;         // UTF-8; white space collapsed except in kCode; table cells joined by " | "
  int level = 0;            // kHeading: 1..6; kListItem: nesting depth from 1
  int page = 0;             // 1-based page (PDF); 0 where the format has no pages
  int table = -1;           // kTableRow: index of its table within the document; rows of a table share it
  bool header_row = false;  // kTableRow: this row is its table's header
  size_t begin = 0;         // byte range of `text` within ParsedDocument::text
  size_t end = 0;
};

struct ParsedDocument {
  DocType type = DocType::kUnknown;
  std::string title;        // metadata title, else the first heading, else the file name without extension
  std::string text;         // all block texts joined by "\n\n": what byte ranges refer to
  std::vector<Block> blocks;
  int page_count = 0;       // PDF pages; 0 for formats without pages
};

struct ParseOptions {
  int64_t max_file_bytes = 100ll << 20;     // larger files fail with Errc::kLimit before being read
  double pdf_time_limit_s = 30;             // wall clock for one PDF's extraction (child is killed after)
  // RLIMIT_AS of the extraction child, counted on top of the address space it inherits from the small
  // single-threaded worker process that forks it (not from the caller, which may map gigabytes of model).
  // Not applied in ASan builds.
  int64_t pdf_memory_limit_bytes = 1ll << 30;
};

// Reads, detects and parses one file. Throws rag::Error: kIo (unreadable), kLimit (too large, too slow),
// kCorrupt (broken PDF, binary junk), kUnsupported (encrypted PDF, unknown type). Empty files are kCorrupt
// ("empty file"); a document that yields no text at all is kCorrupt ("no text").
ParsedDocument parse_file(const std::string& path, const ParseOptions& options = {});

// Parses bytes already in memory (no PDF: that needs the child process and a file). `name` is used in
// error messages and as the fallback title.
ParsedDocument parse_text(std::string_view bytes, std::string_view name);
ParsedDocument parse_markdown(std::string_view bytes, std::string_view name);
ParsedDocument parse_html(std::string_view bytes, std::string_view name);
ParsedDocument parse_pdf(const std::string& path, const ParseOptions& options = {});

// ---- chunk ------------------------------------------------------------------------------------------

struct Chunk {
  int ordinal = 0;           // 0-based position within the document
  std::string text;          // indexed and shown text; a table chunk starts with its table's header row
  std::string heading_path;  // enclosing headings joined by " > ", e.g. "Install > Linux"; may be empty
  int page = 0;              // page of the chunk's first block (PDF), else 0
  size_t begin = 0;          // byte range in ParsedDocument::text that this chunk covers
  size_t end = 0;
};

struct ChunkOptions {
  size_t target_bytes = 1000;   // pack blocks up to about this size
  size_t max_bytes = 2000;      // hard cap; a longer block is split at a sentence or word boundary
  size_t overlap_bytes = 150;   // text carried from the end of one chunk into the next (whole words)
};

// Splits on headings (a new heading always starts a new chunk) and packs paragraphs, list items and
// table rows to the target size; never splits inside a word or a table row.
std::vector<Chunk> chunk_document(const ParsedDocument& doc, const ChunkOptions& options = {});

}  // namespace rag::ingest
