// Markdown (CommonMark with GFM tables), line by line. Not a full CommonMark implementation: it keeps
// the structure that matters for retrieval (headings, paragraphs, list nesting, code, tables) and falls
// back to paragraph text for anything unusual, so nothing a document says is lost.
#include <algorithm>
#include <vector>

#include "common/error.h"
#include "common/text.h"
#include "ingest/decode.h"
#include "ingest/document-builder.h"
#include "ingest/ingest.h"
#include "ingest/markdown-inline.h"

namespace rag::ingest {

namespace {

constexpr size_t kMaxFrontMatterLines = 200;
constexpr int kMaxListDepth = 32;

struct Line {
  int indent = 0;            // columns of leading white space, tabs to the next multiple of 4
  std::string_view content;  // after the leading white space
  bool blank() const { return content.empty(); }
};

Line split_line(std::string_view raw) {
  Line line;
  size_t i = 0;
  while (i < raw.size() && (raw[i] == ' ' || raw[i] == '\t')) {
    line.indent = raw[i] == '\t' ? (line.indent / 4 + 1) * 4 : line.indent + 1;
    ++i;
  }
  std::string_view content = raw.substr(i);
  while (!content.empty() && (content.back() == ' ' || content.back() == '\t')) content.remove_suffix(1);
  line.content = content;
  return line;
}

// Removes up to `columns` of leading indentation from a raw line (for code block content).
std::string_view dedent(std::string_view raw, int columns) {
  int col = 0;
  size_t i = 0;
  while (i < raw.size() && col < columns && (raw[i] == ' ' || raw[i] == '\t')) {
    col = raw[i] == '\t' ? (col / 4 + 1) * 4 : col + 1;
    ++i;
  }
  return raw.substr(i);
}

bool all_of_char(std::string_view s, char c, size_t min_count) {
  size_t count = 0;
  for (char ch : s) {
    if (ch == c)
      ++count;
    else if (ch != ' ' && ch != '\t')
      return false;
  }
  return count >= min_count;
}

bool thematic_break(const Line& line) {
  return line.indent <= 3 && (all_of_char(line.content, '-', 3) || all_of_char(line.content, '*', 3) ||
                              all_of_char(line.content, '_', 3));
}

// Returns the heading level (1-6) and sets `text`, or 0 when the line is not an ATX heading.
int atx_heading(const Line& line, std::string_view& text) {
  if (line.indent > 3) return 0;
  size_t n = 0;
  while (n < line.content.size() && line.content[n] == '#') ++n;
  if (n == 0 || n > 6) return 0;
  if (n < line.content.size() && line.content[n] != ' ' && line.content[n] != '\t') return 0;
  std::string_view rest = line.content.substr(n);
  // A closing sequence of '#' is dropped when preceded by a space (or when it is all there is).
  size_t end = rest.size();
  while (end > 0 && rest[end - 1] == '#') --end;
  if (end == 0 || rest[end - 1] == ' ' || rest[end - 1] == '\t') rest = rest.substr(0, end);
  text = rest;
  return static_cast<int>(n);
}

// A list marker: "-", "*", "+" or "1." / "1)" followed by white space or the end of the line.
bool list_marker(const Line& line, std::string_view& text) {
  std::string_view s = line.content;
  size_t n = 0;
  if (!s.empty() && (s[0] == '-' || s[0] == '*' || s[0] == '+')) {
    n = 1;
  } else {
    while (n < s.size() && n < 9 && s[n] >= '0' && s[n] <= '9') ++n;
    if (n == 0 || n >= s.size() || (s[n] != '.' && s[n] != ')')) return false;
    ++n;
  }
  if (n < s.size() && s[n] != ' ' && s[n] != '\t') return false;
  std::string_view rest = s.substr(n);
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  // Task list boxes are markup, not content.
  if (rest.starts_with("[ ] ") || rest.starts_with("[x] ") || rest.starts_with("[X] ")) rest.remove_prefix(4);
  text = rest;
  return true;
}

std::string_view fence(const Line& line) {
  if (line.indent > 3 || line.content.size() < 3) return {};
  char c = line.content[0];
  if (c != '`' && c != '~') return {};
  size_t n = 0;
  while (n < line.content.size() && line.content[n] == c) ++n;
  if (n < 3) return {};
  // A backtick fence's info string may not contain backticks.
  if (c == '`' && line.content.find('`', n) != std::string_view::npos) return {};
  return line.content.substr(0, n);
}

std::vector<std::string_view> split_cells(std::string_view row) {
  if (row.starts_with("|")) row.remove_prefix(1);
  if (row.ends_with("|") && !row.ends_with("\\|")) row.remove_suffix(1);
  std::vector<std::string_view> cells;
  size_t start = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    if (row[i] == '\\') {
      ++i;
    } else if (row[i] == '|') {
      cells.push_back(row.substr(start, i - start));
      start = i + 1;
    }
  }
  cells.push_back(row.substr(start));
  return cells;
}

bool table_separator(const Line& line) {
  if (line.indent > 3 || line.content.find('-') == std::string_view::npos) return false;
  bool pipe = line.content.find('|') != std::string_view::npos;
  auto cells = split_cells(line.content);
  if (!pipe && cells.size() < 2) return false;
  for (std::string_view cell : cells) {
    size_t b = 0, e = cell.size();
    while (b < e && cell[b] == ' ') ++b;
    while (e > b && cell[e - 1] == ' ') --e;
    cell = cell.substr(b, e - b);
    if (cell.starts_with(":")) cell.remove_prefix(1);
    if (cell.ends_with(":")) cell.remove_suffix(1);
    if (cell.empty()) return false;
    for (char c : cell)
      if (c != '-') return false;
  }
  return true;
}

std::string table_row(std::string_view content) {
  std::string row;
  bool first = true;
  for (std::string_view cell : split_cells(content)) {
    // "\|" inside a cell is a literal pipe.
    std::string unescaped;
    for (size_t i = 0; i < cell.size(); ++i) {
      if (cell[i] == '\\' && i + 1 < cell.size() && cell[i + 1] == '|') continue;
      unescaped += cell[i];
    }
    if (!first) row += " | ";
    first = false;
    row += collapse_whitespace(strip_inline(unescaped));
  }
  return row;
}

class MarkdownParser {
 public:
  MarkdownParser(std::string_view text, std::string_view name) : name_(name) {
    size_t pos = 0;
    while (pos <= text.size()) {
      size_t eol = std::min(text.find('\n', pos), text.size());
      lines_.push_back(text.substr(pos, eol - pos));
      pos = eol + 1;
    }
  }

