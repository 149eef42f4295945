#include "ingest/decode.h"

#include "common/text.h"

namespace rag::ingest {

namespace {

bool starts_with(std::string_view bytes, std::string_view prefix) {
  return bytes.size() >= prefix.size() && bytes.substr(0, prefix.size()) == prefix;
}

std::string utf16_to_utf8(std::string_view bytes, bool little_endian) {
  std::string out;
  out.reserve(bytes.size());
  auto unit = [&](size_t i) -> char32_t {
    auto lo = static_cast<unsigned char>(bytes[little_endian ? i : i + 1]);
    auto hi = static_cast<unsigned char>(bytes[little_endian ? i + 1 : i]);
    return (char32_t(hi) << 8) | lo;
  };
  size_t i = 0;
  while (i + 1 < bytes.size()) {
    char32_t u = unit(i);
    i += 2;
    if (u >= 0xD800 && u <= 0xDBFF) {
      if (i + 1 < bytes.size()) {
        char32_t low = unit(i);
        if (low >= 0xDC00 && low <= 0xDFFF) {
          i += 2;
          utf8_append(out, 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00));
          continue;
        }
      }
      utf8_append(out, kReplacementChar);
    } else if (u >= 0xDC00 && u <= 0xDFFF) {
      utf8_append(out, kReplacementChar);
    } else {
      utf8_append(out, u);
    }
  }
  if (i < bytes.size()) utf8_append(out, kReplacementChar);  // odd trailing byte
  return out;
}

}  // namespace

Encoding detect_encoding(std::string_view bytes) {
  if (starts_with(bytes, "\xEF\xBB\xBF")) return Encoding::kUtf8Bom;
  if (starts_with(bytes, "\xFF\xFE")) return Encoding::kUtf16Le;
  if (starts_with(bytes, "\xFE\xFF")) return Encoding::kUtf16Be;
  return utf8_valid(bytes) ? Encoding::kUtf8 : Encoding::kCp1252;
}

std::string to_utf8(std::string_view bytes, Encoding encoding) {
  switch (encoding) {
    case Encoding::kUtf8Bom:
      return utf8_repair(bytes.substr(starts_with(bytes, "\xEF\xBB\xBF") ? 3 : 0));
    case Encoding::kUtf16Le:
      return utf16_to_utf8(bytes.substr(starts_with(bytes, "\xFF\xFE") ? 2 : 0), true);
    case Encoding::kUtf16Be:
      return utf16_to_utf8(bytes.substr(starts_with(bytes, "\xFE\xFF") ? 2 : 0), false);
    case Encoding::kCp1252:
      return cp1252_to_utf8(bytes);
    case Encoding::kUtf8:
      break;
  }
  return utf8_repair(bytes);
}

std::string decode_text(std::string_view bytes) {
  return to_utf8(bytes, detect_encoding(bytes));
}

bool looks_binary(std::string_view bytes) {
  size_t controls = 0;
  for (unsigned char c : bytes) {
    if (c == 0) return true;
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f') || c == 0x7F) ++controls;
  }
  return controls * 20 > bytes.size();
}

std::string strip_controls(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = text[i];
    if (c == '\r') {
      out += '\n';
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == '\f') {
      out += '\n';
    } else if ((c >= 0x20 && c != 0x7F) || c == '\t' || c == '\n') {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace rag::ingest
