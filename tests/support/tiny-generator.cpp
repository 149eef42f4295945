#include "tests/support/tiny-generator.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <vector>

namespace rag::test {
namespace {

// GGUF v3, little-endian: header, metadata, tensor infos, padding to the alignment, tensor data.
class Writer {
 public:
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void str(const std::string& s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  void raw(const void* p, size_t n) { bytes.append(static_cast<const char*>(p), n); }
  std::string bytes;
};

enum : uint32_t { kU32 = 4, kI32 = 5, kF32 = 6, kString = 8, kArray = 9 };

}  // namespace

void write_tiny_generator(const std::string& path, const TinyGeneratorSpec& s) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (int n = 1; n <= 12; ++n) tokens.push_back("[" + std::to_string(n) + "]");
  for (const char* w : {"the", "policy", "expenses", "days", "leave", "weeks", "is", "are", "within", "submit", "30",
                        "not", "answer", "documents", "sources", "say", "and", "of", "to", "a", ".", ","})
    tokens.push_back(std::string("\xE2\x96\x81") + w);
  while (tokens.size() < 64) tokens.push_back("\xE2\x96\x81w" + std::to_string(tokens.size()));
  types.resize(tokens.size(), 1);
  const int64_t vocab = static_cast<int64_t>(tokens.size());

  std::mt19937 rng(s.seed);
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    std::vector<float> data;
  };
  std::vector<Tensor> tensors;
  auto add = [&](const std::string& name, std::vector<int64_t> ne, float mean, float stddev) {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    std::normal_distribution<float> dist(mean, stddev);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng);
    tensors.push_back({name, std::move(ne), std::move(v)});
  };
  const int64_t head_dim = s.dim / s.heads, q_dim = s.heads * head_dim, kv_dim = s.kv_heads * head_dim;
  auto scale = [](int64_t cols) { return 1.0f / std::sqrt(static_cast<float>(cols)); };
  add("token_embd.weight", {s.dim, vocab}, 0.0f, 1.0f);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {s.dim}, 1.0f, 0.2f);
    add(p + "attn_q.weight", {s.dim, q_dim}, 0.0f, scale(s.dim));
    add(p + "attn_k.weight", {s.dim, kv_dim}, 0.0f, scale(s.dim));
    add(p + "attn_v.weight", {s.dim, kv_dim}, 0.0f, scale(s.dim));
    add(p + "attn_output.weight", {q_dim, s.dim}, 0.0f, scale(q_dim));
    add(p + "ffn_norm.weight", {s.dim}, 1.0f, 0.2f);
    add(p + "ffn_gate.weight", {s.dim, s.ff}, 0.0f, scale(s.dim));
    add(p + "ffn_up.weight", {s.dim, s.ff}, 0.0f, scale(s.dim));
    add(p + "ffn_down.weight", {s.ff, s.dim}, 0.0f, scale(s.ff));
  }
  add("output_norm.weight", {s.dim}, 1.0f, 0.2f);
  add("output.weight", {s.dim, vocab}, 0.0f, scale(s.dim));

  Writer w;
  const std::string a = "llama";
  uint64_t kv_count = 0;
  Writer meta;
  auto key = [&](const std::string& k, uint32_t type) {
    meta.str(k);
    meta.u32(type);
    ++kv_count;
  };
  auto key_u32 = [&](const std::string& k, uint32_t v) { key(k, kU32); meta.u32(v); };
  auto key_f32 = [&](const std::string& k, float v) { key(k, kF32); meta.f32(v); };
  key("general.architecture", kString);
  meta.str(a);
  key_u32("general.alignment", 32);
  key_u32(a + ".context_length", static_cast<uint32_t>(s.context));
  key_u32(a + ".embedding_length", static_cast<uint32_t>(s.dim));
  key_u32(a + ".block_count", static_cast<uint32_t>(s.layers));
  key_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.ff));
  key_u32(a + ".attention.head_count", static_cast<uint32_t>(s.heads));
  key_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.kv_heads));
  key_f32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  key_f32(a + ".rope.freq_base", 10000.0f);
  key("tokenizer.ggml.model", kString);
  meta.str("llama");
  key("tokenizer.ggml.tokens", kArray);
  meta.u32(kString);
  meta.u64(tokens.size());
  for (const auto& t : tokens) meta.str(t);
  key("tokenizer.ggml.scores", kArray);
  meta.u32(kF32);
  meta.u64(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) meta.f32(0.0f);
  key("tokenizer.ggml.token_type", kArray);
  meta.u32(kI32);
  meta.u64(types.size());
  for (int32_t t : types) meta.u32(static_cast<uint32_t>(t));
  key_u32("tokenizer.ggml.bos_token_id", 1);
  key_u32("tokenizer.ggml.eos_token_id", 2);
  key_u32("tokenizer.ggml.unknown_token_id", 0);

  w.raw("GGUF", 4);
  w.u32(3);
  w.u64(tensors.size());
  w.u64(kv_count);
  w.bytes += meta.bytes;
  uint64_t offset = 0;
  for (const Tensor& t : tensors) {
    w.str(t.name);
    w.u32(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) w.u64(static_cast<uint64_t>(d));
    w.u32(0);  // F32
    w.u64(offset);
    offset += (t.data.size() * 4 + 31) / 32 * 32;
  }
  while (w.bytes.size() % 32 != 0) w.bytes += '\0';
  for (const Tensor& t : tensors) {
    w.raw(t.data.data(), t.data.size() * 4);
    while (w.bytes.size() % 32 != 0) w.bytes += '\0';
  }
  std::ofstream out(path, std::ios::binary);
  out.write(w.bytes.data(), static_cast<std::streamsize>(w.bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace rag::test
