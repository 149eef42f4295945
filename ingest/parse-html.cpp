// HTML: a small, bounded tokenizer and tree walk of our own (no HTML library). It does not build a DOM;
// it keeps a stack of open elements (at most kMaxDepth deep, deeper ones are read as text of their
// ancestor) and turns the text between tags into blocks by the innermost element that gives it a role:
//
//   h1-h6 → kHeading    li → kListItem (level: open ul/ol)    pre → kCode    tr → kTableRow
//   anything else → kParagraph
//
// Contents of script, style, noscript, template, nav, header, footer, aside, svg, iframe, form (and
// select, button, object) are dropped: they are page furniture, not the document. Everything else
// block-level (p, div, section, …) ends the current block; <br> is a line break within it. Each byte is
// looked at a bounded number of times: unterminated tags, comments and raw text end the document
// instead of being rescanned.
#include <algorithm>
#include <array>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "common/text.h"
#include "ingest/decode.h"
#include "ingest/document-builder.h"
#include "ingest/entities.h"
#include "ingest/ingest.h"

namespace rag::ingest {

namespace {

constexpr size_t kMaxDepth = 256;
constexpr size_t kCharsetSniffBytes = 4096;
constexpr size_t kMaxTagNameLength = 32;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

template <size_t N>
bool one_of(std::string_view name, const std::array<std::string_view, N>& names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

constexpr std::array<std::string_view, 14> kDropped = {"script", "style",  "noscript", "template", "nav",
                                                       "header", "footer", "aside",    "svg",      "iframe",
                                                       "form",   "select", "button",   "object"};
constexpr std::array<std::string_view, 14> kVoid = {"area",  "base",   "br",    "col",  "embed",
                                                    "hr",    "img",    "input", "link", "meta",
                                                    "param", "source", "track", "wbr"};
// Elements whose start or end breaks the flow of text into a new block.
constexpr std::array<std::string_view, 36> kBlock = {
    "address", "article", "blockquote", "body",       "caption", "dd", "details", "dialog", "div",
    "dl",      "dt",      "fieldset",   "figcaption", "figure",  "h1", "h2",      "h3",     "h4",
    "h5",      "h6",      "hr",         "li",         "main",    "ol", "p",       "pre",    "section",
    "summary", "table",   "tbody",      "td",         "tfoot",   "th", "thead",   "tr",     "ul"};
// Raw text elements: their content is not markup.
constexpr std::array<std::string_view, 5> kRawText = {"script", "style", "textarea", "title", "xmp"};

int heading_level(std::string_view name) {
  if (name.size() == 2 && name[0] == 'h' && name[1] >= '1' && name[1] <= '6') return name[1] - '0';
  return 0;
}

// The charset declared by a <meta> in the first KiBs, lower case, "" when none.
std::string declared_charset(std::string_view bytes) {
  std::string head = ascii_lower(bytes.substr(0, std::min(bytes.size(), kCharsetSniffBytes)));
  size_t pos = 0;
  while ((pos = head.find("<meta", pos)) != std::string::npos) {
    size_t end = head.find('>', pos);
    if (end == std::string::npos) break;
    std::string_view tag = std::string_view(head).substr(pos, end - pos);
    pos = end;
    size_t at = tag.find("charset");
    if (at == std::string_view::npos) continue;
    at += 7;
    while (at < tag.size() && is_space(tag[at])) ++at;
    if (at >= tag.size() || tag[at] != '=') continue;
    ++at;
    while (at < tag.size() && (is_space(tag[at]) || tag[at] == '"' || tag[at] == '\'')) ++at;
    size_t stop = at;
    while (stop < tag.size() && !is_space(tag[stop]) && tag[stop] != '"' && tag[stop] != '\'' &&
           tag[stop] != ';' && tag[stop] != '/')
      ++stop;
    if (stop > at) return std::string(tag.substr(at, stop - at));
  }
  return "";
}

std::string decode_html_bytes(std::string_view bytes, std::string_view name) {
  Encoding bom = detect_encoding(bytes);
  if (bom == Encoding::kUtf8Bom || bom == Encoding::kUtf16Le || bom == Encoding::kUtf16Be)
    return to_utf8(bytes, bom);
  std::string charset = declared_charset(bytes);
  if (charset.empty()) return to_utf8(bytes, bom);
  if (charset == "utf-8" || charset == "utf8") return utf8_repair(bytes);
  // Browsers read all of these as windows-1252, which agrees with Latin-1 outside 0x80-0x9F.
  for (std::string_view single : {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "windows-1252",
                                  "cp1252", "us-ascii", "ascii", "iso-8859-15", "x-cp1252"})
    if (charset == single) return cp1252_to_utf8(bytes);
  // The name comes from the document: log a bounded, printable form of it.
  std::string shown;
  for (char c : charset.substr(0, 40)) shown += (c > ' ' && c < 0x7F) ? c : '?';
  spdlog::warn("{}: unsupported charset \"{}\", reading it as windows-1252", name, shown);
  return cp1252_to_utf8(bytes);
}

struct Tag {
  std::string name;  // lower case
  bool end = false;
  bool self_closing = false;
};

class HtmlParser {
 public:
  HtmlParser(std::string_view text, std::string_view name) : text_(text), name_(name) {}

  ParsedDocument parse() {
    size_t pos = 0;
    while (pos < text_.size()) {
      size_t lt = text_.find('<', pos);
      if (lt == std::string_view::npos) lt = text_.size();
      if (lt > pos) add_text(text_.substr(pos, lt - pos));
      if (lt >= text_.size()) break;
      pos = markup(lt);
    }
    end_block();
    return builder_.finish(title_, name_);
  }

 private:
  // Handles the markup at text_[lt] == '<'; returns where to continue.
  size_t markup(size_t lt) {
    std::string_view rest = text_.substr(lt);
    if (rest.starts_with("<!--")) {
      size_t end = text_.find("-->", lt + 4);
      return end == std::string_view::npos ? text_.size() : end + 3;
    }
    if (rest.starts_with("<!") || rest.starts_with("<?")) {
      size_t end = text_.find('>', lt);
      return end == std::string_view::npos ? text_.size() : end + 1;
    }
    bool end_tag = rest.size() > 1 && rest[1] == '/';
    size_t name_begin = lt + (end_tag ? 2 : 1);
    if (name_begin >= text_.size() || !is_alpha(text_[name_begin])) {
      add_text("<");  // a lone '<' in text
      return lt + 1;
    }
    size_t name_end = name_begin;
    while (name_end < text_.size() && !is_space(text_[name_end]) && text_[name_end] != '>' &&
           text_[name_end] != '/')
      ++name_end;
    size_t close = tag_end(name_end);
    if (close == std::string_view::npos) return text_.size();  // a tag cut off by the end of input
    Tag tag;
    tag.name = ascii_lower(text_.substr(name_begin, std::min(name_end - name_begin, kMaxTagNameLength)));
    tag.end = end_tag;
    tag.self_closing = close > lt && text_[close - 1] == '/';
    size_t next = close + 1;
    if (tag.end) {
      end_element(tag.name);
      return next;
    }
    if (one_of(tag.name, kRawText)) return raw_text(tag.name, next);
    start_element(tag);
    return next;
  }

  // The '>' closing a tag whose name ends at `pos`, skipping quoted attribute values; npos if none.
  size_t tag_end(size_t pos) const {
    char quote = 0;
    for (size_t i = pos; i < text_.size(); ++i) {
      char c = text_[i];
      if (quote) {
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        // Only a quote right after '=' opens a value; stray quotes elsewhere are ignored as browsers do.
        size_t j = i;
        while (j > pos && is_space(text_[j - 1])) --j;
        if (j > pos && text_[j - 1] == '=') quote = c;
      } else if (c == '>') {
        return i;
      }
    }
    // An unterminated quote: fall back to the first '>' so one bad attribute does not swallow the page.
    size_t gt = text_.find('>', pos);
    return gt;
  }

  size_t raw_text(const std::string& name, size_t pos) {
    // Case-insensitive search for "</name"; the content is text for title and textarea, dropped otherwise.
    std::string closing = "</" + name;
    size_t end = pos;
    for (;;) {
      end = text_.find("</", end);
      if (end == std::string_view::npos) break;
      if (ascii_lower(text_.substr(end, closing.size())) == closing) break;
      end += 2;
    }
    std::string_view content = text_.substr(pos, (end == std::string_view::npos ? text_.size() : end) - pos);
    if (name == "title" && title_.empty() && dropped_ == 0) {
      std::string decoded = decode_entities(content);
      title_ = collapse_whitespace(decoded);
    } else if (name == "textarea" || name == "xmp") {
      add_text(content);
    }
    if (end == std::string_view::npos) return text_.size();
    size_t gt = text_.find('>', end);
    return gt == std::string_view::npos ? text_.size() : gt + 1;
  }

  void start_element(const Tag& tag) {
    const std::string& name = tag.name;
    if (one_of(name, kBlock)) end_block();
    if (name == "br") {
      // A line break inside a block, not a new block: sloppy pages use <br> where lines wrap.
      buffer_ += '\n';
      return;
    }
    if (one_of(name, kVoid) || tag.self_closing) return;

    // Implied end tags: a new p, li, dt/dd, tr or cell closes the open one of its kind.
    if (name == "p")
      close_implied({"p"}, {});
    else if (name == "li")
      close_implied({"li"}, {"ul", "ol"});
    else if (name == "dt" || name == "dd")
      close_implied({"dt", "dd"}, {"dl"});
    else if (name == "tr")
      close_implied({"tr"}, {"table"});
    else if (name == "tbody" || name == "tfoot")
      close_implied({"thead"}, {"table"});
    else if (name == "td" || name == "th")
      close_implied({"td", "th"}, {"tr", "table"});

    if (stack_.size() >= kMaxDepth) return;  // too deep: read its text as its ancestor's
    stack_.push_back(name);
    on_open(name);
  }

  void close_implied(std::initializer_list<std::string_view> closes,
                     std::initializer_list<std::string_view> scope) {
    for (size_t i = stack_.size(); i-- > 0;) {
      const std::string& open = stack_[i];
      if (std::find(scope.begin(), scope.end(), open) != scope.end()) return;
      if (std::find(closes.begin(), closes.end(), open) != closes.end()) {
        pop_to(i);
        return;
      }
    }
  }

  void end_element(const std::string& name) {
    if (one_of(name, kBlock)) end_block();
    for (size_t i = stack_.size(); i-- > 0;) {
      if (stack_[i] == name) {
        pop_to(i);
        return;
      }
    }
  }

  // Closes stack_[index] and everything opened after it.
  void pop_to(size_t index) {
    while (stack_.size() > index) {
      std::string name = std::move(stack_.back());
      stack_.pop_back();
      on_close(name);
    }
  }

  void on_open(const std::string& name) {
    if (one_of(name, kDropped))
      ++dropped_;
    else if (name == "pre")
      ++in_pre_;
    else if (name == "ul" || name == "ol")
      ++list_depth_;
    else if (name == "li")
      ++in_li_;
    else if (int level = heading_level(name))
      heading_ = level, ++in_heading_;
    else if (name == "table")
      open_table();
    else if (name == "thead")
      ++in_thead_;
    else if (name == "tr" && tables_.size() == 1)
      row_open_ = true, row_cells_.clear(), row_all_th_ = true;
    else if ((name == "td" || name == "th") && tables_.size() == 1 && row_open_) {
      row_cells_.emplace_back();
      if (name == "td") row_all_th_ = false;
    }
  }

  void on_close(const std::string& name) {
    if (one_of(name, kBlock)) end_block();  // an implied end inside an inline element's end tag
    if (one_of(name, kDropped))
      --dropped_;
    else if (name == "pre")
      --in_pre_;
    else if (name == "ul" || name == "ol")
      --list_depth_;
    else if (name == "li")
      --in_li_;
    else if (heading_level(name))
      --in_heading_;
    else if (name == "table")
      close_table();
    else if (name == "thead")
      --in_thead_;
    else if (name == "tr" && tables_.size() == 1)
      end_row();
  }

  void open_table() {
    // Nested tables are read as text of the outer table's cell.
    if (tables_.empty()) row_open_ = false;
    tables_.push_back(tables_.empty() ? builder_.next_table() : tables_.back());
  }

  void close_table() {
    if (tables_.size() == 1) end_row();
    tables_.pop_back();
  }

  void end_row() {
    if (!row_open_) return;
    row_open_ = false;
    bool any = false;
    std::string row;
    for (size_t i = 0; i < row_cells_.size(); ++i) {
      if (i > 0) row += " | ";
      row += row_cells_[i];
      any = any || !row_cells_[i].empty();
    }
    if (any) builder_.add(BlockKind::kTableRow, row, 0, 0, tables_.front(), in_thead_ > 0 || row_all_th_);
    row_cells_.clear();
  }

  void add_text(std::string_view raw) {
    if (dropped_ > 0) return;
    append_decoded(buffer_, raw);
  }

  // Turns the buffered text into a block (or a table cell) according to the open elements.
  void end_block() {
    if (buffer_.empty()) return;
    std::string text = std::move(buffer_);
    buffer_.clear();
    if (!tables_.empty() && row_open_) {
      // Text anywhere inside a row belongs to its current cell (a new cell when none is open yet).
      std::string cell = collapse_whitespace(text);
      if (cell.empty()) return;
      if (row_cells_.empty()) row_cells_.emplace_back();
      if (!row_cells_.back().empty()) row_cells_.back() += ' ';
      row_cells_.back() += cell;
      return;
    }
    if (in_pre_ > 0)
      builder_.add(BlockKind::kCode, text);
    else if (in_heading_ > 0)
      builder_.add(BlockKind::kHeading, text, heading_);
    else if (in_li_ > 0)
      builder_.add(BlockKind::kListItem, text, std::max(1, list_depth_));
    else
      builder_.add(BlockKind::kParagraph, text);
  }

  std::string_view text_;
  std::string_view name_;
  DocumentBuilder builder_{DocType::kHtml};
  std::string title_;
  std::vector<std::string> stack_;  // open elements, innermost last
  std::string buffer_;              // decoded text of the current block
  int dropped_ = 0, in_pre_ = 0, in_li_ = 0, list_depth_ = 0, in_heading_ = 0, heading_ = 0, in_thead_ = 0;
  std::vector<int> tables_;  // open tables; all share the outermost table's index
  bool row_open_ = false, row_all_th_ = true;
  std::vector<std::string> row_cells_;
};

}  // namespace

ParsedDocument parse_html(std::string_view bytes, std::string_view name) {
  require_not_empty(bytes, name);
  Encoding encoding = detect_encoding(bytes);
  bool utf16 = encoding == Encoding::kUtf16Le || encoding == Encoding::kUtf16Be;
  if (!utf16 && looks_binary(bytes)) fail(Errc::kCorrupt, "{}: binary content, not HTML", name);
  std::string text = strip_controls(decode_html_bytes(bytes, name));
  return HtmlParser(text, name).parse();
}

}  // namespace rag::ingest
