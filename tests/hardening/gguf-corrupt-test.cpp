// Hand-made corrupt GGUF files, enumerated (after llama.cpp's test-gguf): each case is built by code from a
// valid base file changed in one place, and must be refused with its typed error code and a message that
// names the file, so an operator knows which model to replace. tests/nn/gguf-test.cpp holds the reader's own
// corrupt set (codes only), every truncation and a byte-flip sweep; this table is the issue 6 list, checked
// for the file name as well.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "nn/gguf.h"
#include "tests/support/support.h"

namespace rag::nn {
namespace {

// Little-endian GGUF bytes, field by field.
struct Raw {
  std::string bytes;
  Raw& u32(uint32_t v) { return put(&v, 4); }
  Raw& u64(uint64_t v) { return put(&v, 8); }
  Raw& put(const void* p, size_t n) {
    bytes.append(static_cast<const char*>(p), n);
    return *this;
  }
  Raw& str(const std::string& s) {
    u64(s.size());
    bytes += s;
    return *this;
  }
  Raw& header(uint64_t tensors, uint64_t kvs, uint32_t version = 3, const char* magic = "GGUF") {
    return put(magic, 4).u32(version).u64(tensors).u64(kvs);
  }
  Raw& kv_u32(const std::string& key, uint32_t v) { return str(key).u32(4).u32(v); }
  Raw& tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    return u32(type).u64(offset);
  }
  Raw& pad(size_t alignment) {
    bytes.resize((bytes.size() + alignment - 1) / alignment * alignment, '\0');
    return *this;
  }
  Raw& zeros(size_t n) {
    bytes.append(n, '\0');
    return *this;
  }
};

constexpr uint32_t kF32 = 0, kQ8_0 = 8;

// The base: one metadata key and one F32 tensor of 4 values, data padded to 32.
Raw base(std::vector<uint64_t> ne = {4}, uint32_t type = kF32, uint64_t offset = 0, size_t data = 16) {
  return Raw().header(1, 1).kv_u32("general.architecture.version", 1).tensor("t", ne, type, offset).pad(32).zeros(data);
}

struct Case {
  const char* name;
  std::string bytes;
  Errc code;
};

std::vector<Case> cases() {
  const uint64_t two63 = uint64_t{1} << 63;
  return {
      // header
      {"bad magic", Raw().header(0, 0, 3, "GGUG").bytes, Errc::kCorrupt},
      {"magic of another format", std::string("\x7f" "ELF\2\1\1\0", 8) + std::string(40, '\0'), Errc::kCorrupt},
      {"unsupported version 1", Raw().header(0, 0, 1).bytes, Errc::kUnsupported},
      {"unsupported version 4", Raw().header(0, 0, 4).bytes, Errc::kUnsupported},
      {"unsupported version 2^31", Raw().header(0, 0, 0x80000000u).bytes, Errc::kUnsupported},
      // counts larger than the file
      {"tensor count 1000 in 24 bytes", Raw().header(1000, 0).bytes, Errc::kCorrupt},
      {"kv count 1000 in 24 bytes", Raw().header(0, 1000).bytes, Errc::kCorrupt},
      {"kv count 2 with one kv", Raw().header(0, 2).kv_u32("a", 1).bytes, Errc::kCorrupt},
      {"tensor count 2 with one tensor", Raw().header(2, 0).tensor("t", {4}, kF32, 0).pad(32).zeros(16).bytes,
       Errc::kCorrupt},
      {"tensor count 2^63", Raw().header(two63, 0).bytes, Errc::kCorrupt},
      {"kv count 2^63", Raw().header(0, two63).bytes, Errc::kCorrupt},
      {"array count past end", Raw().header(0, 1).str("a").u32(9).u32(4).u64(1000).u32(1).bytes, Errc::kCorrupt},
      // offsets
      {"tensor offset past end", base({4}, kF32, 1 << 20).bytes, Errc::kCorrupt},
      {"tensor offset 2^64 - 32", base({4}, kF32, ~uint64_t{31}).bytes, Errc::kCorrupt},
      {"tensor data cut short", base({4}, kF32, 0, 12).bytes, Errc::kCorrupt},
      {"second tensor past end",
       Raw().header(2, 0).tensor("a", {4}, kF32, 0).tensor("b", {4}, kF32, 32).pad(32).zeros(32).bytes, Errc::kCorrupt},
      // alignment
      {"misaligned tensor offset", base({4}, kF32, 4, 32).bytes, Errc::kCorrupt},
      {"offset aligned to 32 but not to general.alignment 64",
       Raw().header(1, 1).kv_u32("general.alignment", 64).tensor("t", {4}, kF32, 32).pad(64).zeros(64).bytes,
       Errc::kCorrupt},
      {"alignment not a power of two", Raw().header(0, 1).kv_u32("general.alignment", 48).bytes, Errc::kCorrupt},
      {"data section not padded to the alignment",
       Raw().header(1, 0).tensor("t", {4}, kF32, 0).zeros(16).bytes, Errc::kCorrupt},
      // duplicates
      {"duplicate keys", Raw().header(0, 2).kv_u32("general.alignment", 32).kv_u32("general.alignment", 32).bytes,
       Errc::kCorrupt},
      {"duplicate tensor names",
       Raw().header(2, 0).tensor("w", {4}, kF32, 0).tensor("w", {4}, kF32, 32).pad(32).zeros(48).bytes, Errc::kCorrupt},
      // lengths
      {"key length 2^63", Raw().header(0, 1).u64(two63).bytes, Errc::kCorrupt},
      {"string value length 2^63", Raw().header(0, 1).str("s").u32(8).u64(two63).bytes, Errc::kCorrupt},
      {"string value length 2^64 - 1", Raw().header(0, 1).str("s").u32(8).u64(~uint64_t{0}).bytes, Errc::kCorrupt},
      {"tensor name length 2^63", Raw().header(1, 0).u64(two63).bytes, Errc::kCorrupt},
      {"string array element length 2^63", Raw().header(0, 1).str("a").u32(9).u32(8).u64(1).u64(two63).bytes,
       Errc::kCorrupt},
      // shapes
      {"byte size overflows 64 bits", base({uint64_t{1} << 32, uint64_t{1} << 32}).bytes, Errc::kCorrupt},
      {"byte size overflows through the type size", base({uint64_t{1} << 62}).bytes, Errc::kCorrupt},
      {"element count 2^63 in 4 dims", base({1 << 16, 1 << 16, 1 << 16, 1 << 15}).bytes, Errc::kCorrupt},
      {"negative dimension", base({two63 + 4}).bytes, Errc::kCorrupt},
      {"5 dimensions", base({1, 1, 1, 1, 4}).bytes, Errc::kCorrupt},
      {"Q8_0 row not a whole block", base({31}, kQ8_0, 0, 64).bytes, Errc::kCorrupt},
      // type ids
      {"metadata value type 13", Raw().header(0, 1).str("k").u32(13).u32(0).bytes, Errc::kCorrupt},
      {"metadata value type 2^32 - 1", Raw().header(0, 1).str("k").u32(0xffffffffu).u32(0).bytes, Errc::kCorrupt},
      {"array element type 99", Raw().header(0, 1).str("k").u32(9).u32(99).u64(0).bytes, Errc::kCorrupt},
      {"tensor type 99", base({4}, 99).bytes, Errc::kUnsupported},
      {"tensor type 4 (removed Q4_2)", base({32}, 4, 0, 32).bytes, Errc::kUnsupported},
      {"tensor type 2^31", base({4}, 0x80000000u).bytes, Errc::kUnsupported},
      {"general.alignment of type string", Raw().header(0, 1).str("general.alignment").u32(8).str("32").bytes,
       Errc::kCorrupt},
  };
}

TEST(HardeningGguf, BaseFileIsValid) {
  test::TempDir dir;
  test::write_file(dir / "base.gguf", base().bytes);
  auto file = GgufFile::open(dir / "base.gguf");
  EXPECT_EQ(file->require_tensor("t", {4}).nbytes, 16u);
}

TEST(HardeningGguf, EveryCorruptFileIsATypedErrorNamingTheFile) {
  test::TempDir dir;
  int i = 0;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const std::string path = dir / ("model-" + std::to_string(i++) + ".gguf");
    test::write_file(path, c.bytes);
    try {
      GgufFile::open(path);
      ADD_FAILURE() << "opened without error";
    } catch (const Error& e) {
      EXPECT_EQ(errc_name(e.code()), errc_name(c.code)) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace rag::nn
