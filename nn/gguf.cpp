// GGUF reading and writing. The rules follow llama.cpp's ggml/src/gguf.cpp: version 2 or 3 only,
// general.alignment a u32 nonzero power of two, tensor names shorter than 64 bytes, 1..4 dimensions, no
// negative or overflowing shapes, offsets aligned, data inside the file, no duplicate keys or names.
// Beyond that, every count is checked against the bytes left before anything is allocated for it, so the
// memory a hostile file can make us use is bounded by a small multiple of its size.
#include "nn/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include "common/error.h"

namespace rag::nn {
namespace {

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint32_t kVersion = 3;
constexpr size_t kDefaultAlignment = 32;
constexpr size_t kHeaderBytes = 4 + 4 + 8 + 8;      // magic, version, tensor_count, kv_count
constexpr uint64_t kMaxStringBytes = 1ull << 26;    // longest metadata string (chat templates are ~10 KB)
constexpr size_t kMaxTensorName = 63;               // ggml's GGML_MAX_NAME - 1
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;                   // arrays of arrays: recursion over untrusted structure
constexpr size_t kMaxPadding = 4096;                // zeros written per call when padding tensor data
// Smallest encodings, used to bound counts by the bytes left before allocating for them.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;         // empty key, type, a 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, n_dims, one ne, type, offset

const char* value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8: return "uint8";
    case GgufValueType::kInt8: return "int8";
    case GgufValueType::kUint16: return "uint16";
    case GgufValueType::kInt16: return "int16";
    case GgufValueType::kUint32: return "uint32";
    case GgufValueType::kInt32: return "int32";
    case GgufValueType::kFloat32: return "float32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "string";
    case GgufValueType::kArray: return "array";
    case GgufValueType::kUint64: return "uint64";
    case GgufValueType::kInt64: return "int64";
    case GgufValueType::kFloat64: return "float64";
  }
  return "unknown";
}

bool value_type_known(uint32_t id) { return id <= static_cast<uint32_t>(GgufValueType::kFloat64); }

// Encoded size of a scalar; 0 for strings and arrays, whose size depends on their contents.
size_t scalar_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
      return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray:
      return 0;
  }
  return 0;
}

uint64_t min_encoded_bytes(GgufValueType type) {
  if (type == GgufValueType::kString) return 8;
  if (type == GgufValueType::kArray) return 4 + 8;
  return scalar_bytes(type);
}

std::string shape_text(const std::vector<int64_t>& ne) {
  std::string out = "[";
  for (size_t i = 0; i < ne.size(); ++i) out += (i ? ", " : "") + std::to_string(ne[i]);
  return out + "]";
}

bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

int64_t GgufTensor::element_count() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

