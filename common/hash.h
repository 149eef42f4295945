// Content hashing: XXH3-128, fast enough to hash every ingested file on each run, wide enough that an
// accidental collision is not a concern. Not a defence against an attacker who can write the data dir.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace rag {

struct Hash128 {
  uint64_t high = 0;
  uint64_t low = 0;
  std::string hex() const;  // 32 lowercase hex digits, high word first
  bool operator==(const Hash128&) const = default;
};

Hash128 hash_bytes(std::string_view bytes);

// Hashes a file by streaming it; throws Error(kIo) naming the path when it cannot be read.
Hash128 hash_file(const std::string& path);

}  // namespace rag
