// GGUF reader and writer: a full round trip, a hand-made corrupt-file set (after llama.cpp's test-gguf),
// every truncation and a byte-flip sweep of a small file, and the real vocabulary files.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "common/error.h"
#include "nn/gguf.h"
#include "tests/support/support.h"

namespace rag::nn {
namespace {

using VT = GgufValueType;

GgufValue array_of(VT type, std::vector<GgufValue> values) {
  auto a = std::make_shared<GgufArray>();
  a->type = type;
  a->values = std::move(values);
  return {VT::kArray, a};
}

// Deep comparison; floats compare by value (float32 values survive the double round trip exactly).
void expect_same(const GgufValue& a, const GgufValue& b, const std::string& where) {
  ASSERT_EQ(a.type, b.type) << where;
  ASSERT_EQ(a.value.index(), b.value.index()) << where;
  if (a.type == VT::kArray) {
    const GgufArray& x = a.as_array(where);
    const GgufArray& y = b.as_array(where);
    ASSERT_EQ(x.type, y.type) << where;
    ASSERT_EQ(x.values.size(), y.values.size()) << where;
    for (size_t i = 0; i < x.values.size(); ++i) expect_same(x.values[i], y.values[i], where + "[" + std::to_string(i) + "]");
  } else {
    EXPECT_TRUE(a.value == b.value) << where;
  }
}

std::string slurp(const std::string& path) { return test::read_file(path); }

// An in-memory file reachable by path, so the sweeps below open thousands of variants without disk I/O.
class MemFile {
 public:
  MemFile() : fd_(memfd_create("gguf-test", MFD_CLOEXEC)) { EXPECT_GE(fd_, 0); }
  ~MemFile() { close(fd_); }
  std::string set(const std::string& bytes) {
    EXPECT_EQ(ftruncate(fd_, 0), 0);
    EXPECT_EQ(pwrite(fd_, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    return "/proc/self/fd/" + std::to_string(fd_);
  }

 private:
  int fd_;
};

Errc open_error(const std::string& path) {
  try {
    GgufFile::open(path);
  } catch (const Error& e) {
    return e.code();
  }
  ADD_FAILURE() << path << " opened without error";
  return Errc::kInternal;
}

std::vector<float> ramp(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * (static_cast<float>(i % 37) - 18.0f);
  return v;
}

TEST(Gguf, RoundTripsEveryValueTypeAndTensorType) {
  test::TempDir dir;
  const std::vector<std::pair<std::string, GgufValue>> metadata = {
      {"general.architecture", {VT::kString, std::string("llama")}},
      {"u8", {VT::kUint8, uint64_t{255}}},
      {"i8", {VT::kInt8, int64_t{-128}}},
      {"u16", {VT::kUint16, uint64_t{65535}}},
      {"i16", {VT::kInt16, int64_t{-32768}}},
      {"u32", {VT::kUint32, uint64_t{4000000000u}}},
      {"i32", {VT::kInt32, int64_t{-2000000000}}},
      {"u64", {VT::kUint64, uint64_t{18000000000000000000ull}}},
      {"i64", {VT::kInt64, int64_t{-9000000000000000000ll}}},
      {"f32", {VT::kFloat32, double{0.1f}}},
      {"f64", {VT::kFloat64, 0.1}},
      {"bool.true", {VT::kBool, true}},
      {"bool.false", {VT::kBool, false}},
      {"string.empty", {VT::kString, std::string()}},
      {"string.utf8", {VT::kString, std::string("caf\xc3\xa9 \xe2\x96\x81x\0y", 11)}},
      {"array.strings", array_of(VT::kString, {{VT::kString, std::string("a")}, {VT::kString, std::string()},
                                               {VT::kString, std::string("<|im_start|>")}})},
      {"array.floats", array_of(VT::kFloat32, {{VT::kFloat32, double{-1.5f}}, {VT::kFloat32, double{1e-30f}}})},
      {"array.ints", array_of(VT::kInt32, {{VT::kInt32, int64_t{-1}}, {VT::kInt32, int64_t{7}}})},
      {"array.u8", array_of(VT::kUint8, {{VT::kUint8, uint64_t{0}}, {VT::kUint8, uint64_t{200}}})},
      {"array.bools", array_of(VT::kBool, {{VT::kBool, true}, {VT::kBool, false}})},
      {"array.f64", array_of(VT::kFloat64, {{VT::kFloat64, 3.25}})},
      {"array.empty", array_of(VT::kInt64, {})},
      {"array.nested",
       array_of(VT::kArray, {array_of(VT::kInt32, {{VT::kInt32, int64_t{1}}, {VT::kInt32, int64_t{2}}}),
                             array_of(VT::kInt32, {}),
                             array_of(VT::kInt32, {{VT::kInt32, int64_t{3}}})})},
  };
  struct TensorCase {
    std::string name;
    TensorType type;
    std::vector<int64_t> ne;
  };
  const std::vector<TensorCase> tensors = {
      {"f32.1d", TensorType::kF32, {5}},
      {"f16.2d", TensorType::kF16, {3, 4}},
      {"bf16.3d", TensorType::kBF16, {2, 3, 4}},
      {"q8_0.4d", TensorType::kQ8_0, {64, 2, 1, 3}},
      {"q4_0.2d", TensorType::kQ4_0, {32, 3}},
      {"f32.empty", TensorType::kF32, {4, 0}},
  };

  GgufWriter writer;
  for (const auto& [key, value] : metadata) writer.set(key, value);
  std::vector<std::vector<uint8_t>> payloads;
  std::mt19937 rng(7);
  for (const auto& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    std::vector<uint8_t> bytes(row_bytes(t.type, t.ne[0]) * static_cast<size_t>(t.ne[0] ? n / t.ne[0] : 0));
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    writer.add_tensor(t.name, t.type, t.ne, bytes.data());
    payloads.push_back(std::move(bytes));
  }
  writer.write(dir / "model.gguf");

  auto file = GgufFile::open(dir / "model.gguf");
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->alignment(), 32u);
  ASSERT_EQ(file->metadata().size(), metadata.size());
  for (size_t i = 0; i < metadata.size(); ++i) {
    EXPECT_EQ(file->metadata()[i].first, metadata[i].first);
    expect_same(file->metadata()[i].second, metadata[i].second, metadata[i].first);
  }
  ASSERT_EQ(file->tensors().size(), tensors.size());
  const auto* base = static_cast<const uint8_t*>(file->tensors()[0].data) - file->tensors()[0].offset;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensor& t = file->require_tensor(tensors[i].name, tensors[i].ne);
    EXPECT_EQ(&t, &file->tensors()[i]);
    EXPECT_EQ(t.type, tensors[i].type) << t.name;
    EXPECT_EQ(t.nbytes, payloads[i].size()) << t.name;
    EXPECT_EQ(t.offset % 32, 0u) << t.name;
    EXPECT_EQ(static_cast<const uint8_t*>(t.data), base + t.offset) << t.name;
    if (!payloads[i].empty()) {
      EXPECT_EQ(std::memcmp(t.data, payloads[i].data(), payloads[i].size()), 0) << t.name;
    }
  }
  EXPECT_EQ(file->find_tensor("f32.empty")->element_count(), 0);
  EXPECT_EQ(file->find_tensor("q8_0.4d")->element_count(), 64 * 2 * 3);
}

TEST(Gguf, HonoursCustomAlignmentAndConvertsFloatTensors) {
  test::TempDir dir;
  GgufWriter writer;
  writer.set_uint32("general.alignment", 64);
  const std::vector<float> x = ramp(64 * 3, 0.25f);
  writer.add_tensor_f32("a", TensorType::kF32, {3}, x.data());
  writer.add_tensor_f32("b", TensorType::kF16, {64, 3}, x.data());
  writer.add_tensor_f32("c", TensorType::kQ8_0, {64, 3}, x.data());
  writer.write(dir / "m.gguf");
  auto file = GgufFile::open(dir / "m.gguf");
  EXPECT_EQ(file->alignment(), 64u);
  for (const auto& t : file->tensors()) EXPECT_EQ(t.offset % 64, 0u) << t.name;
  std::vector<float> y(x.size());
  dequantize_row(TensorType::kF16, file->require_tensor("b").data, y.data(), 64 * 3);
  EXPECT_EQ(y, x);  // quarter steps up to 4.5 are exact in half precision
  std::vector<uint8_t> q(row_bytes(TensorType::kQ8_0, 64 * 3));
  quantize_row(TensorType::kQ8_0, x.data(), q.data(), 64 * 3);
  EXPECT_EQ(std::memcmp(file->require_tensor("c").data, q.data(), q.size()), 0);
}

bool mapped_in_this_process(const std::string& path) {
  return test::read_file("/proc/self/maps").find(path) != std::string::npos;
}

// Large files (models) are copied into huge-page memory, small ones mapped; the bytes are the file's either way.
TEST(Gguf, LargeFilesAreReadIntoMemoryWithTheirExactBytes) {
  test::TempDir dir;
  std::vector<float> big((size_t{68} << 20) / sizeof(float));
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i % 65521) - 7.5f;
  GgufWriter writer;
  writer.add_tensor_f32("big", TensorType::kF32, {static_cast<int64_t>(big.size())}, big.data());
  writer.write(dir / "big.gguf");
  GgufWriter small_writer;
  small_writer.add_tensor_f32("small", TensorType::kF32, {4}, big.data());
  small_writer.write(dir / "small.gguf");