int64_t GgufValue::as_int(const std::string& what) const {
  if (const auto* u = std::get_if<uint64_t>(&value)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(Errc::kCorrupt, "{}: value {} does not fit a signed 64-bit integer", what, *u);
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  fail(Errc::kCorrupt, "{}: expected an integer, found {}", what, value_type_name(type));
}

double GgufValue::as_float(const std::string& what) const {
  if (const auto* d = std::get_if<double>(&value)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&value)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<double>(*i);
  fail(Errc::kCorrupt, "{}: expected a number, found {}", what, value_type_name(type));
}

bool GgufValue::as_bool(const std::string& what) const {
  if (const auto* b = std::get_if<bool>(&value)) return *b;
  fail(Errc::kCorrupt, "{}: expected a bool, found {}", what, value_type_name(type));
}

const std::string& GgufValue::as_string(const std::string& what) const {
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  fail(Errc::kCorrupt, "{}: expected a string, found {}", what, value_type_name(type));
}

const GgufArray& GgufValue::as_array(const std::string& what) const {
  if (const auto* a = std::get_if<std::shared_ptr<GgufArray>>(&value); a && *a) return **a;
  fail(Errc::kCorrupt, "{}: expected an array, found {}", what, value_type_name(type));
}

// Parses a mapped file into GgufFile's members. Every read goes through take(), which checks the bytes left.
class GgufReaderImpl {
 public:
  GgufReaderImpl(GgufFile& file, const uint8_t* bytes, size_t size) : file_(file), bytes_(bytes), size_(size) {}

  void parse() {
    if (std::memcmp(bytes_, kMagic, sizeof kMagic) != 0)
      fail(Errc::kCorrupt, "{}: not a GGUF file (the first 4 bytes are not \"GGUF\")", path());
    pos_ = 4;
    const uint32_t version = read_u32("version");
    if (version == 1)
      fail(Errc::kUnsupported, "{}: GGUF version 1 is no longer supported; reconvert the model with a current llama.cpp",
           path());
    if ((version & 0xffff) == 0)
      fail(Errc::kUnsupported, "{}: GGUF version field {:#x} looks byte-swapped: big-endian files are not supported",
           path(), version);
    if (version != 2 && version != kVersion)
      fail(Errc::kUnsupported, "{}: GGUF version {} is not supported (only 2 and 3)", path(), version);
    file_.version_ = version;

    const uint64_t tensor_count = read_u64("tensor_count");
    const uint64_t kv_count = read_u64("kv_count");
    if (kv_count > left() / kMinKvBytes)
      fail(Errc::kCorrupt, "{}: kv_count {} cannot fit in the {} bytes left", path(), kv_count, left());
    read_metadata(kv_count);
    read_alignment();
    if (tensor_count > left() / kMinTensorInfoBytes)
      fail(Errc::kCorrupt, "{}: tensor_count {} cannot fit in the {} bytes left", path(), tensor_count, left());
    read_tensor_infos(tensor_count);
    place_tensor_data();
  }

 private:
  const std::string& path() const { return file_.path_; }
  uint64_t left() const { return size_ - pos_; }

  const uint8_t* take(uint64_t n, const std::string& what) {
    if (n > left())
      fail(Errc::kCorrupt, "{}: {}: needs {} bytes at offset {} but only {} are left (truncated file?)", path(), what,
           n, pos_, left());
    const uint8_t* p = bytes_ + pos_;
    pos_ += n;
    return p;
  }

  template <typename T>
  T read_scalar(const std::string& what) {
    T v;
    std::memcpy(&v, take(sizeof v, what), sizeof v);
    return v;
  }
  uint32_t read_u32(const std::string& what) { return read_scalar<uint32_t>(what); }
  uint64_t read_u64(const std::string& what) { return read_scalar<uint64_t>(what); }

  std::string read_string(const std::string& what, uint64_t max_bytes) {
    const uint64_t n = read_u64(what + " length");
    if (n > max_bytes) fail(Errc::kCorrupt, "{}: {}: length {} exceeds the limit of {}", path(), what, n, max_bytes);
    const uint8_t* p = take(n, what);
    return std::string(reinterpret_cast<const char*>(p), n);
  }

  GgufValueType read_type(const std::string& what) {
    const uint32_t id = read_u32(what + " type");
    if (!value_type_known(id)) fail(Errc::kCorrupt, "{}: {}: unknown value type {}", path(), what, id);
    return static_cast<GgufValueType>(id);
  }

  GgufValue read_value(GgufValueType type, const std::string& what, int depth) {
    GgufValue v;
    v.type = type;
    switch (type) {
      case GgufValueType::kUint8: v.value = uint64_t{read_scalar<uint8_t>(what)}; break;
      case GgufValueType::kInt8: v.value = int64_t{read_scalar<int8_t>(what)}; break;
      case GgufValueType::kUint16: v.value = uint64_t{read_scalar<uint16_t>(what)}; break;
      case GgufValueType::kInt16: v.value = int64_t{read_scalar<int16_t>(what)}; break;
      case GgufValueType::kUint32: v.value = uint64_t{read_scalar<uint32_t>(what)}; break;
      case GgufValueType::kInt32: v.value = int64_t{read_scalar<int32_t>(what)}; break;
      case GgufValueType::kUint64: v.value = read_scalar<uint64_t>(what); break;
      case GgufValueType::kInt64: v.value = read_scalar<int64_t>(what); break;
      case GgufValueType::kFloat32: v.value = double{read_scalar<float>(what)}; break;
      case GgufValueType::kFloat64: v.value = read_scalar<double>(what); break;
      case GgufValueType::kBool: v.value = read_scalar<uint8_t>(what) != 0; break;
      case GgufValueType::kString: v.value = read_string(what, kMaxStringBytes); break;
      case GgufValueType::kArray: v.value = read_array(what, depth); break;
    }
    return v;
  }

  std::shared_ptr<GgufArray> read_array(const std::string& what, int depth) {
    if (depth >= kMaxArrayDepth)
      fail(Errc::kCorrupt, "{}: {}: arrays nested deeper than {} levels", path(), what, kMaxArrayDepth);
    auto array = std::make_shared<GgufArray>();
    array->type = read_type(what + " element");
    const uint64_t count = read_u64(what + " element count");
    const uint64_t min_bytes = min_encoded_bytes(array->type);
    if (count > left() / min_bytes)
      fail(Errc::kCorrupt, "{}: {}: array of {} {} values cannot fit in the {} bytes left", path(), what, count,
           value_type_name(array->type), left());
    array->values.reserve(count);
    for (uint64_t i = 0; i < count; ++i) array->values.push_back(read_value(array->type, what, depth + 1));
    return array;
  }

  void read_metadata(uint64_t kv_count) {
    file_.metadata_.reserve(kv_count);
    for (uint64_t i = 0; i < kv_count; ++i) {
      std::string key = read_string(fmt::format("metadata key #{}", i), kMaxStringBytes);
      if (file_.metadata_index_.count(key)) fail(Errc::kCorrupt, "{}: duplicate metadata key '{}'", path(), key);
      const std::string what = "metadata '" + key + "'";
      GgufValue value = read_value(read_type(what), what, 0);
      file_.metadata_index_.emplace(key, file_.metadata_.size());
      file_.metadata_.emplace_back(std::move(key), std::move(value));
    }
  }

  void read_alignment() {
    const GgufValue* v = file_.find("general.alignment");
    if (!v) return;
    if (v->type != GgufValueType::kUint32)
      fail(Errc::kCorrupt, "{}: metadata 'general.alignment' must be uint32, found {}", path(), value_type_name(v->type));
    const uint64_t alignment = std::get<uint64_t>(v->value);
    if (!is_power_of_two(alignment))
      fail(Errc::kCorrupt, "{}: metadata 'general.alignment' is {}; it must be a nonzero power of two", path(),
           alignment);
    file_.alignment_ = alignment;
  }

  void read_tensor_infos(uint64_t tensor_count) {
    file_.tensors_.reserve(tensor_count);
    for (uint64_t i = 0; i < tensor_count; ++i) {
      GgufTensor t;
      t.name = read_string(fmt::format("tensor #{} name", i), kMaxTensorName);
      if (file_.tensor_index_.count(t.name)) fail(Errc::kCorrupt, "{}: duplicate tensor name '{}'", path(), t.name);
      const std::string what = "tensor '" + t.name + "'";
      const uint32_t n_dims = read_u32(what + " n_dims");
      if (n_dims < 1 || n_dims > kMaxDims)
        fail(Errc::kCorrupt, "{}: {}: n_dims is {}; it must be 1 to {}", path(), what, n_dims, kMaxDims);
      int64_t elements = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        const uint64_t ne = read_u64(fmt::format("{} ne[{}]", what, d));
        if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          fail(Errc::kCorrupt, "{}: {}: ne[{}] = {} is negative as int64", path(), what, d, ne);
        t.ne.push_back(static_cast<int64_t>(ne));
        if (__builtin_mul_overflow(elements, t.ne.back(), &elements))
          fail(Errc::kCorrupt, "{}: {}: shape {}... has more elements than int64 can count", path(), what,
               shape_text(t.ne));
      }
      const uint32_t type_id = read_u32(what + " type");
      if (!tensor_type_known(type_id))
        fail(Errc::kUnsupported, "{}: {}: ggml type {} is not supported (we handle F32, F16, BF16, Q8_0, Q4_0)", path(),
             what, type_id);
      t.type = static_cast<TensorType>(type_id);
      const uint64_t block = block_size(t.type);
      if (static_cast<uint64_t>(t.ne[0]) % block != 0)
        fail(Errc::kCorrupt, "{}: {}: row length ne[0] = {} is not a multiple of the {} block size {}", path(), what,
             t.ne[0], tensor_type_name(t.type), block);
      uint64_t nbytes = 0;
      if (__builtin_mul_overflow(static_cast<uint64_t>(elements) / block, type_size(t.type), &nbytes) ||
          nbytes > std::numeric_limits<size_t>::max())
        fail(Errc::kCorrupt, "{}: {}: shape {} is too large to address", path(), what, shape_text(t.ne));
      t.nbytes = nbytes;
      t.offset = read_u64(what + " offset");
      if (t.offset % file_.alignment_ != 0)
        fail(Errc::kCorrupt, "{}: {}: offset {} is not a multiple of the alignment {}", path(), what, t.offset,
             file_.alignment_);
      file_.tensor_index_.emplace(t.name, file_.tensors_.size());
      file_.tensors_.push_back(std::move(t));
    }
  }

  void place_tensor_data() {
    // The data section starts at the next multiple of the alignment; a file without tensors may end before it.
    const uint64_t alignment = file_.alignment_;
    const uint64_t data_start = pos_ + (alignment - pos_ % alignment) % alignment;
    file_.data_offset_ = data_start;
    for (auto& t : file_.tensors_) {
      uint64_t begin = 0, end = 0;
      if (__builtin_add_overflow(data_start, t.offset, &begin) || __builtin_add_overflow(begin, t.nbytes, &end) ||
          end > size_)
        fail(Errc::kCorrupt, "{}: tensor '{}': data [{} + {}, +{}) past end of file ({})", path(), t.name, data_start,
             t.offset, t.nbytes, size_);
      t.data = bytes_ + begin;
    }
  }

  GgufFile& file_;
  const uint8_t* bytes_;
  size_t size_;
  uint64_t pos_ = 0;
};

