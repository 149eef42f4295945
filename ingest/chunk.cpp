// Structure-aware chunking.
//
// Invariants of every chunk (tests check them):
//  1. Its body is doc.text.substr(begin, end - begin): contiguous, cut only at white space between words or
//     blocks (or, for a single "word" longer than max_bytes, at a UTF-8 character boundary), so chunk text
//     is always valid UTF-8 and never splits a word.
//  2. text == body, except a chunk that starts with a row of a table whose header row is in an earlier
//     chunk: text == header row + "\n\n" + body.
//  3. A heading always starts a chunk; consecutive headings with nothing between them share one, so a
//     heading's own words are searchable together with the text under it. heading_path is the path of
//     headings (by level) in force after the chunk's headings.
//  4. Overlap: a chunk that does not start at a heading or a table row may begin up to overlap_bytes
//     before the previous chunk's end (whole words, within the previous chunk's last block, never when
//     that block is a heading or a table row, never from another page).
//  5. text.size() <= max_bytes, unless a table header row of more than max_bytes / 2 is repeated.
//  6. Pages: a block on another page than the chunk's always starts a new chunk (like a heading), so every
//     byte of a chunk's range comes from blocks of one page and `page` is that page: a PDF hit cites the
//     page its text is on. (A repeated table header row, invariant 2, may come from an earlier page.)
#include <algorithm>
#include <unordered_map>

#include "common/error.h"
#include "ingest/ingest.h"

namespace rag::ingest {

namespace {

constexpr size_t kMinMaxBytes = 8;  // room for any UTF-8 character

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}
bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

struct Piece {
  size_t begin = 0;  // byte range in doc.text
  size_t end = 0;
  const Block* block = nullptr;
};

// Splits [begin, end) of `text` into pieces of at most `limit` bytes: at sentence ends (". ", "! ", "? ",
// new lines) where possible, else at white space, else at a UTF-8 character boundary.
void split_range(const std::string& text, size_t begin, size_t end, size_t limit, const Block* block,
                 std::vector<Piece>& out) {
  size_t start = begin;
  while (start < end) {
    while (start < end && is_space(text[start])) ++start;
    if (start >= end) break;
    if (end - start <= limit) {
      out.push_back({start, end, block});
      break;
    }
    size_t window_end = start + limit;  // exclusive; the piece must end at or before it
    size_t cut = 0;
    // A sentence end: punctuation (maybe followed by a closing quote or bracket) then white space.
    for (size_t i = window_end; i > start + 1 && cut == 0; --i) {
      if (i >= end || !is_space(text[i])) continue;
      if (text[i] == '\n') {
        cut = i;
        break;
      }
      size_t j = i - 1;
      while (j > start && (text[j] == '"' || text[j] == '\'' || text[j] == ')' || text[j] == ']')) --j;
      if (text[j] == '.' || text[j] == '!' || text[j] == '?') cut = i;
    }
    if (cut == 0)
      for (size_t i = window_end; i > start && cut == 0; --i)
        if (i < end && is_space(text[i])) cut = i;
    if (cut == 0) {
      cut = window_end;
      while (cut > start && is_continuation(text[cut])) --cut;
      if (cut == start) cut = window_end;  // cannot happen with limit >= 4 on valid UTF-8
    }
    size_t piece_end = cut;
    while (piece_end > start && is_space(text[piece_end - 1])) --piece_end;
    out.push_back({start, piece_end, block});
    start = cut;
  }
}

class Chunker {
 public:
  static constexpr size_t kNoOverlap = static_cast<size_t>(-1);

  Chunker(const ParsedDocument& doc, const ChunkOptions& options) : doc_(doc), options_(options) {
    if (options_.max_bytes < kMinMaxBytes)
      fail(Errc::kInvalidArgument, "chunk max_bytes is {}; it must be at least {}", options_.max_bytes,
           kMinMaxBytes);
    options_.target_bytes = std::clamp<size_t>(options_.target_bytes, 1, options_.max_bytes);
    options_.overlap_bytes = std::min(options_.overlap_bytes, options_.max_bytes / 2);
    for (const Block& block : doc.blocks)
      if (block.kind == BlockKind::kTableRow && block.header_row)
        table_headers_.try_emplace(block.table, &block);
  }

  std::vector<Chunk> run() {
    for (const Block& block : doc_.blocks) {
      RAG_ASSERT(block.begin <= block.end && block.end <= doc_.text.size());
      if (block.kind == BlockKind::kHeading) update_headings(block);
      std::vector<Piece> pieces;
      split_range(doc_.text, block.begin, block.end, piece_limit(block), &block, pieces);
      for (const Piece& piece : pieces) add(piece);
    }
    emit();
    return std::move(chunks_);
  }

