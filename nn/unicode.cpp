#include "nn/unicode.h"

#include <algorithm>
#include <array>

#include "common/text.h"

namespace rag::nn {
namespace {

constexpr char32_t kMaxCodepoint = 0x10FFFF;

// Flags for the Basic Multilingual Plane in a flat array (128 KB); other planes by binary search.
struct FlagTable {
  std::vector<uint16_t> bmp;
  FlagTable() : bmp(0x10000) {
    using namespace unicode_tables;
    for (size_t i = 0; i < kFlagRangeCount; ++i) {
      char32_t end = i + 1 < kFlagRangeCount ? kFlagRanges[i + 1].first : kMaxCodepoint + 1;
      for (char32_t cp = kFlagRanges[i].first; cp < end && cp < 0x10000; ++cp) bmp[cp] = kFlagRanges[i].flags;
    }
    for (size_t i = 0; i < kWhitespaceCount; ++i) bmp[kWhitespace[i]] |= CodepointFlags::kWhitespace;
  }
};

const FlagTable& flag_table() {
  static const FlagTable table;
  return table;
}

struct ByteMap {
  std::array<std::string, 256> to_unicode;
  std::array<int16_t, 512> from_unicode;  // the mapped characters are all below U+0200
  ByteMap() {
    from_unicode.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      char32_t cp = printable ? b : 256 + next++;
      utf8_append(to_unicode[b], cp);
      from_unicode[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

CodepointFlags codepoint_flags(char32_t cp) {
  if (cp < 0x10000) return CodepointFlags{flag_table().bmp[cp]};
  if (cp > kMaxCodepoint) return CodepointFlags{};
  using namespace unicode_tables;
  // Supplementary planes hold no White_Space characters.
  const FlagRange* end = kFlagRanges + kFlagRangeCount;
  const FlagRange* it = std::upper_bound(kFlagRanges, end, cp,
                                         [](char32_t c, const FlagRange& r) { return c < r.first; });
  return CodepointFlags{(it - 1)->flags};
}

char32_t to_lower(char32_t cp) {
  using namespace unicode_tables;
  const CodepointPair* end = kLowercase + kLowercaseCount;
  const CodepointPair* it =
      std::lower_bound(kLowercase, end, cp, [](const CodepointPair& p, char32_t c) { return p.from < c; });
  return it != end && it->from == cp ? it->to : cp;
}

char32_t nfd_first(char32_t cp) {
  using namespace unicode_tables;
  const NfdRange* end = kNfdRanges + kNfdRangeCount;
  const NfdRange* it =
      std::upper_bound(kNfdRanges, end, cp, [](char32_t c, const NfdRange& r) { return c < r.first; });
  if (it == kNfdRanges) return cp;
  --it;
  return cp <= it->last ? it->nfd : cp;
}

std::vector<char32_t> utf8_to_codepoints(std::string_view text) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) out.push_back(utf8_next(text, pos));
  return out;
}

const std::string& byte_to_unicode(uint8_t byte) { return byte_map().to_unicode[byte]; }

int unicode_to_byte(char32_t cp) { return cp < 512 ? byte_map().from_unicode[cp] : -1; }

}  // namespace rag::nn
