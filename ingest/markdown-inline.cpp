#include "ingest/markdown-inline.h"

#include <array>

#include "ingest/entities.h"

namespace rag::ingest {

namespace {

constexpr size_t kMaxTrackedRun = 16;  // longer backtick runs are taken literally

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n';
}
bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool is_punct(char c) {
  return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}

size_t run_length(std::string_view text, size_t pos, char c) {
  size_t end = pos;
  while (end < text.size() && text[end] == c) ++end;
  return end - pos;
}

// Every search below remembers its answer, so a pathological paragraph ("[[[[…" or "` `` ```…") costs
// linear time rather than a rescan from each opener.
class InlineStripper {
 public:
  explicit InlineStripper(std::string_view text) : text_(text) { closing_run_.fill({0, kUnknown}); }

  std::string run() {
    size_t i = 0;
    while (i < text_.size()) i = step(i);
    flush();
    return std::move(out_);
  }

 private:
  static constexpr size_t kUnknown = static_cast<size_t>(-2);
  static constexpr size_t kNone = static_cast<size_t>(-1);

  struct Cached {
    size_t searched_from;
    size_t found;  // kNone, kUnknown or the position
  };

  size_t find_cached(Cached& cache, size_t from, char c) {
    if (cache.found == kUnknown || cache.searched_from > from ||
        (cache.found != kNone && cache.found < from)) {
      size_t at = text_.find(c, from);
      cache = {from, at == std::string_view::npos ? kNone : at};
    }
    return cache.found;
  }

  // Position of the next run of exactly `n` backticks at or after `from`, or kNone.
  size_t find_closing_run(size_t from, size_t n) {
    Cached& cache = closing_run_[n];
    if (cache.found != kUnknown && cache.searched_from <= from &&
        (cache.found == kNone || cache.found >= from))
      return cache.found;
    size_t at = from;
    size_t found = kNone;
    while ((at = text_.find('`', at)) != std::string_view::npos) {
      size_t len = run_length(text_, at, '`');
      if (len == n) {
        found = at;
        break;
      }
      at += len;
    }
    cache = {from, found};
    return found;
  }

  void flush() {
    append_decoded(out_, pending_);
    pending_.clear();
  }

  char at(size_t i) const { return i < text_.size() ? text_[i] : ' '; }
  char before(size_t i) const { return i == 0 ? ' ' : text_[i - 1]; }

  size_t step(size_t i) {
    char c = text_[i];
    if (c == '\\' && i + 1 < text_.size() && is_punct(text_[i + 1])) {
      // An escaped '&' must not start a character reference.
      if (text_[i + 1] == '&') {
        flush();
        out_ += '&';
      } else {
        pending_ += text_[i + 1];
      }
      return i + 2;
    }
    if (c == '`') return code_span(i);
    if (c == '!' && at(i + 1) == '[') {
      size_t next = link(i + 1);
      if (next != kNone) return next;
      pending_ += c;
      return i + 1;
    }
    if (c == '[') {
      size_t next = link(i);
      if (next != kNone) return next;
      pending_ += c;
      return i + 1;
    }
    if (c == '<') return angle(i);
    if (c == '*' || c == '_' || c == '~') {
      size_t n = run_length(text_, i, c);
      char prev = before(i), next = at(i + n);
      bool drop;
      if (c == '~')
        drop = n >= 2 && !(is_space(prev) && is_space(next));
      else if (c == '*')
        drop = !(is_space(prev) && is_space(next));
      else
        drop = !(is_alnum(prev) && is_alnum(next)) && !(is_space(prev) && is_space(next));
      if (!drop) pending_.append(text_.substr(i, n));
      return i + n;
    }
    pending_ += c;
    return i + 1;
  }

  size_t code_span(size_t i) {
    size_t n = run_length(text_, i, '`');
    size_t close = n < kMaxTrackedRun ? find_closing_run(i + n, n) : kNone;
    if (close == kNone) {
      pending_.append(text_.substr(i, n));
      return i + n;
    }
    std::string_view content = text_.substr(i + n, close - i - n);
    if (content.size() >= 2 && content.front() == ' ' && content.back() == ' ')
      content = content.substr(1, content.size() - 2);
    flush();
    out_.append(content);
    return close + n;
  }

  // `[text](url)`, `[text][ref]`, `[text][]`: returns the position after it with the text emitted, or kNone.
  size_t link(size_t open) {
    size_t close = find_cached(bracket_, open + 1, ']');
    if (close == kNone) return kNone;
    size_t after;
    if (at(close + 1) == '(') {
      size_t paren = find_cached(paren_, close + 2, ')');
      if (paren == kNone) return kNone;
      after = paren + 1;
    } else if (at(close + 1) == '[') {
      size_t end = find_cached(ref_bracket_, close + 2, ']');
      if (end == kNone) return kNone;
      after = end + 1;
    } else {
      return kNone;
    }
    // The link text itself may hold emphasis or code; strip it on its own (it holds no ']' so it cannot
    // recurse deeper than one level).
    pending_ += InlineStripper(text_.substr(open + 1, close - open - 1)).run();
    return after;
  }

  size_t angle(size_t i) {
    size_t close = find_cached(angle_, i + 1, '>');
    if (close == kNone) {
      pending_ += '<';
      return i + 1;
    }
    std::string_view inside = text_.substr(i + 1, close - i - 1);
    bool has_space = inside.find_first_of(" \t\n") != std::string_view::npos;
    if (!has_space &&
        (inside.starts_with("http://") || inside.starts_with("https://") || inside.starts_with("mailto:"))) {
      pending_.append(inside);
      return close + 1;
    }
    char first = at(i + 1);
    bool tag =
        (first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z') || first == '/' || first == '!';
    if (tag && inside.find('<') == std::string_view::npos) return close + 1;
    pending_ += '<';
    return i + 1;
  }

  std::string_view text_;
  std::string out_;
  std::string pending_;  // literal text awaiting character-reference decoding
  Cached bracket_{0, kUnknown}, ref_bracket_{0, kUnknown}, paren_{0, kUnknown}, angle_{0, kUnknown};
  std::array<Cached, kMaxTrackedRun> closing_run_;
};

}  // namespace

std::string strip_inline(std::string_view text) {
  return InlineStripper(text).run();
}

}  // namespace rag::ingest
