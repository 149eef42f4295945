// `rag model info` and `rag model quantize` end to end: a tiny llama-shaped GGUF is built byte by byte here
// (independently of the project's writer), described, quantized to each type, and the quantized weights
// are read back from the output file at the offsets `info --tensors` reports and checked against the
// original values within each format's rounding bound.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "tests/support/support.h"

namespace rag {
namespace {

using nlohmann::json;

struct TensorSpec {
  std::string name;
  std::vector<int64_t> ne;
};

// The model: F32 everywhere, with a 2-D matrix whose rows (48) are not whole 32-element blocks.
const std::vector<TensorSpec> kTensors = {
    {"token_embd.weight", {64, 8}},      {"blk.0.attn_norm.weight", {64}}, {"blk.0.attn_q.weight", {64, 64}},
    {"blk.0.attn_q.bias", {64}},         {"blk.0.ffn_down.weight", {48, 64}}, {"output_norm.weight", {64}},
    {"output.weight", {64, 8}},
};

int64_t elements(const std::vector<int64_t>& ne) {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

class Bytes {
 public:
  std::string data;
  void u32(uint32_t v) { data.append(reinterpret_cast<const char*>(&v), 4); }
  void u64(uint64_t v) { data.append(reinterpret_cast<const char*>(&v), 8); }
  void str(const std::string& s) {
    u64(s.size());
    data += s;
  }
  void kv_string(const std::string& key, const std::string& value) {
    str(key);
    u32(8);
    str(value);
  }
  void kv_u32(const std::string& key, uint32_t value) {
    str(key);
    u32(4);
    u32(value);
  }
  void pad() { data.resize((data.size() + 31) / 32 * 32, '\0'); }
};

// Writes the model and returns its tensors' values, by name.
std::map<std::string, std::vector<float>> write_model(const std::string& path) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::map<std::string, std::vector<float>> values;
  for (const auto& t : kTensors) {
    auto& v = values[t.name];
    v.resize(static_cast<size_t>(elements(t.ne)));
    for (auto& x : v) x = normal(rng);
  }
  Bytes b;
  b.data = "GGUF";
  b.u32(3);
  b.u64(kTensors.size());
  b.u64(9);
  b.kv_string("general.architecture", "llama");
  b.kv_string("general.name", "tiny-test");
  b.kv_u32("llama.context_length", 256);
  b.kv_u32("llama.embedding_length", 64);
  b.kv_u32("llama.block_count", 1);
  b.kv_u32("llama.attention.head_count", 4);
  b.kv_string("tokenizer.ggml.model", "llama");
  b.str("tokenizer.ggml.tokens");
  b.u32(9);
  b.u32(8);
  b.u64(3);
  for (const char* token : {"<unk>", "<s>", "</s>"}) b.str(token);
  b.kv_string("tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}");
  uint64_t offset = 0;
  for (const auto& t : kTensors) {
    b.str(t.name);
    b.u32(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) b.u64(static_cast<uint64_t>(d));
    b.u32(0);  // F32
    b.u64(offset);
    offset = (offset + static_cast<uint64_t>(elements(t.ne)) * 4 + 31) / 32 * 32;
  }
  b.pad();
  for (const auto& t : kTensors) {
    const auto& v = values[t.name];
    b.data.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
    b.pad();
  }
  test::write_file(path, b.data);
  return values;
}

json info(const std::string& path) {
  const test::RunResult r = test::run_rag({"model", "info", "--json", "--tensors", path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(r.out);
}

float half_to_float(uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  const float v = e == 0 ? std::ldexp(static_cast<float>(m), -24)
                         : e == 31 ? INFINITY : std::ldexp(static_cast<float>(m + 1024), e - 25);
  return (h & 0x8000) ? -v : v;
}

uint16_t read_u16(const std::string& bytes, size_t at) {
  uint16_t v;
  std::memcpy(&v, bytes.data() + at, 2);
  return v;
}

// Checks the stored tensor against the original values: F16 within half an ulp of half precision,
// Q8_0 within d/2 and Q4_0 within d per block (d the exact scale; the half-precision rounding of the
// stored scale adds |q|·|d - d16|).
void expect_close(const std::string& file, const json& tensor, const std::vector<float>& x) {
  const std::string name = tensor["name"];
  const std::string type = tensor["type"];
  const size_t at = tensor["file_offset"];
  ASSERT_LE(at + tensor["bytes"].get<size_t>(), file.size()) << name;
  if (type == "F32") {
    for (size_t i = 0; i < x.size(); ++i) {
      float v;
      std::memcpy(&v, file.data() + at + 4 * i, 4);
      ASSERT_EQ(v, x[i]) << name << " " << i;
    }
  } else if (type == "F16") {
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_LE(std::fabs(half_to_float(read_u16(file, at + 2 * i)) - x[i]), std::fabs(x[i]) * 0x1p-11f + 0x1p-25f)
          << name << " " << i;
  } else {
    ASSERT_TRUE(type == "Q8_0" || type == "Q4_0") << type;
    const bool q8 = type == "Q8_0";
    const size_t block_bytes = q8 ? 34 : 18;
    for (size_t b = 0; b < x.size() / 32; ++b) {
      const size_t base = at + b * block_bytes;
      const float d16 = half_to_float(read_u16(file, base));
      float amax = 0, max = 0;
      for (int j = 0; j < 32; ++j)
        if (std::fabs(x[b * 32 + j]) > amax) amax = std::fabs(x[b * 32 + j]), max = x[b * 32 + j];
      const double d = q8 ? amax / 127.0 : std::fabs(max) / 8.0;
      const double bound = (q8 ? d / 2 + 127 * std::fabs(d - std::fabs(d16)) : d + 8 * std::fabs(d - std::fabs(d16))) +
                           d * 1e-5;
      for (int j = 0; j < 32; ++j) {
        float y;
        if (q8) {
          y = d16 * static_cast<int8_t>(file[base + 2 + j]);
        } else {
          const auto packed = static_cast<uint8_t>(file[base + 2 + j % 16]);
          y = d16 * ((j < 16 ? packed & 0x0f : packed >> 4) - 8);
        }
        ASSERT_LE(std::fabs(y - x[b * 32 + j]), bound) << name << " block " << b << " element " << j;
      }
    }
  }
}

TEST(E2eModelInfo, DescribesModelAsJsonAndText) {
  test::TempDir dir;
  const auto values = write_model(dir / "tiny.gguf");
  const json j = info(dir / "tiny.gguf");
  int64_t parameters = 0;
  for (const auto& t : kTensors) parameters += elements(t.ne);
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["name"], "tiny-test");
  EXPECT_EQ(j["parameters"], parameters);
  EXPECT_EQ(j["tensor_types"], json({{"F32", kTensors.size()}}));
  EXPECT_EQ(j["context_length"], 256);
  EXPECT_EQ(j["embedding_length"], 64);
  EXPECT_EQ(j["block_count"], 1);
  EXPECT_EQ(j["head_count"], 4);
  EXPECT_EQ(j["tokenizer_model"], "llama");
  EXPECT_EQ(j["vocab_size"], 3);
  EXPECT_EQ(j["chat_template"], true);
  EXPECT_TRUE(j["pooling_type"].is_null());
  EXPECT_EQ(j["file_size"], test::read_file(dir / "tiny.gguf").size());
  ASSERT_EQ(j["tensors"].size(), kTensors.size());
  const std::string file = test::read_file(dir / "tiny.gguf");
  for (size_t i = 0; i < kTensors.size(); ++i) {
    EXPECT_EQ(j["tensors"][i]["name"], kTensors[i].name);
    EXPECT_EQ(j["tensors"][i]["shape"], json(kTensors[i].ne));
    expect_close(file, j["tensors"][i], values.at(kTensors[i].name));
  }

  const test::RunResult text = test::run_rag({"model", "info", "--tensors", dir / "tiny.gguf"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  for (const char* fragment : {"llama", "tiny-test", "F32 7", "blk.0.ffn_down.weight", "48 x 64"})
    EXPECT_NE(text.out.find(fragment), std::string::npos) << fragment << "\n" << text.out;
}

TEST(E2eModelInfo, FailsClearlyOnBadInput) {
  test::TempDir dir;
  write_model(dir / "tiny.gguf");
  const std::string full = test::read_file(dir / "tiny.gguf");
  test::write_file(dir / "cut.gguf", full.substr(0, full.size() - 100));
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {{"model", "info", dir / "missing.gguf"}, 1, "missing.gguf"},
      {{"model", "info", dir / "cut.gguf"}, 1, "past end of file"},
      {{"model", "info"}, 2, "usage"},
      {{"model", "quantize", dir / "tiny.gguf", dir / "out.gguf", "--type", "q5_k"}, 2, "q5_k"},
      {{"model", "quantize", dir / "tiny.gguf", dir / "no-dir/out.gguf", "--type", "q8_0"}, 1, "no-dir"},
      {{"model", "quantize", dir / "cut.gguf", dir / "out.gguf", "--type", "q8_0"}, 1, "cut.gguf"},
  };
  for (const auto& c : cases) {
    const test::RunResult r = test::run_rag(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.args.back() << ": " << r.err;
    EXPECT_NE(r.err.find(c.fragment), std::string::npos) << r.err;
  }
}

TEST(E2eModelQuantize, ConvertsWeightMatricesWithinBounds) {
  struct Case {
    std::string type;
    std::string file_type;
    std::map<std::string, std::string> types;  // tensor → expected type
  };
  const std::vector<Case> cases = {
      {"q8_0", "mostly Q8_0",
       {{"token_embd.weight", "Q8_0"}, {"blk.0.attn_norm.weight", "F32"}, {"blk.0.attn_q.weight", "Q8_0"},
        {"blk.0.attn_q.bias", "F32"}, {"blk.0.ffn_down.weight", "F16"}, {"output_norm.weight", "F32"},
        {"output.weight", "Q8_0"}}},
      {"q4_0", "mostly Q4_0",
       {{"token_embd.weight", "Q4_0"}, {"blk.0.attn_norm.weight", "F32"}, {"blk.0.attn_q.weight", "Q4_0"},
        {"blk.0.attn_q.bias", "F32"}, {"blk.0.ffn_down.weight", "F16"}, {"output_norm.weight", "F32"},
        {"output.weight", "Q8_0"}}},
      {"f16", "mostly F16",
       {{"token_embd.weight", "F16"}, {"blk.0.attn_norm.weight", "F32"}, {"blk.0.attn_q.weight", "F16"},
        {"blk.0.attn_q.bias", "F32"}, {"blk.0.ffn_down.weight", "F16"}, {"output_norm.weight", "F32"},
        {"output.weight", "F16"}}},
  };
  test::TempDir dir;
  const auto values = write_model(dir / "tiny.gguf");
  const json before = info(dir / "tiny.gguf");
  for (const auto& c : cases) {
    SCOPED_TRACE(c.type);
    const std::string out = dir / ("tiny-" + c.type + ".gguf");
    const test::RunResult r = test::run_rag({"model", "quantize", dir / "tiny.gguf", out, "--type", c.type});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("bytes"), std::string::npos) << r.out;
    const json after = info(out);
    EXPECT_EQ(after["file_type"], c.file_type);
    EXPECT_LT(after["file_size"].get<int64_t>(), before["file_size"].get<int64_t>());
    for (const char* key : {"architecture", "name", "context_length", "vocab_size", "chat_template", "parameters"})
      EXPECT_EQ(after[key], before[key]) << key;
    const std::string file = test::read_file(out);
    ASSERT_EQ(after["tensors"].size(), kTensors.size());
    for (const auto& t : after["tensors"]) {
      EXPECT_EQ(t["type"], c.types.at(t["name"])) << t["name"];
      expect_close(file, t, values.at(t["name"]));
    }
  }
}

}  // namespace
}  // namespace rag
