// Tiny random-weight BERT models (embedder or cross-encoder) written as GGUF v3, byte by byte, for tests that
// need a real nn::Encoder behind an embedder or a reranker without any downloaded weights.
//
// Header-only and free of nn/ so that every suite can use it, test_e2e included (it links rag_common only).
// The vocabulary is WordPiece as llama.cpp's converter stores it ("▁" starts a word): the special tokens, a few
// dozen common English words, and every lowercase letter and digit both as a word start and as a continuation,
// so any ASCII word tokenizes into pieces (never all [UNK]) and different texts get different vectors.
// Weights are F32 normal(0, 0.3) from `seed` (norm weights around 1): the vectors mean nothing, but the model
// is deterministic, so the same file embeds the same text the same way.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace rag::test {

struct TinyBertSpec {
  bool reranker = false;   // rank pooling with a classification head; else mean pooling
  int64_t dim = 32;
  int64_t ffn = 64;
  int64_t heads = 2;
  int64_t layers = 1;
  int64_t context = 64;    // max tokens per sequence
  uint32_t seed = 5;
  std::string name = "tiny-bert";
};

inline std::vector<std::string> tiny_bert_vocab() {
  std::vector<std::string> t = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (const char* w : {"the", "of", "and", "in", "to", "is", "for", "with", "on", "by", "that", "cat", "dog",
                        "cell", "cells", "protein", "gene", "cancer", "patients", "study", "risk", "vacation", "days",
                        "policy", "travel", "expense", "limit", "how", "many", "what", ".", ",", "?", "-", "(", ")"})
    t.push_back(std::string("\u2581") + w);
  for (char c = 'a'; c <= 'z'; ++c) t.push_back(std::string("\u2581") + c), t.push_back(std::string(1, c));
  for (char c = '0'; c <= '9'; ++c) t.push_back(std::string("\u2581") + c), t.push_back(std::string(1, c));
  return t;
}

namespace tiny_bert_detail {

struct Bytes {
  std::string data;
  void u32(uint32_t v) { data.append(reinterpret_cast<const char*>(&v), 4); }
  void u64(uint64_t v) { data.append(reinterpret_cast<const char*>(&v), 8); }
  void f32(float v) { data.append(reinterpret_cast<const char*>(&v), 4); }
  void str(const std::string& s) { u64(s.size()), data += s; }
  void pad() { data.resize((data.size() + 31) / 32 * 32, '\0'); }
  void kv_u32(const std::string& key, uint32_t v) { str(key), u32(4), u32(v); }
  void kv_f32(const std::string& key, float v) { str(key), u32(6), f32(v); }
  void kv_str(const std::string& key, const std::string& v) { str(key), u32(8), str(v); }
  void kv_bool(const std::string& key, bool v) { str(key), u32(7), data.push_back(v ? 1 : 0); }
};

struct Tensor {
  std::string name;
  std::vector<int64_t> ne;
};

}  // namespace tiny_bert_detail

// Writes the model to `path` (overwriting). Throws std::runtime_error when the file cannot be written.
inline void write_tiny_bert(const std::string& path, const TinyBertSpec& spec = {}) {
  using namespace tiny_bert_detail;
  const std::vector<std::string> vocab = tiny_bert_vocab();
  const int64_t d = spec.dim, v = static_cast<int64_t>(vocab.size());
  std::vector<Tensor> tensors = {{"token_embd.weight", {d, v}}, {"position_embd.weight", {d, spec.context}},
                                 {"token_types.weight", {d, 2}}, {"token_embd_norm.weight", {d}},
                                 {"token_embd_norm.bias", {d}}};
  for (int64_t l = 0; l < spec.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
      tensors.push_back({p + m + ".weight", {d, d}});
      tensors.push_back({p + m + ".bias", {d}});
    }
    tensors.push_back({p + "ffn_up.weight", {d, spec.ffn}});
    tensors.push_back({p + "ffn_up.bias", {spec.ffn}});
    tensors.push_back({p + "ffn_down.weight", {spec.ffn, d}});
    tensors.push_back({p + "ffn_down.bias", {d}});
    for (const char* norm : {"attn_output_norm", "layer_output_norm"}) {
      tensors.push_back({p + norm + ".weight", {d}});
      tensors.push_back({p + norm + ".bias", {d}});
    }
  }
  if (spec.reranker) {
    tensors.push_back({"cls.weight", {d, d}});
    tensors.push_back({"cls.bias", {d}});
    tensors.push_back({"cls.output.weight", {d, 1}});
    tensors.push_back({"cls.output.bias", {1}});
  }

  Bytes kv;
  uint64_t kv_count = 0;
  auto count = [&kv_count] { ++kv_count; };
  kv.kv_str("general.architecture", "bert"), count();
  kv.kv_str("general.name", spec.name), count();
  kv.kv_u32("bert.embedding_length", static_cast<uint32_t>(d)), count();
  kv.kv_u32("bert.block_count", static_cast<uint32_t>(spec.layers)), count();
  kv.kv_u32("bert.feed_forward_length", static_cast<uint32_t>(spec.ffn)), count();
  kv.kv_u32("bert.attention.head_count", static_cast<uint32_t>(spec.heads)), count();
  kv.kv_f32("bert.attention.layer_norm_epsilon", 1e-12f), count();
  kv.kv_u32("bert.context_length", static_cast<uint32_t>(spec.context)), count();
  kv.kv_u32("bert.pooling_type", spec.reranker ? 4 : 1), count();
  kv.kv_str("tokenizer.ggml.model", "bert"), count();
  kv.kv_bool("tokenizer.ggml.normalizer.lowercase", true), count();
  kv.kv_u32("tokenizer.ggml.cls_token_id", 2), count();
  kv.kv_u32("tokenizer.ggml.seperator_token_id", 3), count();
  kv.kv_u32("tokenizer.ggml.unknown_token_id", 1), count();
  kv.kv_u32("tokenizer.ggml.padding_token_id", 0), count();
  kv.str("tokenizer.ggml.tokens"), kv.u32(9), kv.u32(8), kv.u64(vocab.size()), count();
  for (const auto& t : vocab) kv.str(t);

  Bytes b;
  b.data = "GGUF";
  b.u32(3);
  b.u64(tensors.size());
  b.u64(kv_count);
  b.data += kv.data;
  uint64_t offset = 0;
  for (const Tensor& t : tensors) {
    b.str(t.name);
    b.u32(static_cast<uint32_t>(t.ne.size()));
    int64_t n = 1;
    for (int64_t e : t.ne) b.u64(static_cast<uint64_t>(e)), n *= e;
    b.u32(0);  // F32
    b.u64(offset);
    offset = (offset + static_cast<uint64_t>(n) * 4 + 31) / 32 * 32;
  }
  b.pad();
  std::mt19937 rng(spec.seed);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (const Tensor& t : tensors) {
    int64_t n = 1;
    for (int64_t e : t.ne) n *= e;
    const bool norm_weight = t.name.find("norm.weight") != std::string::npos;
    for (int64_t i = 0; i < n; ++i) b.f32((norm_weight ? 1.0f : 0.0f) + normal(rng));
    b.pad();
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(b.data.data(), static_cast<std::streamsize>(b.data.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace rag::test