namespace {

// Model files at least this large are read into anonymous memory advised for transparent huge pages instead
// of being mapped: decode streams every weight once per token, and on 4 KiB page-cache pages the TLB misses
// cost a fifth of the bandwidth (Qwen2.5-0.5B-shaped Q8_0, 2 threads: 62 -> 74 tokens/s; a plain 1 GiB read
// 27 -> 36 GB/s). The bytes stay quantized, exactly as in the file; the file's cached pages are dropped so the
// model is not held twice. Small files (tests, vocabularies) are mapped.
constexpr size_t kHugePageCopyBytes = size_t{64} << 20;

// Returns MAP_FAILED with errno set on failure, like mmap.
void* read_into_huge_pages(int fd, size_t size, const std::string& path) {
  void* memory = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return MAP_FAILED;
  madvise(memory, size, MADV_HUGEPAGE);  // advice only: without THP the copy still works, at 4 KiB pages
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::pread(fd, static_cast<char*>(memory) + done, size - done, static_cast<off_t>(done));
    if (n <= 0) {
      const int err = n == 0 ? EIO : errno;
      if (n < 0 && err == EINTR) continue;
      munmap(memory, size);
      fail(Errc::kIo, "{}: read failed at byte {} of {}: {}", path, done, size, std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  mprotect(memory, size, PROT_READ);
  posix_fadvise(fd, 0, static_cast<off_t>(size), POSIX_FADV_DONTNEED);
  return memory;
}

}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    fail(err == ENOENT ? Errc::kNotFound : Errc::kIo, "{}: cannot open model file: {}", path, std::strerror(err));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(Errc::kIo, "{}: not a regular file", path);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < kHeaderBytes) {
    ::close(fd);
    fail(Errc::kCorrupt, "{}: file of {} bytes is smaller than the {}-byte GGUF header", path, size, kHeaderBytes);
  }
  void* map = size >= kHugePageCopyBytes ? read_into_huge_pages(fd, size, path)
                                          : mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);
  if (map == MAP_FAILED) fail(Errc::kIo, "{}: cannot map {} bytes: {}", path, size, std::strerror(err));
  file->map_ = map;
  file->map_size_ = size;
  GgufReaderImpl(*file, static_cast<const uint8_t*>(map), size).parse();
  return file;
}