  ParsedDocument parse() {
    size_t i = front_matter();
    while (i < lines_.size()) i = line(i);
    flush();
    return builder_.finish(title_, name_);
  }

 private:
  size_t front_matter() {
    if (lines_.empty() || split_line(lines_[0]).content != "---" || split_line(lines_[0]).indent != 0)
      return 0;
    for (size_t i = 1; i < lines_.size() && i <= kMaxFrontMatterLines; ++i) {
      Line line = split_line(lines_[i]);
      if (line.indent == 0 && (line.content == "---" || line.content == "...")) {
        for (size_t j = 1; j < i; ++j) {
          std::string_view l = lines_[j];
          if (!l.starts_with("title:")) continue;
          std::string_view value = split_line(l.substr(6)).content;
          if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
              value.back() == value.front())
            value = value.substr(1, value.size() - 2);
          title_ = std::string(value);
        }
        return i + 1;
      }
    }
    return 0;  // no closing line: an ordinary thematic break
  }

  void flush_paragraph() {
    if (paragraph_.empty()) return;
    builder_.add(BlockKind::kParagraph, strip_inline(paragraph_));
    paragraph_.clear();
  }

  void flush_item() {
    if (!item_open_) return;
    builder_.add(BlockKind::kListItem, strip_inline(item_), item_level_);
    item_.clear();
    item_open_ = false;
  }

  void flush() {
    flush_paragraph();
    flush_item();
  }

  void end_list() {
    flush_item();
    list_indents_.clear();
  }

