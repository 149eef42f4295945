// Tiny random-weight decoders for the generate tests, written with the project's GGUF writer, and a plain
// double-precision forward pass over the same weights: the oracle the engine is compared with.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "nn/tensor.h"

namespace rag::generate::test {

struct TinySpec {
  std::string architecture = "llama";  // "llama" (normal RoPE) or "qwen2" (NEOX RoPE)
  int64_t vocab = 48;
  int64_t dim = 64;
  int64_t ff = 96;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t context = 64;
  float rope_base = 10000.0f;
  bool biases = false;   // q/k/v biases, as Qwen2 has
  bool tied = false;     // no output.weight: logits through token_embd.weight
  nn::TensorType type = nn::TensorType::kF32;   // type of every matrix (norms and biases stay F32)
  std::set<std::string> omit;                   // tensor names to leave out of the file
  // A SentencePiece vocabulary: 0 <unk>, 1 <s> (BOS), 2 </s>, then "▁w3", "▁w4", ... (token i is " w<i>").
  bool vocabulary = false;
  int32_t eos = 2;                              // tokenizer.ggml.eos_token_id
  uint32_t seed = 1;
};

// The weights as floats, by GGUF tensor name; a matrix is rows × cols, row-major (W[r * cols + c]).
struct TinyModel {
  TinySpec spec;
  std::map<std::string, std::vector<float>> tensors;
};

TinyModel make_tiny_model(const TinySpec& spec);
void write_tiny_model(const TinyModel& model, const std::string& path);

// Logits of every position when `tokens` are run in order from position 0, in double precision. With
// kv_f16, K and V are rounded through IEEE half as they enter the cache, as the decoder's F16 cache does.
std::vector<std::vector<double>> reference_logits(const TinyModel& model, const std::vector<int32_t>& tokens,
                                                  bool kv_f16 = false);

double cosine(const std::vector<double>& a, const std::vector<float>& b);

}  // namespace rag::generate::test