GgufFile::~GgufFile() {
  if (map_) munmap(map_, map_size_);
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_int(path_ + ": metadata '" + key + "'") : fallback;
}

double GgufFile::get_float(const std::string& key, double fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_float(path_ + ": metadata '" + key + "'") : fallback;
}

std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_string(path_ + ": metadata '" + key + "'") : fallback;
}

int64_t GgufFile::require_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail(Errc::kCorrupt, "{}: missing metadata {}", path_, key);
  return v->as_int(path_ + ": metadata '" + key + "'");
}

std::string GgufFile::require_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail(Errc::kCorrupt, "{}: missing metadata {}", path_, key);
  return v->as_string(path_ + ": metadata '" + key + "'");
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufFile::require_tensor(const std::string& name, const std::vector<int64_t>& ne) const {
  const GgufTensor* t = find_tensor(name);
  if (!t)
    fail(Errc::kCorrupt, "{}: missing tensor '{}'{}", path_, name, ne.empty() ? "" : " of shape " + shape_text(ne));
  if (!ne.empty() && t->ne != ne)
    fail(Errc::kCorrupt, "{}: tensor '{}' has shape {}, expected {}", path_, name, shape_text(t->ne), shape_text(ne));
  return *t;
}


namespace {

// Checks that `v` is encodable as its declared type: the right variant alternative, in range, arrays
// homogeneous. Throws Error(kInvalidArgument) naming `what`.
void check_value(const GgufValue& v, const std::string& what, int depth) {
  auto bad = [&](const char* problem) {
    fail(Errc::kInvalidArgument, "GGUF writer: {} ({}): {}", what, value_type_name(v.type), problem);
  };
  auto check_unsigned = [&](uint64_t max) {
    const auto* u = std::get_if<uint64_t>(&v.value);
    if (!u) bad("holds a value of another type");
    if (*u > max) bad("value out of range");
  };
  auto check_signed = [&](int64_t min, int64_t max) {
    const auto* i = std::get_if<int64_t>(&v.value);
    if (!i) bad("holds a value of another type");
    if (*i < min || *i > max) bad("value out of range");
  };
  switch (v.type) {
    case GgufValueType::kUint8: check_unsigned(UINT8_MAX); return;
    case GgufValueType::kUint16: check_unsigned(UINT16_MAX); return;
    case GgufValueType::kUint32: check_unsigned(UINT32_MAX); return;
    case GgufValueType::kUint64: check_unsigned(UINT64_MAX); return;
    case GgufValueType::kInt8: check_signed(INT8_MIN, INT8_MAX); return;
    case GgufValueType::kInt16: check_signed(INT16_MIN, INT16_MAX); return;
    case GgufValueType::kInt32: check_signed(INT32_MIN, INT32_MAX); return;
    case GgufValueType::kInt64: check_signed(INT64_MIN, INT64_MAX); return;
    case GgufValueType::kFloat32:
    case GgufValueType::kFloat64:
      if (!std::holds_alternative<double>(v.value)) bad("holds a value of another type");
      return;
    case GgufValueType::kBool:
      if (!std::holds_alternative<bool>(v.value)) bad("holds a value of another type");
      return;
    case GgufValueType::kString: {
      const auto* s = std::get_if<std::string>(&v.value);
      if (!s) bad("holds a value of another type");
      if (s->size() > kMaxStringBytes) bad("string longer than readers accept");
      return;
    }
    case GgufValueType::kArray: {
      const auto* a = std::get_if<std::shared_ptr<GgufArray>>(&v.value);
      if (!a || !*a) bad("holds no array");
      if (depth + 1 >= kMaxArrayDepth) bad("arrays nested too deeply for readers");
      for (const auto& element : (*a)->values) {
        if (element.type != (*a)->type) bad("array element of another type than the array's");
        check_value(element, what, depth + 1);
      }
      return;
    }
  }
  bad("unknown value type");
}

class ByteSink {
 public:
  std::vector<uint8_t> bytes;

  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof v);
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void put_value(const GgufValue& v) {
    switch (v.type) {
      case GgufValueType::kUint8: put(static_cast<uint8_t>(std::get<uint64_t>(v.value))); return;
      case GgufValueType::kUint16: put(static_cast<uint16_t>(std::get<uint64_t>(v.value))); return;
      case GgufValueType::kUint32: put(static_cast<uint32_t>(std::get<uint64_t>(v.value))); return;
      case GgufValueType::kUint64: put(std::get<uint64_t>(v.value)); return;
      case GgufValueType::kInt8: put(static_cast<int8_t>(std::get<int64_t>(v.value))); return;
      case GgufValueType::kInt16: put(static_cast<int16_t>(std::get<int64_t>(v.value))); return;
      case GgufValueType::kInt32: put(static_cast<int32_t>(std::get<int64_t>(v.value))); return;
      case GgufValueType::kInt64: put(std::get<int64_t>(v.value)); return;
      case GgufValueType::kFloat32: put(static_cast<float>(std::get<double>(v.value))); return;
      case GgufValueType::kFloat64: put(std::get<double>(v.value)); return;
      case GgufValueType::kBool: put(static_cast<uint8_t>(std::get<bool>(v.value) ? 1 : 0)); return;
      case GgufValueType::kString: put_string(std::get<std::string>(v.value)); return;
      case GgufValueType::kArray: {
        const GgufArray& a = *std::get<std::shared_ptr<GgufArray>>(v.value);
        put(static_cast<uint32_t>(a.type));
        put<uint64_t>(a.values.size());
        for (const auto& element : a.values) put_value(element);
        return;
      }
    }
    RAG_ASSERT(!"value checked in GgufWriter::set");
  }
  void pad_to(size_t alignment) { bytes.resize((bytes.size() + alignment - 1) / alignment * alignment, 0); }
};