  auto large = GgufFile::open(dir / "big.gguf");
  auto small = GgufFile::open(dir / "small.gguf");
  EXPECT_FALSE(mapped_in_this_process(dir / "big.gguf"));
  EXPECT_TRUE(mapped_in_this_process(dir / "small.gguf"));
  EXPECT_EQ(std::memcmp(large->require_tensor("big").data, big.data(), big.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(small->require_tensor("small").data, big.data(), 4 * sizeof(float)), 0);
}

TEST(Gguf, TypedLookupsCheckPresenceAndType) {
  test::TempDir dir;
  GgufWriter writer;
  writer.set_string("name", "tiny");
  writer.set_uint32("n", 12);
  writer.set_float32("eps", 1e-5f);
  writer.set("huge", {VT::kUint64, uint64_t{1} << 63});
  writer.set_string("n", "replaced");  // set() replaces a key of the same name
  writer.set_uint32("layers", 2);
  writer.write(dir / "m.gguf");
  auto file = GgufFile::open(dir / "m.gguf");
  EXPECT_EQ(file->metadata().size(), 5u);
  EXPECT_EQ(file->get_string("n", ""), "replaced");
  EXPECT_EQ(file->require_int("layers"), 2);
  EXPECT_EQ(file->get_int("absent", -3), -3);
  EXPECT_FLOAT_EQ(static_cast<float>(file->get_float("eps", 0)), 1e-5f);
  EXPECT_DOUBLE_EQ(file->get_float("layers", 0), 2.0);
  EXPECT_EQ(file->get_string("absent", "x"), "x");
  EXPECT_EQ(file->find("absent"), nullptr);
  EXPECT_EQ(file->find_tensor("absent"), nullptr);

  const std::vector<std::pair<std::string, std::function<void()>>> failing = {
      {"int of a string", [&] { file->get_int("name", 0); }},
      {"string of an int", [&] { file->get_string("layers", ""); }},
      {"uint64 above int64", [&] { file->require_int("huge"); }},
      {"missing int", [&] { file->require_int("absent"); }},
      {"missing string", [&] { file->require_string("absent"); }},
      {"missing tensor", [&] { file->require_tensor("absent"); }},
      {"array of a string", [&] { file->find("name")->as_array(file->path() + ": name"); }},
      {"bool of an int", [&] { file->find("layers")->as_bool(file->path() + ": layers"); }},
  };
  for (const auto& [what, call] : failing) {
    try {
      call();
      ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kCorrupt) << what;
      EXPECT_NE(std::string(e.what()).find("m.gguf"), std::string::npos) << what << ": " << e.what();
    }
  }
}

TEST(Gguf, RequireTensorChecksShape) {
  test::TempDir dir;
  GgufWriter writer;
  const std::vector<float> x(8, 1.0f);
  writer.add_tensor_f32("w", TensorType::kF32, {4, 2}, x.data());
  writer.write(dir / "m.gguf");
  auto file = GgufFile::open(dir / "m.gguf");
  EXPECT_EQ(file->require_tensor("w", {4, 2}).nbytes, 32u);
  try {
    file->require_tensor("w", {2, 4});
    FAIL() << "shape mismatch accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kCorrupt);
    EXPECT_NE(std::string(e.what()).find("[4, 2]"), std::string::npos) << e.what();
  }
}

TEST(Gguf, WriterRejectsMisuse) {
  test::TempDir dir;
  const std::vector<float> x(64, 0.0f);
  const std::vector<std::pair<std::string, std::function<void(GgufWriter&)>>> cases = {
      {"duplicate tensor", [&](GgufWriter& w) { w.add_tensor_f32("t", TensorType::kF32, {2}, x.data());
                                                w.add_tensor_f32("t", TensorType::kF32, {2}, x.data()); }},
      {"name of 64 bytes", [&](GgufWriter& w) { w.add_tensor_f32(std::string(64, 'n'), TensorType::kF32, {2}, x.data()); }},
      {"no dimensions", [&](GgufWriter& w) { w.add_tensor_f32("t", TensorType::kF32, {}, x.data()); }},
      {"five dimensions", [&](GgufWriter& w) { w.add_tensor_f32("t", TensorType::kF32, {1, 1, 1, 1, 1}, x.data()); }},
      {"negative dimension", [&](GgufWriter& w) { w.add_tensor_f32("t", TensorType::kF32, {2, -1}, x.data()); }},
      {"partial block", [&](GgufWriter& w) { w.add_tensor_f32("t", TensorType::kQ4_0, {48}, x.data()); }},
      {"alignment 3", [&](GgufWriter& w) { w.set_uint32("general.alignment", 3); }},
      {"alignment as uint64", [&](GgufWriter& w) { w.set_uint64("general.alignment", 32); }},
      {"uint8 out of range", [&](GgufWriter& w) { w.set("k", {VT::kUint8, uint64_t{256}}); }},
      {"type mismatch", [&](GgufWriter& w) { w.set("k", {VT::kString, uint64_t{1}}); }},
      {"mixed array", [&](GgufWriter& w) { w.set("k", array_of(VT::kInt32, {{VT::kUint32, uint64_t{1}}})); }},
  };
  for (const auto& [what, call] : cases) {
    GgufWriter writer;
    try {
      call(writer);
      ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kInvalidArgument) << what;
    }
  }
  GgufWriter writer;
  try {
    writer.write(dir / "no-such-dir/m.gguf");
    FAIL() << "write into a missing directory succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kIo);
  }
}

