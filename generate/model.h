// The decoder: Llama and Qwen2 models from GGUF, weights used in place from the file's mapping.
//
// One layer (pre-norm, residual stream x of embedding_length floats per token):
//   h = rms_norm(x) · attn_norm
//   q, k, v = h·Wqᵀ (+bq), h·Wkᵀ (+bk), h·Wvᵀ (+bv)           biases: Qwen2 only
//   rotate q and k by position (RoPE): llama pairs adjacent values (2i, 2i+1) of a head ("normal" mode);
//   qwen2 pairs i with i + rope_dims/2 ("NEOX" mode), as llama.cpp's llama_model_rope_type says.
//   x += softmax(q·kᵀ / √head_dim over positions ≤ own) · v · Woᵀ    grouped-query: query head h reads
//                                                                   KV head h / (head_count / head_count_kv)
//   x += (silu(g·Wgateᵀ) ⊙ g·Wupᵀ) · Wdownᵀ with g = rms_norm(x) · ffn_norm
// then logits = (rms_norm(x) · output_norm) · Woutᵀ, Wout = output.weight or, when absent, token_embd.weight.
//
// Attention of Q8_0 and Q4_0 models multiplies in BF16 where the CPU has it (nn::AttentionBlock::q_pairs:
// twice the products per instruction; their activations already pass through int8 for every matrix). F32,
// F16 and BF16 models keep float products, so that an F32 model's greedy text stays exactly reproducible.
// The KV cache holds K and V in F16: half the bytes per position of F32, as llama.cpp's default cache, and
// 11 significant bits, more than BF16 weights or int8 activations carry. F32 models keep an F32 cache, for
// the same exactness.
//
// Tensor names and metadata keys are llama.cpp's (ARCH is general.architecture):
//   ARCH.context_length, ARCH.embedding_length, ARCH.block_count, ARCH.feed_forward_length,
//   ARCH.attention.head_count, ARCH.attention.head_count_kv (default head_count),
//   ARCH.attention.key_length (default embedding_length / head_count),
//   ARCH.attention.layer_norm_rms_epsilon, ARCH.rope.dimension_count (default head_dim),
//   ARCH.rope.freq_base (default 10000)
//   token_embd.weight, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up,
//   ffn_down}.weight, blk.N.attn_{q,k,v}.bias, output_norm.weight, output.weight
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "generate/generate.h"
#include "generate/kv-cache.h"
#include "nn/gguf.h"
#include "nn/kernels.h"
#include "nn/tokenizer.h"

namespace rag::generate {

enum class RopeMode { kNormal, kNeox };

struct ModelConfig {
  std::string architecture;         // "llama" or "qwen2"
  int64_t vocab_size = 0;           // rows of token_embd.weight
  int64_t context_length = 0;       // positions a sequence may use
  int64_t embedding_length = 0;     // width of the residual stream
  int64_t feed_forward_length = 0;
  int64_t layer_count = 0;
  int64_t head_count = 0;
  int64_t head_count_kv = 0;
  int64_t head_dim = 0;
  int64_t rope_dims = 0;            // leading values of each head that RoPE rotates (even, ≤ head_dim)
  float rope_freq_base = 10000.0f;
  RopeMode rope_mode = RopeMode::kNormal;
  float rms_eps = 1e-5f;
  int32_t bos_id = -1;              // -1 when the vocabulary names none
  int32_t eos_id = -1;
  nn::TensorType kv_type = nn::TensorType::kF32;  // the KV cache's values (KvCacheType: F16 unless F32 weights)

  int64_t q_dim() const { return head_count * head_dim; }
  int64_t kv_dim() const { return head_count_kv * head_dim; }
  KvLayout kv_layout() const { return KvLayout{layer_count, kv_dim(), kv_type, head_count_kv}; }
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;   // embedding_length floats (converted to F32 at load)
  std::vector<float> bq, bk, bv;           // q_dim, kv_dim, kv_dim floats; empty when the model has none
  nn::Weights wq, wk, wv, wo;
  nn::Weights gate, up, down;
};

// One forward pass over tokens of one or more sequences. Token i sits at position positions[i] of the
// sequence whose K/V are kv[i]; a sequence's tokens appear in position order and continue where its
// KvBlocks::length ends. The pass writes their K/V, then advances each sequence's length.
struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int64_t> positions;
  std::vector<KvBlocks*> kv;          // per token, not owned
  std::vector<uint8_t> want_logits;   // per token: 1 to compute its logits
};

// Buffers a forward pass reuses between calls (one per thread of control; not shared).
struct ForwardScratch {
  std::vector<float> x, h, q, k, v, attn, ff_gate, ff_up, scores;
  std::vector<int32_t> visible;   // attention: per query row of a tile, the keys of a block it sees
  std::vector<uint32_t> q_pairs;  // attention in BF16: per thread, a tile's queries as bfloat16 pairs
  std::vector<float> kv_f32;      // attention over an F16 cache: per thread, one block's K and V as floats
  std::vector<float> rope;   // per token: rope_dims / 2 pairs (cos θ_i, sin θ_i) for its position
  struct AttentionTask {
    int64_t first, count, kv_head, keys;
  };
  std::vector<AttentionTask> attention_tasks;
};

class Model {
 public:
  // Reads and checks `path`. Throws Error(kNotFound/kIo/kCorrupt/kUnsupported) naming the file and the
  // tensor or key at fault.
  static std::unique_ptr<Model> load(const std::string& path, KvCacheType kv_cache = KvCacheType::kAuto);

  const ModelConfig& config() const { return config_; }
  const nn::GgufFile& file() const { return *file_; }
  const std::string& weight_type_name() const { return weight_type_name_; }
  // The vocabulary from tokenizer.ggml.*; null when the file has none (tests' random models).
  const nn::Tokenizer* tokenizer() const { return tokenizer_.get(); }

  // Runs `batch`; writes vocab_size logits per token that wants them into `logits`, in batch order
  // (resized). Throws Error(kLimit) when a position reaches the context length or its cache's capacity and
  // Error(kInvalidArgument) for a token id outside the vocabulary; nothing is written then.
  void forward(const Batch& batch, ForwardScratch& scratch, std::vector<float>& logits) const;

 private:
  Model() = default;
  void check_batch(const Batch& batch) const;
  void embed(int32_t token, float* out) const;
  void attention(const Batch& batch, int64_t layer, ForwardScratch& s) const;

  std::unique_ptr<nn::GgufFile> file_;
  ModelConfig config_;
  std::string weight_type_name_;
  std::unique_ptr<nn::Tokenizer> tokenizer_;
  nn::Weights token_embd_;
  std::vector<LayerWeights> layers_;
  std::vector<float> output_norm_;
  nn::Weights output_;
  bool attention_bf16_ = false;  // quantized weights: attention in BF16 where nn::attention_bf16_available
};

// RoPE for position `pos`: writes rope_dims / 2 pairs (cos θ_i, sin θ_i), θ_i = pos · base^(-2i / rope_dims),
// into `cos_sin` (rope_dims floats).
void rope_angles(const ModelConfig& config, int64_t pos, float* cos_sin);
// Rotates one vector of `head_count` heads (head_dim floats each) in place by the angles of rope_angles.
void apply_rope(const ModelConfig& config, const float* cos_sin, float* x, int64_t head_count);

}  // namespace rag::generate