uint64_t align_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t written = ::write(fd, p, n);
    if (written < 0) {
      if (errno == EINTR) continue;
      fail(Errc::kIo, "{}: write failed: {}", path, std::strerror(errno));
    }
    p += written;
    n -= static_cast<size_t>(written);
  }
}

GgufValue make_array(GgufValueType type, std::vector<GgufValue> values) {
  auto array = std::make_shared<GgufArray>();
  array->type = type;
  array->values = std::move(values);
  return GgufValue{GgufValueType::kArray, std::move(array)};
}

// Checks name and shape as the reader will, and returns the tensor's size in bytes.
size_t checked_tensor_bytes(const std::string& name, TensorType type, const std::vector<int64_t>& ne,
                                   const std::vector<std::string>& existing) {
  if (name.size() > kMaxTensorName)
    fail(Errc::kInvalidArgument, "GGUF writer: tensor name '{}' is longer than {} bytes", name, kMaxTensorName);
  for (const auto& e : existing)
    if (e == name) fail(Errc::kInvalidArgument, "GGUF writer: duplicate tensor '{}'", name);
  if (!tensor_type_known(static_cast<uint32_t>(type)))
    fail(Errc::kInvalidArgument, "GGUF writer: tensor '{}': unknown type {}", name, static_cast<uint32_t>(type));
  if (ne.empty() || ne.size() > static_cast<size_t>(kMaxDims))
    fail(Errc::kInvalidArgument, "GGUF writer: tensor '{}': {} dimensions; it must be 1 to {}", name, ne.size(),
         kMaxDims);
  int64_t elements = 1;
  for (int64_t d : ne)
    if (d < 0 || __builtin_mul_overflow(elements, d, &elements))
      fail(Errc::kInvalidArgument, "GGUF writer: tensor '{}': bad shape {}", name, shape_text(ne));
  if (static_cast<uint64_t>(ne[0]) % block_size(type) != 0)
    fail(Errc::kInvalidArgument, "GGUF writer: tensor '{}': ne[0] = {} is not a multiple of {}'s block size {}", name,
         ne[0], tensor_type_name(type), block_size(type));
  size_t nbytes = 0;
  if (__builtin_mul_overflow(static_cast<size_t>(elements) / block_size(type), type_size(type), &nbytes))
    fail(Errc::kInvalidArgument, "GGUF writer: tensor '{}': shape {} is too large", name, shape_text(ne));
  return nbytes;
}

}  // namespace