// Raw little-endian bytes for hand-made files.
struct Raw {
  std::string bytes;
  Raw& u32(uint32_t v) { return put(&v, 4); }
  Raw& u64(uint64_t v) { return put(&v, 8); }
  Raw& str(const std::string& s) {
    u64(s.size());
    bytes += s;
    return *this;
  }
  Raw& put(const void* p, size_t n) {
    bytes.append(static_cast<const char*>(p), n);
    return *this;
  }
  Raw& header(uint64_t tensors, uint64_t kvs, uint32_t version = 3) { return put("GGUF", 4).u32(version).u64(tensors).u64(kvs); }
  Raw& kv_u32(const std::string& key, uint32_t v) { return str(key).u32(4).u32(v); }
  Raw& tensor_info(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
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

// A valid file with one F32 tensor of 4 values: the base that each corrupt case changes in one place.
Raw one_tensor_file(std::vector<uint64_t> ne = {4}, uint32_t type = 0, uint64_t offset = 0, size_t data = 16) {
  return Raw().header(1, 1).kv_u32("k", 1).tensor_info("t", ne, type, offset).pad(32).zeros(data);
}

TEST(Gguf, HandMadeBaseFileIsValid) {
  test::TempDir dir;
  test::write_file(dir / "ok.gguf", one_tensor_file().bytes);
  auto file = GgufFile::open(dir / "ok.gguf");
  EXPECT_EQ(file->require_tensor("t", {4}).nbytes, 16u);
  EXPECT_EQ(file->version(), 3u);
  test::write_file(dir / "v2.gguf", Raw().header(0, 1, 2).kv_u32("k", 1).bytes);
  EXPECT_EQ(GgufFile::open(dir / "v2.gguf")->version(), 2u);
}

TEST(Gguf, RejectsCorruptFiles) {
  struct Case {
    std::string name;
    std::string bytes;
    Errc code;
  };
  const uint64_t big = uint64_t{1} << 40;
  std::string bad_magic = one_tensor_file().bytes;
  bad_magic[3] = 'X';
  std::string nested_deep = Raw().header(0, 1).str("k").u32(9).bytes;
  for (int i = 0; i < 9; ++i) nested_deep += Raw().u32(9).u64(1).bytes;
  nested_deep += Raw().u32(4).u64(0).bytes;
  const std::vector<Case> cases = {
      {"empty file", "", Errc::kCorrupt},
      {"shorter than the header", "GGUF\3\0\0\0", Errc::kCorrupt},
      {"bad magic", bad_magic, Errc::kCorrupt},
      {"version 0", Raw().header(0, 0, 0).bytes, Errc::kUnsupported},
      {"version 1", Raw().header(0, 0, 1).bytes, Errc::kUnsupported},
      {"version 4", Raw().header(0, 0, 4).bytes, Errc::kUnsupported},
      {"big-endian version", Raw().header(0, 0, 0x03000000).bytes, Errc::kUnsupported},
      {"tensor_count 2^60", Raw().header(uint64_t{1} << 60, 0).bytes, Errc::kCorrupt},
      {"kv_count 2^60", Raw().header(0, uint64_t{1} << 60).bytes, Errc::kCorrupt},
      {"key length 2^63", Raw().header(0, 1).u64(uint64_t{1} << 63).bytes, Errc::kCorrupt},
      {"string value length 2^63", Raw().header(0, 1).str("k").u32(8).u64(uint64_t{1} << 63).bytes, Errc::kCorrupt},
      {"string length past end", Raw().header(0, 1).str("k").u32(8).u64(100).put("abc", 3).bytes, Errc::kCorrupt},
      {"array count 2^62", Raw().header(0, 1).str("k").u32(9).u32(4).u64(uint64_t{1} << 62).bytes, Errc::kCorrupt},
      {"string array count 2^62", Raw().header(0, 1).str("k").u32(9).u32(8).u64(uint64_t{1} << 62).bytes, Errc::kCorrupt},
      {"nested array count 2^62", Raw().header(0, 1).str("k").u32(9).u32(9).u64(uint64_t{1} << 62).bytes, Errc::kCorrupt},
      {"arrays nested 10 deep", nested_deep, Errc::kCorrupt},
      {"unknown value type", Raw().header(0, 1).str("k").u32(13).u32(0).bytes, Errc::kCorrupt},
      {"unknown array element type", Raw().header(0, 1).str("k").u32(9).u32(99).u64(0).bytes, Errc::kCorrupt},
      {"duplicate key", Raw().header(0, 2).kv_u32("k", 1).kv_u32("k", 2).bytes, Errc::kCorrupt},
      {"alignment 0", Raw().header(0, 1).kv_u32("general.alignment", 0).bytes, Errc::kCorrupt},
      {"alignment 3", Raw().header(0, 1).kv_u32("general.alignment", 3).bytes, Errc::kCorrupt},
      {"alignment as string", Raw().header(0, 1).str("general.alignment").u32(8).str("32").bytes, Errc::kCorrupt},
      {"unknown tensor type", one_tensor_file({4}, 99).bytes, Errc::kUnsupported},
      {"Q4_K tensor type", one_tensor_file({256}, 12, 0, 144).bytes, Errc::kUnsupported},
      {"n_dims 0", Raw().header(1, 0).str("t").u32(0).u32(0).u64(0).pad(32).zeros(32).bytes, Errc::kCorrupt},
      {"n_dims 5", one_tensor_file({1, 1, 1, 1, 1}).bytes, Errc::kCorrupt},
      {"negative ne", one_tensor_file({uint64_t{1} << 63}).bytes, Errc::kCorrupt},
      {"ne product overflows", one_tensor_file({big, big}).bytes, Errc::kCorrupt},
      {"byte size overflows", one_tensor_file({uint64_t{1} << 62}).bytes, Errc::kCorrupt},
      {"partial Q8_0 block", one_tensor_file({33}, 8, 0, 64).bytes, Errc::kCorrupt},
      {"tensor name of 64 bytes", Raw().header(1, 0).tensor_info(std::string(64, 'n'), {4}, 0, 0).pad(32).zeros(16).bytes,
       Errc::kCorrupt},
      {"offset not aligned", one_tensor_file({4}, 0, 16, 64).bytes, Errc::kCorrupt},
      {"data past end", one_tensor_file({4}, 0, 0, 15).bytes, Errc::kCorrupt},
      {"offset past end", one_tensor_file({4}, 0, 1 << 20).bytes, Errc::kCorrupt},
      {"offset wraps around", one_tensor_file({4}, 0, ~uint64_t{31}).bytes, Errc::kCorrupt},
      {"duplicate tensor name",
       Raw().header(2, 0).tensor_info("t", {4}, 0, 0).tensor_info("t", {4}, 0, 32).pad(32).zeros(64).bytes,
       Errc::kCorrupt},
  };
  test::TempDir dir;
  for (const auto& c : cases) {
    const std::string path = dir / "corrupt.gguf";
    test::write_file(path, c.bytes);
    EXPECT_EQ(open_error(path), c.code) << c.name;
  }
  EXPECT_EQ(open_error(dir / "missing.gguf"), Errc::kNotFound);
  EXPECT_EQ(open_error(dir.path()), Errc::kIo);
}

TEST(Gguf, ErrorsNameTheFileAndField) {
  test::TempDir dir;
  const std::string path = dir / "m.gguf";
  test::write_file(path, Raw().header(1, 0).tensor_info("blk.0.attn_q.weight", {4}, 0, 0).pad(32).zeros(8).bytes);
  try {
    GgufFile::open(path);
    FAIL() << "opened";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find("'blk.0.attn_q.weight'"), std::string::npos) << message;
    EXPECT_NE(message.find("past end of file"), std::string::npos) << message;
  }
}

// A small file with a bit of everything; the truncation and byte-flip sweeps run over it.
std::string small_file(const test::TempDir& dir) {
  GgufWriter writer;
  writer.set_string("general.architecture", "llama");
  writer.set_uint32("llama.context_length", 128);
  writer.set_string_array("tokenizer.ggml.tokens", {"<s>", "a", "bc"});
  writer.set_float32_array("tokenizer.ggml.scores", {0.0f, -1.0f, -2.0f});
  writer.set("nested", array_of(VT::kArray, {array_of(VT::kInt32, {{VT::kInt32, int64_t{1}}})}));
  const std::vector<float> x = ramp(64, 0.5f);
  writer.add_tensor_f32("q", TensorType::kQ8_0, {32, 2}, x.data());
  writer.add_tensor_f32("norm", TensorType::kF32, {3}, x.data());
  writer.write(dir / "small.gguf");
  return slurp(dir / "small.gguf");
}

TEST(Gguf, EveryTruncationIsRejected) {
  test::TempDir dir;
  const std::string full = small_file(dir);
  // The writer pads after the last tensor too: the file ends with the 12 bytes of "norm" and 20 of padding,
  // and prefixes that keep all of "norm" are valid files.
  const size_t needed = full.size() - 20;
  ASSERT_EQ(GgufFile::open(dir / "small.gguf")->tensors().back().nbytes, 12u);
  MemFile mem;
  for (size_t n = 0; n < full.size(); ++n) {
    const std::string path = mem.set(full.substr(0, n));
    if (n < needed) {
      EXPECT_EQ(open_error(path), Errc::kCorrupt) << "prefix of " << n << " bytes";
    } else {
      EXPECT_NO_THROW(GgufFile::open(path)) << "prefix of " << n << " bytes holds all tensor data";
    }
  }
}

TEST(Gguf, ByteFlipsGiveErrorsNotCrashes) {
  test::TempDir dir;
  const std::string full = small_file(dir);
  MemFile mem;
  int opened = 0, rejected = 0;
  for (size_t i = 0; i < full.size(); ++i) {
    for (uint8_t mask : {uint8_t{0xff}, uint8_t{0x80}, uint8_t{0x01}}) {
      std::string bytes = full;
      bytes[i] = static_cast<char>(bytes[i] ^ mask);
      const std::string path = mem.set(bytes);
      try {
        auto file = GgufFile::open(path);
        ++opened;
      } catch (const Error& e) {
        EXPECT_TRUE(e.code() == Errc::kCorrupt || e.code() == Errc::kUnsupported) << i << ": " << e.what();
        ++rejected;
      }
    }
  }
  EXPECT_GT(opened, 0);    // flips inside tensor data and string bytes are still valid files
  EXPECT_GT(rejected, 0);
}

TEST(Gguf, OpensRealVocabularyFiles) {
  struct Case {
    std::string file;
    std::string model;
    size_t tokens;
  };
  const std::vector<Case> cases = {
      {"ggml-vocab-bert-bge.gguf", "bert", 30522},
      {"ggml-vocab-deepseek-coder.gguf", "gpt2", 32256},
      {"ggml-vocab-gpt-2.gguf", "gpt2", 50257},
      {"ggml-vocab-llama-spm.gguf", "llama", 32000},
      {"ggml-vocab-phi-3.gguf", "llama", 32064},
  };
  for (const auto& c : cases) {
    auto file = GgufFile::open(test::shared_path("fixtures/vocab/" + c.file));
    EXPECT_EQ(file->require_string("tokenizer.ggml.model"), c.model) << c.file;
    const GgufValue* tokens = file->find("tokenizer.ggml.tokens");
    ASSERT_NE(tokens, nullptr) << c.file;
    const GgufArray& array = tokens->as_array(c.file);
    EXPECT_EQ(array.type, VT::kString) << c.file;
    EXPECT_EQ(array.values.size(), c.tokens) << c.file;
    EXPECT_FALSE(array.values[1].as_string(c.file).empty()) << c.file;
    EXPECT_FALSE(file->require_string("general.architecture").empty()) << c.file;
  }
}

}  // namespace
}  // namespace rag::nn