 private:
  const Block* header_for(const Block& row) const {
    if (row.kind != BlockKind::kTableRow || row.header_row) return nullptr;
    auto it = table_headers_.find(row.table);
    return it == table_headers_.end() || it->second->begin > row.begin ? nullptr : it->second;
  }

  size_t piece_limit(const Block& block) const {
    const Block* header = header_for(block);
    if (header && header->text.size() + 2 <= options_.max_bytes / 2)
      return options_.max_bytes - header->text.size() - 2;
    return options_.max_bytes;
  }

  void update_headings(const Block& heading) {
    while (!headings_.empty() && headings_.back().first >= heading.level) headings_.pop_back();
    headings_.emplace_back(heading.level, heading.text);
  }

  std::string heading_path() const {
    std::string path;
    for (const auto& [level, text] : headings_) {
      if (!path.empty()) path += " > ";
      path += text;
    }
    return path;
  }

  size_t size_with(const Piece& piece) const {
    return (prefix_.empty() ? 0 : prefix_.size() + 2) + (piece.end - begin_);
  }

  void add(const Piece& piece) {
    if (!open_) {
      start(piece, kNoOverlap);
      return;
    }
    bool heading = piece.block->kind == BlockKind::kHeading;
    bool same_page = piece.block->page == page_;
    bool fits = has_body_ ? !heading && size_with(piece) <= options_.target_bytes
                          : size_with(piece) <= options_.max_bytes;
    if (same_page && fits) {
      extend(piece);
      return;
    }
    emit();
    start(piece, heading ? kNoOverlap : overlap_begin(piece));
  }

  void extend(const Piece& piece) {
    end_ = piece.end;
    last_ = piece;
    if (piece.block->kind == BlockKind::kHeading)
      heading_path_ = heading_path();
    else
      has_body_ = true;
  }

  // Where a chunk starting with `piece` begins when it carries words over from the previous chunk's end;
  // kNoOverlap when it carries nothing.
  size_t overlap_begin(const Piece& piece) const {
    if (options_.overlap_bytes == 0 || !last_.block) return kNoOverlap;
    BlockKind kind = last_.block->kind;
    if (kind == BlockKind::kHeading || kind == BlockKind::kTableRow) return kNoOverlap;
    if (piece.block->kind == BlockKind::kTableRow) return kNoOverlap;
    if (last_.block->page != piece.block->page) return kNoOverlap;
    size_t low =
        std::max(last_.begin, last_.end > options_.overlap_bytes ? last_.end - options_.overlap_bytes : 0);
    if (piece.end > options_.max_bytes) low = std::max(low, piece.end - options_.max_bytes);
    for (size_t i = low; i < last_.end; ++i)
      if (!is_space(doc_.text[i]) && (i == last_.begin || is_space(doc_.text[i - 1]))) return i;
    return kNoOverlap;
  }

  void start(const Piece& piece, size_t overlap_from) {
    open_ = true;
    has_body_ = false;
    prefix_.clear();
    if (const Block* header = header_for(*piece.block)) prefix_ = header->text;
    bool overlap = overlap_from != kNoOverlap;
    begin_ = overlap ? overlap_from : piece.begin;
    page_ = piece.block->page;  // an overlap never crosses a page, so the carried words share it
    heading_path_ = heading_path();
    extend(piece);
  }

  void emit() {
    if (!open_) return;
    Chunk chunk;
    chunk.ordinal = static_cast<int>(chunks_.size());
    if (!prefix_.empty()) chunk.text = prefix_ + "\n\n";
    chunk.text.append(doc_.text, begin_, end_ - begin_);
    chunk.heading_path = heading_path_;
    chunk.page = page_;
    chunk.begin = begin_;
    chunk.end = end_;
    chunks_.push_back(std::move(chunk));
    open_ = false;
  }

  const ParsedDocument& doc_;
  ChunkOptions options_;
  std::unordered_map<int, const Block*> table_headers_;  // table index → its first header row
  std::vector<std::pair<int, std::string>> headings_;    // (level, text) from outermost to innermost
  std::vector<Chunk> chunks_;
  // The chunk being built.
  bool open_ = false;
  bool has_body_ = false;  // holds something other than headings
  size_t begin_ = 0, end_ = 0;
  int page_ = 0;
  std::string prefix_;  // repeated table header row, or empty
  std::string heading_path_;
  Piece last_;  // the last piece added
};

}  // namespace

std::vector<Chunk> chunk_document(const ParsedDocument& doc, const ChunkOptions& options) {
  return Chunker(doc, options).run();
}

}  // namespace rag::ingest