  size_t line(size_t i) {
    Line line = split_line(lines_[i]);
    if (line.blank()) {
      flush();
      previous_blank_ = true;
      return i + 1;
    }
    bool was_blank = previous_blank_;
    previous_blank_ = false;

    if (std::string_view open = fence(line); !open.empty()) return fenced_code(i, line, open);
    if (line.indent >= 4 && paragraph_.empty() && !item_open_ && list_indents_.empty())
      return indented_code(i);

    std::string_view text;
    if (int level = atx_heading(line, text)) {
      flush();
      end_list();
      builder_.add(BlockKind::kHeading, strip_inline(text), level);
      return i + 1;
    }
    if (!paragraph_.empty() && line.indent <= 3 &&
        (all_of_char(line.content, '=', 1) || all_of_char(line.content, '-', 1)) &&
        line.content.find(' ') == std::string_view::npos) {
      int level = line.content[0] == '=' ? 1 : 2;
      builder_.add(BlockKind::kHeading, strip_inline(paragraph_), level);
      paragraph_.clear();
      return i + 1;
    }
    if (thematic_break(line)) {
      flush();
      end_list();
      return i + 1;
    }
    if (line.content.find('|') != std::string_view::npos && i + 1 < lines_.size() &&
        table_separator(split_line(lines_[i + 1])))
      return table(i, line);
    if (list_marker(line, text)) {
      flush();
      while (!list_indents_.empty() && list_indents_.back() > line.indent) list_indents_.pop_back();
      if ((list_indents_.empty() || list_indents_.back() < line.indent) &&
          static_cast<int>(list_indents_.size()) < kMaxListDepth)
        list_indents_.push_back(line.indent);
      item_open_ = true;
      item_level_ = static_cast<int>(list_indents_.size());
      item_ = std::string(text);
      return i + 1;
    }
    std::string_view content = line.content;
    if (content.starts_with(">")) {
      // Block quotes are read as their content.
      while (content.starts_with(">")) {
        content.remove_prefix(1);
        while (content.starts_with(" ")) content.remove_prefix(1);
      }
      flush_item();
      if (content.empty()) {
        flush_paragraph();
        return i + 1;
      }
    }
    if (paragraph_.empty() && !item_open_ && reference_definition(content)) return i + 1;
    if (item_open_ && !was_blank) {
      item_ += '\n';
      item_ += content;
      return i + 1;
    }
    if (!list_indents_.empty()) {
      if (line.indent >= 2 && was_blank) {
        // A further paragraph of the last item: keep it at the item's depth.
        item_open_ = true;
        item_ = std::string(content);
        return i + 1;
      }
      if (was_blank) end_list();
    }
    if (!paragraph_.empty()) paragraph_ += '\n';
    paragraph_ += content;
    return i + 1;
  }

  static bool reference_definition(std::string_view content) {
    if (!content.starts_with("[") || content.starts_with("[^")) return false;
    size_t close = content.find("]:");
    return close != std::string_view::npos && close > 1 &&
           content.substr(1, close - 1).find(']') == std::string_view::npos;
  }

  size_t fenced_code(size_t i, const Line& open_line, std::string_view open) {
    flush();
    std::string code;
    size_t j = i + 1;
    for (; j < lines_.size(); ++j) {
      Line line = split_line(lines_[j]);
      if (line.indent <= 3 && line.content.size() >= open.size() && line.content[0] == open[0] &&
          all_of_char(line.content, open[0], open.size()))
        break;
      code.append(dedent(lines_[j], open_line.indent));
      code += '\n';
    }
    builder_.add(BlockKind::kCode, code, 0);
    return j < lines_.size() ? j + 1 : j;
  }

  size_t indented_code(size_t i) {
    flush();
    std::string code;
    size_t j = i;
    size_t last_code = i;
    for (; j < lines_.size(); ++j) {
      Line line = split_line(lines_[j]);
      if (!line.blank() && line.indent < 4) break;
      if (!line.blank()) last_code = j;
    }
    for (size_t k = i; k <= last_code; ++k) {
      code.append(dedent(lines_[k], 4));
      code += '\n';
    }
    builder_.add(BlockKind::kCode, code, 0);
    return last_code + 1;
  }

  size_t table(size_t i, const Line& header) {
    flush();
    end_list();
    int table = builder_.next_table();
    builder_.add(BlockKind::kTableRow, table_row(header.content), 0, 0, table, true);
    size_t j = i + 2;  // the separator row carries no content
    for (; j < lines_.size(); ++j) {
      Line line = split_line(lines_[j]);
      if (line.blank() || line.content.find('|') == std::string_view::npos) break;
      std::string_view text;
      if (atx_heading(line, text) || fence(line).size()) break;
      builder_.add(BlockKind::kTableRow, table_row(line.content), 0, 0, table, false);
    }
    return j;
  }

  std::string_view name_;
  std::vector<std::string_view> lines_;
  DocumentBuilder builder_{DocType::kMarkdown};
  std::string title_;
  std::string paragraph_;
  std::string item_;
  bool item_open_ = false;
  int item_level_ = 0;
  std::vector<int> list_indents_;  // marker indentation of each open list level
  bool previous_blank_ = true;
};

}  // namespace

ParsedDocument parse_markdown(std::string_view bytes, std::string_view name) {
  require_not_empty(bytes, name);
  Encoding encoding = detect_encoding(bytes);
  bool utf16 = encoding == Encoding::kUtf16Le || encoding == Encoding::kUtf16Be;
  if (!utf16 && looks_binary(bytes)) fail(Errc::kCorrupt, "{}: binary content, not Markdown", name);
  std::string text = strip_controls(to_utf8(bytes, encoding));
  return MarkdownParser(text, name).parse();
}

}  // namespace rag::ingest