void GgufWriter::set(const std::string& key, GgufValue value) {
  if (key.size() > kMaxStringBytes) fail(Errc::kInvalidArgument, "GGUF writer: metadata key too long");
  check_value(value, "metadata '" + key + "'", 0);
  if (key == "general.alignment" &&
      (value.type != GgufValueType::kUint32 || !is_power_of_two(std::get<uint64_t>(value.value))))
    fail(Errc::kInvalidArgument, "GGUF writer: general.alignment must be a uint32 power of two");
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::set_uint32(const std::string& key, uint32_t v) { set(key, {GgufValueType::kUint32, uint64_t{v}}); }
void GgufWriter::set_int32(const std::string& key, int32_t v) { set(key, {GgufValueType::kInt32, int64_t{v}}); }
void GgufWriter::set_uint64(const std::string& key, uint64_t v) { set(key, {GgufValueType::kUint64, v}); }
void GgufWriter::set_float32(const std::string& key, float v) { set(key, {GgufValueType::kFloat32, double{v}}); }
void GgufWriter::set_bool(const std::string& key, bool v) { set(key, {GgufValueType::kBool, v}); }
void GgufWriter::set_string(const std::string& key, const std::string& v) { set(key, {GgufValueType::kString, v}); }

void GgufWriter::set_string_array(const std::string& key, const std::vector<std::string>& v) {
  std::vector<GgufValue> values;
  values.reserve(v.size());
  for (const auto& s : v) values.push_back({GgufValueType::kString, s});
  set(key, make_array(GgufValueType::kString, std::move(values)));
}

void GgufWriter::set_float32_array(const std::string& key, const std::vector<float>& v) {
  std::vector<GgufValue> values;
  values.reserve(v.size());
  for (float f : v) values.push_back({GgufValueType::kFloat32, double{f}});
  set(key, make_array(GgufValueType::kFloat32, std::move(values)));
}

void GgufWriter::set_int32_array(const std::string& key, const std::vector<int32_t>& v) {
  std::vector<GgufValue> values;
  values.reserve(v.size());
  for (int32_t i : v) values.push_back({GgufValueType::kInt32, int64_t{i}});
  set(key, make_array(GgufValueType::kInt32, std::move(values)));
}

void GgufWriter::add_tensor(const std::string& name, TensorType type, const std::vector<int64_t>& ne,
                            const void* data) {
  std::vector<std::string> names;
  for (const auto& t : tensors_) names.push_back(t.name);
  const size_t nbytes = checked_tensor_bytes(name, type, ne, names);
  const auto* p = static_cast<const uint8_t*>(data);
  tensors_.push_back({name, type, ne, std::vector<uint8_t>(p, p + nbytes)});
}

void GgufWriter::add_tensor_f32(const std::string& name, TensorType type, const std::vector<int64_t>& ne,
                                const float* data) {
  std::vector<std::string> names;
  for (const auto& t : tensors_) names.push_back(t.name);
  const size_t nbytes = checked_tensor_bytes(name, type, ne, names);
  std::vector<uint8_t> bytes(nbytes);
  const int64_t row = ne[0];
  const size_t row_size = row_bytes(type, row);
  const int64_t rows = row == 0 ? 0 : static_cast<int64_t>(nbytes / std::max<size_t>(row_size, 1));
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, data + r * row, bytes.data() + r * row_size, row);
  tensors_.push_back({name, type, ne, std::move(bytes)});
}

