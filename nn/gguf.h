// GGUF files (the format of llama.cpp/ggml), versions 2 and 3.
//
//   magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//   kv_count × (string key | u32 value_type | value)        string = u64 length + bytes (no NUL)
//   tensor_count × (string name | u32 n_dims | n_dims × u64 ne | u32 ggml_type | u64 offset)
//   padding to general.alignment (default 32) | tensor data, each tensor at data_start + offset
//
// The reader maps the file and hands out tensors in place (no copies). Every count, length, offset and
// size is checked against the bytes left and against sanity caps before it is used: a truncated, corrupt
// or hostile file is an rag::Error(kCorrupt) naming the file and the field, never a crash or a huge
// allocation.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "nn/tensor.h"

namespace rag::nn {

enum class GgufValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6, kBool = 7,
  kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};

struct GgufArray;

// A metadata value. Arrays hold elements of one type; arrays of arrays are allowed by the format.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint32;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<GgufArray>> value;

  // Conversions that check the stored type; a mismatch throws Error(kCorrupt) naming `what`.
  int64_t as_int(const std::string& what) const;     // any integer type (uint64 above INT64_MAX fails)
  double as_float(const std::string& what) const;    // float32/float64 (and integers)
  bool as_bool(const std::string& what) const;
  const std::string& as_string(const std::string& what) const;
  const GgufArray& as_array(const std::string& what) const;
};

struct GgufArray {
  GgufValueType type = GgufValueType::kUint8;  // element type
  std::vector<GgufValue> values;
};

// A tensor as stored: ne[0] is the fastest-varying dimension (a row of a matrix has ne[0] elements;
// ggml order). `data` points into the mapping (reader) or the caller's buffer (writer).
struct GgufTensor {
  std::string name;
  TensorType type = TensorType::kF32;
  std::vector<int64_t> ne;   // 1..4 dimensions
  uint64_t offset = 0;       // from the start of the data section
  const void* data = nullptr;
  size_t nbytes = 0;         // row_bytes(type, ne[0]) * product(ne[1..])

  int64_t element_count() const;
};

class GgufFile {
 public:
  // Opens and validates `path`. Throws Error(kNotFound/kIo/kCorrupt/kUnsupported).
  static std::unique_ptr<GgufFile> open(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  // File offset of the data section: tensor t's bytes are at data_offset() + t.offset in the file (past
  // the end of a file without tensors).
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return map_size_; }

  // Metadata, in file order (duplicate keys are rejected when reading).
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;   // nullptr when absent
  // Typed lookups with a default for absent keys; a present key of the wrong type throws.
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  // Required lookups: an absent key throws Error(kCorrupt) "FILE: missing metadata KEY".
  int64_t require_int(const std::string& key) const;
  std::string require_string(const std::string& key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(const std::string& name) const;   // nullptr when absent
  // Throws Error(kCorrupt) naming the file, tensor and expected shape when absent or of another shape
  // (an empty `ne` accepts any shape).
  const GgufTensor& require_tensor(const std::string& name, const std::vector<int64_t>& ne = {}) const;

 private:
  GgufFile() = default;
  std::string path_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t> metadata_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  friend class GgufReaderImpl;
};

// Builds a GGUF v3 file in memory order and writes it. Tensor data is copied when added.
// Everything is checked when it is added, against the rules the reader enforces (value type matches the
// variant and fits its range, arrays homogeneous, general.alignment a uint32 power of two, tensor names
// under 64 bytes and unique, 1..4 non-negative dimensions, ne[0] a whole number of blocks): a violation
// throws Error(kInvalidArgument) naming the key or tensor, so write() produces only files we can read.
// Numeric values are stored in GgufValue's variant as uint64_t (unsigned types), int64_t (signed types)
// or double (float32/float64).
class GgufWriter {
 public:
  void set(const std::string& key, GgufValue value);        // replaces an existing key of the same name
  void set_uint32(const std::string& key, uint32_t v);
  void set_int32(const std::string& key, int32_t v);
  void set_uint64(const std::string& key, uint64_t v);
  void set_float32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_float32_array(const std::string& key, const std::vector<float>& v);
  void set_int32_array(const std::string& key, const std::vector<int32_t>& v);

  // `data` holds the tensor in `type`'s block layout: row_bytes(type, ne[0]) * rows bytes.
  void add_tensor(const std::string& name, TensorType type, const std::vector<int64_t>& ne, const void* data);
  // Convenience: converts row-major float data (ne[0] per row) to `type` (quantizing if needed).
  void add_tensor_f32(const std::string& name, TensorType type, const std::vector<int64_t>& ne, const float* data);

  // Writes to a temporary file beside `path`, fsyncs and renames into place. Throws Error(kIo).
  void write(const std::string& path) const;

 private:
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  struct Pending {
    std::string name;
    TensorType type;
    std::vector<int64_t> ne;
    std::vector<uint8_t> bytes;
  };
  std::vector<Pending> tensors_;
};

}  // namespace rag::nn
