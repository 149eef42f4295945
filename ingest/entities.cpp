#include "ingest/entities.h"

#include <algorithm>
#include <array>

#include "common/text.h"

namespace rag::ingest {

namespace {

struct Entity {
  std::string_view name;
  char32_t code_point;
};

// In no particular order: find_entity sorts a copy once for binary search.
constexpr Entity kEntities[] = {
    {"AElig", 0xC6},    {"Aacute", 0xC1},  {"Acirc", 0xC2},   {"Agrave", 0xC0},   {"Aring", 0xC5},
    {"Atilde", 0xC3},   {"Auml", 0xC4},    {"Ccedil", 0xC7},  {"Dagger", 0x2021}, {"ETH", 0xD0},
    {"Eacute", 0xC9},   {"Ecirc", 0xCA},   {"Egrave", 0xC8},  {"Euml", 0xCB},     {"Iacute", 0xCD},
    {"Icirc", 0xCE},    {"Igrave", 0xCC},  {"Iuml", 0xCF},    {"Ntilde", 0xD1},   {"Oacute", 0xD3},
    {"Ocirc", 0xD4},    {"OElig", 0x152},  {"Ograve", 0xD2},  {"Oslash", 0xD8},   {"Otilde", 0xD5},
    {"Ouml", 0xD6},     {"Scaron", 0x160}, {"THORN", 0xDE},   {"Uacute", 0xDA},   {"Ucirc", 0xDB},
    {"Ugrave", 0xD9},   {"Uuml", 0xDC},    {"Yacute", 0xDD},  {"Yuml", 0x178},    {"aacute", 0xE1},
    {"acirc", 0xE2},    {"acute", 0xB4},   {"aelig", 0xE6},   {"agrave", 0xE0},   {"alpha", 0x3B1},
    {"amp", '&'},       {"apos", '\''},    {"aring", 0xE5},   {"atilde", 0xE3},   {"auml", 0xE4},
    {"bdquo", 0x201E},  {"beta", 0x3B2},   {"brvbar", 0xA6},  {"bull", 0x2022},   {"ccedil", 0xE7},
    {"cedil", 0xB8},    {"cent", 0xA2},    {"copy", 0xA9},    {"curren", 0xA4},   {"dagger", 0x2020},
    {"darr", 0x2193},   {"deg", 0xB0},     {"delta", 0x3B4},  {"divide", 0xF7},   {"eacute", 0xE9},
    {"ecirc", 0xEA},    {"egrave", 0xE8},  {"ensp", 0x2002},  {"emsp", 0x2003},   {"eth", 0xF0},
    {"euml", 0xEB},     {"euro", 0x20AC},  {"frac12", 0xBD},  {"frac14", 0xBC},   {"frac34", 0xBE},
    {"ge", 0x2265},     {"gt", '>'},       {"harr", 0x2194},  {"hellip", 0x2026}, {"iacute", 0xED},
    {"icirc", 0xEE},    {"iexcl", 0xA1},   {"igrave", 0xEC},  {"infin", 0x221E},  {"iquest", 0xBF},
    {"iuml", 0xEF},     {"laquo", 0xAB},   {"larr", 0x2190},  {"ldquo", 0x201C},  {"le", 0x2264},
    {"lsaquo", 0x2039}, {"lsquo", 0x2018}, {"lt", '<'},       {"macr", 0xAF},     {"mdash", 0x2014},
    {"micro", 0xB5},    {"middot", 0xB7},  {"minus", 0x2212}, {"mu", 0x3BC},      {"nbsp", 0xA0},
    {"ndash", 0x2013},  {"ne", 0x2260},    {"not", 0xAC},     {"ntilde", 0xF1},   {"oacute", 0xF3},
    {"ocirc", 0xF4},    {"oelig", 0x153},  {"ograve", 0xF2},  {"ordf", 0xAA},     {"ordm", 0xBA},
    {"oslash", 0xF8},   {"otilde", 0xF5},  {"ouml", 0xF6},    {"para", 0xB6},     {"permil", 0x2030},
    {"pi", 0x3C0},      {"plusmn", 0xB1},  {"pound", 0xA3},   {"prime", 0x2032},  {"quot", '"'},
    {"raquo", 0xBB},    {"rarr", 0x2192},  {"rdquo", 0x201D}, {"reg", 0xAE},      {"rsaquo", 0x203A},
    {"rsquo", 0x2019},  {"sbquo", 0x201A}, {"scaron", 0x161}, {"sect", 0xA7},     {"shy", 0xAD},
    {"sigma", 0x3C3},   {"sup1", 0xB9},    {"sup2", 0xB2},    {"sup3", 0xB3},     {"szlig", 0xDF},
    {"thinsp", 0x2009}, {"thorn", 0xFE},   {"times", 0xD7},   {"trade", 0x2122},  {"uacute", 0xFA},
    {"uarr", 0x2191},   {"ucirc", 0xFB},   {"ugrave", 0xF9},  {"uml", 0xA8},      {"uuml", 0xFC},
    {"yacute", 0xFD},   {"yen", 0xA5},     {"yuml", 0xFF},    {"zwj", 0x200D},    {"zwnj", 0x200C},
};

constexpr size_t kMaxNameLength = 8;

const Entity* find_entity(std::string_view name) {
  static const auto sorted = [] {
    std::array<Entity, std::size(kEntities)> table;
    std::copy(std::begin(kEntities), std::end(kEntities), table.begin());
    std::sort(table.begin(), table.end(), [](const Entity& a, const Entity& b) { return a.name < b.name; });
    return table;
  }();
  auto it = std::lower_bound(sorted.begin(), sorted.end(), name,
                             [](const Entity& e, std::string_view n) { return e.name < n; });
  return it != sorted.end() && it->name == name ? &*it : nullptr;
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

char32_t numeric_value(char32_t value) {
  static constexpr char16_t kCp1252[32] = {0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                           0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0xFFFD, 0x017D, 0xFFFD,
                                           0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                           0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178};
  if (value == 0 || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return kReplacementChar;
  if (value >= 0x80 && value < 0xA0) return kCp1252[value - 0x80];
  return value;
}

// Decodes the reference starting at text[pos] == '&'. Returns its length, 0 when it is not one.
size_t decode_one(std::string_view text, size_t pos, std::string& out) {
  size_t i = pos + 1;
  if (i < text.size() && text[i] == '#') {
    ++i;
    bool hex = i < text.size() && (text[i] == 'x' || text[i] == 'X');
    if (hex) ++i;
    size_t digits_begin = i;
    char32_t value = 0;
    bool overflow = false;
    for (; i < text.size(); ++i) {
      char c = text[i];
      int digit;
      if (c >= '0' && c <= '9')
        digit = c - '0';
      else if (hex && c >= 'a' && c <= 'f')
        digit = c - 'a' + 10;
      else if (hex && c >= 'A' && c <= 'F')
        digit = c - 'A' + 10;
      else
        break;
      value = value * (hex ? 16 : 10) + digit;
      if (value > 0x10FFFF) overflow = true, value = 0x110000;  // keep consuming digits, stay bounded
    }
    if (i == digits_begin) return 0;
    if (i < text.size() && text[i] == ';') ++i;
    utf8_append(out, overflow ? kReplacementChar : numeric_value(value));
    return i - pos;
  }
  size_t name_end = i;
  while (name_end < text.size() && name_end - i <= kMaxNameLength && is_alnum(text[name_end])) ++name_end;
  std::string_view name = text.substr(i, name_end - i);
  bool semicolon = name_end < text.size() && text[name_end] == ';';
  if (semicolon) {
    if (const Entity* entity = find_entity(name)) {
      utf8_append(out, entity->code_point);
      return name_end + 1 - pos;
    }
    return 0;
  }
  for (std::string_view legacy : {"amp", "lt", "gt", "quot", "nbsp"}) {
    if (name == legacy) {
      utf8_append(out, find_entity(legacy)->code_point);
      return name_end - pos;
    }
  }
  return 0;
}

}  // namespace

void append_decoded(std::string& out, std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t amp = text.find('&', pos);
    if (amp == std::string_view::npos) {
      out.append(text.substr(pos));
      return;
    }
    out.append(text.substr(pos, amp - pos));
    size_t length = decode_one(text, amp, out);
    if (length == 0) {
      out += '&';
      pos = amp + 1;
    } else {
      pos = amp + length;
    }
  }
}

std::string decode_entities(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_decoded(out, text);
  return out;
}

}  // namespace rag::ingest