void GgufWriter::write(const std::string& path) const {
  size_t alignment = kDefaultAlignment;
  for (const auto& [key, value] : metadata_)
    if (key == "general.alignment") alignment = std::get<uint64_t>(value.value);

  ByteSink head;
  for (char c : kMagic) head.put(c);
  head.put<uint32_t>(kVersion);
  head.put<uint64_t>(tensors_.size());
  head.put<uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    head.put_string(key);
    head.put(static_cast<uint32_t>(value.type));
    head.put_value(value);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    head.put_string(t.name);
    head.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) head.put<uint64_t>(static_cast<uint64_t>(d));
    head.put(static_cast<uint32_t>(t.type));
    head.put<uint64_t>(offset);
    offset = align_up(offset + t.bytes.size(), alignment);
  }
  head.pad_to(alignment);

  // Write beside the target and rename, so a reader sees the old file or the whole new one.
  const std::filesystem::path target(path);
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  std::string temp = (std::filesystem::path(dir) / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  const int fd = mkstemp(temp.data());
  if (fd < 0) fail(Errc::kIo, "{}: cannot create a temporary file in {}: {}", path, dir, std::strerror(errno));
  try {
    write_all(fd, head.bytes.data(), head.bytes.size(), temp);
    static const std::vector<uint8_t> zeros(kMaxPadding, 0);
    for (const auto& t : tensors_) {
      write_all(fd, t.bytes.data(), t.bytes.size(), temp);
      const size_t pad = align_up(t.bytes.size(), alignment) - t.bytes.size();
      for (size_t left = pad; left > 0;) {
        const size_t n = std::min(left, zeros.size());
        write_all(fd, zeros.data(), n, temp);
        left -= n;
      }
    }
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) fail(Errc::kIo, "{}: fsync failed: {}", temp, std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    fail(Errc::kIo, "{}: close failed: {}", temp, std::strerror(err));
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    fail(Errc::kIo, "{}: cannot rename {} into place: {}", path, temp, std::strerror(err));
  }
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace rag::nn
