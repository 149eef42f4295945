// Writes the decoder benchmark's model: a Qwen2 decoder shaped like Qwen2.5-0.5B (width 896, 24 layers,
// 14 heads / 2 KV heads, FFN 4864, q/k/v biases, output tied to token_embd) with the GPT-2 vocabulary of
// ../shared/fixtures/vocab/ggml-vocab-gpt-2.gguf (50257 tokens; its tokenizer.* metadata is copied) and
// random weights, once as Q8_0 and once as Q4_0. llama.cpp runs the same files, so the two engines can be
// compared on equal work. The files are about 0.43 GB and 0.23 GB: write them outside the repository.
//
//   build/bench/make-bench-model /tmp      -> /tmp/bench-qwen2-q8_0.gguf, /tmp/bench-qwen2-q4_0.gguf
//   build/bench/make-bench-model /tmp --layers 2 --vocab-file F   smaller, for quick runs
//
// Weights are uniform with σ = 0.02 (the usual initialisation scale), norms 1 ± 0.1, biases of σ: random,
// but with activations of realistic size, so no kernel meets denormals or overflow.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "nn/gguf.h"
#include "nn/tensor.h"

namespace {

using rag::nn::TensorType;

struct Shape {
  int64_t dim = 896, ff = 4864, layers = 24, heads = 14, kv_heads = 2, context = 32768;
};

// xorshift64*: fast enough to fill 400 M weights in seconds, and the same file on every run.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ULL + 1) {}
  float uniform() {  // in [-1, 1)
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    const uint64_t r = state_ * 0x2545F4914F6CDD1DULL;
    return static_cast<float>(r >> 40) / static_cast<float>(1 << 23) - 1.0f;
  }

 private:
  uint64_t state_;
};

std::vector<float> random_values(Random& random, int64_t n, float sigma) {
  std::vector<float> v(static_cast<size_t>(n));
  const float a = sigma * std::sqrt(3.0f);
  for (float& x : v) x = a * random.uniform();
  return v;
}

// Layer matrices are generated and quantized one at a time, so memory holds the quantized file only.
void write_model(const rag::nn::GgufFile& vocab, const Shape& s, TensorType type, const std::string& path) {
  rag::nn::GgufWriter w;
  int64_t n_vocab = 0;
  for (const auto& [key, value] : vocab.metadata()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    w.set(key, value);
    if (key == "tokenizer.ggml.tokens") n_vocab = static_cast<int64_t>(value.as_array(key).values.size());
  }
  if (n_vocab == 0) rag::fail(rag::Errc::kCorrupt, "{}: no tokenizer.ggml.tokens", vocab.path());
  const std::string a = "qwen2";
  const int64_t head_dim = s.dim / s.heads, kv_dim = s.kv_heads * head_dim;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "rag decoder benchmark (Qwen2.5-0.5B shape, random weights)");
  w.set_uint32(a + ".context_length", static_cast<uint32_t>(s.context));
  w.set_uint32(a + ".embedding_length", static_cast<uint32_t>(s.dim));
  w.set_uint32(a + ".block_count", static_cast<uint32_t>(s.layers));
  w.set_uint32(a + ".feed_forward_length", static_cast<uint32_t>(s.ff));
  w.set_uint32(a + ".attention.head_count", static_cast<uint32_t>(s.heads));
  w.set_uint32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.kv_heads));
  w.set_float32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_float32(a + ".rope.freq_base", 1000000.0f);
  // llama.cpp's file type ids: 7 = MOSTLY_Q8_0, 2 = MOSTLY_Q4_0.
  w.set_uint32("general.file_type", type == TensorType::kQ8_0 ? 7 : 2);

  Random random(type == TensorType::kQ8_0 ? 8 : 4);
  constexpr float kSigma = 0.02f;
  auto matrix = [&](const std::string& name, int64_t cols, int64_t rows) {
    const std::vector<float> v = random_values(random, rows * cols, kSigma);
    w.add_tensor_f32(name, type, {cols, rows}, v.data());
  };
  auto vector = [&](const std::string& name, int64_t n, float base, float noise) {
    std::vector<float> v = random_values(random, n, noise);
    for (float& x : v) x += base;
    w.add_tensor_f32(name, TensorType::kF32, {n}, v.data());
  };
  matrix("token_embd.weight", s.dim, n_vocab);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vector(p + "attn_norm.weight", s.dim, 1.0f, 0.1f);
    vector(p + "ffn_norm.weight", s.dim, 1.0f, 0.1f);
    matrix(p + "attn_q.weight", s.dim, s.dim);
    matrix(p + "attn_k.weight", s.dim, kv_dim);
    matrix(p + "attn_v.weight", s.dim, kv_dim);
    vector(p + "attn_q.bias", s.dim, 0.0f, kSigma);
    vector(p + "attn_k.bias", kv_dim, 0.0f, kSigma);
    vector(p + "attn_v.bias", kv_dim, 0.0f, kSigma);
    matrix(p + "attn_output.weight", s.dim, s.dim);
    matrix(p + "ffn_gate.weight", s.dim, s.ff);
    matrix(p + "ffn_up.weight", s.dim, s.ff);
    matrix(p + "ffn_down.weight", s.ff, s.dim);
  }
  vector("output_norm.weight", s.dim, 1.0f, 0.1f);
  w.write(path);
  std::printf("%s\n", path.c_str());
}

int usage() {
  std::fprintf(stderr,
               "usage: make-bench-model OUT_DIR [--layers N] [--vocab-file GGUF]\n"
               "writes OUT_DIR/bench-qwen2-q8_0.gguf and OUT_DIR/bench-qwen2-q4_0.gguf\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string out_dir = argv[1];
  std::string vocab_path = std::string(RAG_SHARED_DIR) + "/fixtures/vocab/ggml-vocab-gpt-2.gguf";
  Shape shape;
  for (int i = 2; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--layers" && i + 1 < argc) {
      shape.layers = std::atoll(argv[++i]);
      if (shape.layers < 1 || shape.layers > 1024) return usage();
    } else if (arg == "--vocab-file" && i + 1 < argc) {
      vocab_path = argv[++i];
    } else {
      return usage();
    }
  }
  try {
    const auto vocab = rag::nn::GgufFile::open(vocab_path);
    write_model(*vocab, shape, TensorType::kQ8_0, out_dir + "/bench-qwen2-q8_0.gguf");
    write_model(*vocab, shape, TensorType::kQ4_0, out_dir + "/bench-qwen2-q4_0.gguf");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make-bench-model: %s\n", e.what());
    return 1;
  }
  return 0;
}
