// A BERT-family encoder read from GGUF (general.architecture "bert", as llama.cpp's convert_hf_to_gguf.py
// writes bge-small/base, all-MiniLM, e5, ms-marco-MiniLM cross-encoders): sentence embeddings and
// cross-encoder scores. XLM-R based models (bge-m3, bge-reranker-base/large) need a SentencePiece-UGM
// tokenizer nn/tokenizer.h does not have and are refused at open (Error(kUnsupported)); RoBERTa-style
// pairs (<s> q </s></s> p </s>) are not laid out: pairs are always [CLS] q [SEP] p [SEP].
//
// The forward pass is post-norm BERT, as HF transformers and llama.cpp's build_bert compute it:
//   x = LN(token_embd[id] + token_types[type] + position_embd[position])     position counts from 0
//   per layer:  a = attn_output(attention(attn_q x, attn_k x, attn_v x));  x = LN(x + a)
//               f = ffn_down(gelu(ffn_up x));                              x = LN(x + f)
//   attention is bidirectional, per head, scaled by 1/sqrt(head size), over the tokens of the same
//   sequence only: a batch packs sequences end to end, so no sequence sees another or any padding, and a
//   sequence gives the same result in any batch as alone (within float rounding: GEMM tiles may round a
//   row differently by its position in the batch).
// Then, by bert.pooling_type:
//   1 mean   mean of the sequence's last hidden states, L2-normalised          (all-MiniLM, e5)
//   2 CLS    the first token's last hidden state, L2-normalised                 (bge)
//   4 rank   score = (cls.output · tanh(cls · h_CLS + cls.bias) + cls.output.bias)[0]   (rerankers; llama.cpp's
//            LLAMA_POOLING_TYPE_RANK; without cls.output the score is tanh(...)[0], as llama.cpp does)
// An embedding model (mean or CLS) embeds; a reranker (rank) scores pairs. Asking one for the other's job is
// Error(kUnsupported). A file without bert.pooling_type is mean pooling unless it has a cls head (rank).
//
// Weights are used in place from the mapped file, in any type nn/kernels.h multiplies (F32, F16, BF16, Q8_0,
// Q4_0); only the small vectors (biases, norms) are copied to float at open. Every tensor's presence, type
// and shape and every metadata value is checked at open: a malformed model is Error(kCorrupt) naming the
// file and the tensor or key, never a crash later.
//
// Text goes through the file's tokenizer (tokenizer.ggml.*, WordPiece for BERT; nn/tokenizer.h), which
// repairs invalid UTF-8, and is cut to max_tokens():
//   single text      [CLS] t [SEP]: t keeps its first max_tokens() - 2 tokens.
//   pair             [CLS] q [SEP] p [SEP], token type 0 up to the first [SEP], 1 after (when the model has a
//                    second token type; else all 0). With B = max_tokens() - 3 tokens for q and p: when
//                    q + p > B the passage is cut first, to max(B - q, min(p, B / 2)) tokens (its beginning
//                    kept); the query then keeps what is left of B. So a long query cannot crowd out the
//                    passage entirely.
//
// Thread safety: an Encoder is immutable after open(); embed and score calls may run concurrently from
// several threads (each call allocates its own scratch). Each call uses OpenMP and OpenBLAS threads inside,
// so call it from outside OpenMP parallel regions (nn/kernels.h's matmul asserts that).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rag::nn {

// Values as GGUF's {arch}.pooling_type stores them (llama.cpp's llama_pooling_type).
enum class Pooling { kMean = 1, kCls = 2, kRank = 4 };

std::string_view pooling_name(Pooling pooling);   // "mean", "cls", "rank"

// One sequence as token ids, for callers that tokenize themselves (and for tests).
struct EncoderSequence {
  std::vector<int32_t> ids;     // token ids in [0, vocab), [CLS] first; 1 to max_tokens() of them
  std::vector<int32_t> types;   // token type (segment) of each id, in [0, token type count); empty = all 0
};

// The model's shape as read from the file.
struct EncoderConfig {
  std::string name;             // general.name, or the file name without directory when absent
  int64_t dim = 0;              // bert.embedding_length: hidden size, and the embedding size
  int64_t layers = 0;           // bert.block_count
  int64_t heads = 0;            // bert.attention.head_count; divides dim
  int64_t ffn = 0;              // bert.feed_forward_length
  int64_t vocab = 0;            // rows of token_embd.weight
  int64_t context = 0;          // bert.context_length: rows of position_embd.weight
  int64_t token_types = 0;      // rows of token_types.weight; 0 when the file has none
  double eps = 1e-12;           // bert.attention.layer_norm_epsilon
  Pooling pooling = Pooling::kMean;
  int64_t classes = 0;          // outputs of the classification head (rank models); 0 for embedders
};

class Encoder {
 public:
  // Opens and validates a GGUF encoder. Throws Error(kNotFound/kIo/kCorrupt/kUnsupported) naming the file.
  static std::unique_ptr<Encoder> open(const std::string& gguf_path);
  ~Encoder();
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  const EncoderConfig& config() const;
  int dim() const;                 // floats per embedding
  int max_tokens() const;          // tokens per sequence, [CLS] and [SEP]s included
  Pooling pooling() const;
  bool is_reranker() const { return pooling() == Pooling::kRank; }
  // "NAME/POOLING/dDIM/HASH": HASH (16 hex digits) covers the metadata (tokenizer included) and every
  // tensor's name, type, shape and bytes, so two files give the same identity only when they embed alike.
  // Index manifests record it to catch a changed embedder.
  const std::string& identity() const;

  // n × dim() floats, row-major (text i at [i * dim(), (i + 1) * dim())), each row of L2 norm 1 (a row of
  // zeros only if the model's output is exactly zero). Texts are cut as described at the top; any text is
  // accepted (an empty one is [CLS] [SEP]). Empty `texts` gives an empty vector. Throws Error(kUnsupported)
  // for a reranker.
  std::vector<float> embed(const std::vector<std::string>& texts) const;
  // One relevance score per passage for (query, passage) pairs, higher is more relevant (a logit: unbounded,
  // comparable across passages of one query). Throws Error(kUnsupported) for an embedding model.
  std::vector<float> score_pairs(std::string_view query, const std::vector<std::string>& passages) const;

  // The same on token ids. Throws Error(kInvalidArgument) for an empty or too long sequence, an id out of the
  // vocabulary, a type out of range, or types of another length than ids.
  std::vector<float> embed_tokens(const std::vector<EncoderSequence>& sequences) const;
  std::vector<float> score_tokens(const std::vector<EncoderSequence>& sequences) const;
  // The last layer's output for every token, before pooling: (Σ lengths) × dim() floats, sequences in order.
  std::vector<float> hidden_states(const std::vector<EncoderSequence>& sequences) const;

  // The token ids embed() and score_pairs() run, exposed so that callers can count and show them.
  EncoderSequence tokenize(std::string_view text) const;
  EncoderSequence tokenize_pair(std::string_view query, std::string_view passage) const;

  struct Impl;

 private:
  explicit Encoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rag::nn
