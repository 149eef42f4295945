// The generator: a Llama/Qwen2-family decoder loaded from GGUF, and text generation for one sequence.
//
//   auto model = rag::generate::load_model("qwen2.5-0.5b-q8_0.gguf");
//   auto prompt = rag::generate::tokenize(*model, "Once upon a time", true);   // BOS, if the model uses one
//   rag::generate::GenerateOptions options;             // greedy, 256 tokens, stop at EOS
//   auto result = rag::generate::generate(*model, prompt, options,
//                                         [](int32_t, std::string_view text) { fputs(...); return true; });
//
// The model is immutable once loaded and may be shared by threads; each generate() call owns its own KV
// cache and scratch memory. Weights are read in place from the file's mapping. To run many sequences at
// once over one model (a server), with a shared paged KV cache and a prefix cache, use engine.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rag::generate {

class Model;  // private: generate/model.h

// What the KV cache holds. kAuto: F16 for every model whose weights are not F32 (half the memory, the
// rounding llama.cpp's default cache has too), F32 for F32 models (so that their output stays exact).
enum class KvCacheType { kAuto, kF16, kF32 };
// "auto", "f16" or "f32"; anything else is Error(kInvalidArgument) naming the choices.
KvCacheType parse_kv_cache_type(std::string_view name);

// Throws rag::Error: kNotFound/kIo when the file cannot be read, kCorrupt naming the tensor or metadata key
// when it is not a well-formed Llama/Qwen2 model, kUnsupported for other architectures and tensor types.
std::shared_ptr<const Model> load_model(const std::string& path, KvCacheType kv_cache = KvCacheType::kAuto);

struct ModelInfo {
  std::string path;             // the GGUF file it was loaded from
  std::string architecture;     // general.architecture: "llama" or "qwen2"
  std::string weight_type;      // element type of the layer matrices: "F32", "F16", "Q8_0", ...
  int64_t vocab_size = 0;       // token ids are [0, vocab_size); one logit each
  int64_t context_length = 0;   // most positions (prompt plus generated tokens) one sequence may use
  int64_t embedding_length = 0; // width of the residual stream
  int64_t layer_count = 0;      // decoder blocks
  int64_t head_count = 0;       // query heads
  int64_t head_count_kv = 0;    // key/value heads, dividing head_count (fewer: grouped-query attention)
  int32_t bos_id = -1;          // -1 when the vocabulary names none
  int32_t eos_id = -1;          // ends generation (as do the vocabulary's other end-of-turn tokens)
};
ModelInfo model_info(const Model& model);

// Token ids for `text` through the model's vocabulary (tokenizer.ggml.*). With `add_special`, the tokens
// the vocabulary asks for around a text (tokenizer.ggml.add_bos_token: BOS for Llama, none for Qwen2).
// Control-token spellings in `text` stay text. Throws Error(kUnsupported) when the file has no vocabulary.
std::vector<int32_t> tokenize(const Model& model, std::string_view text, bool add_special);

struct SamplingOptions {
  float temperature = 0.0f;  // 0: greedy (the most likely token, the lowest id on ties); else in (0, 100]
  int top_k = 40;            // keep the k most likely tokens before drawing; 0 keeps all
  float top_p = 0.95f;       // then the fewest most-likely tokens whose probability reaches p; 1 keeps all
  uint64_t seed = 0;         // the same seed, options and model give the same tokens
  // OpenAI penalties, applied to the logits before everything above (greedy too): a token's logit loses
  // frequency_penalty × (times it was generated so far) + presence_penalty × (1 if it was generated at all).
  // Only generated tokens count, not the prompt. Each in [-2, 2]; 0 turns it off.
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
};

struct GenerateOptions {
  SamplingOptions sampling;
  int64_t max_tokens = 256;  // tokens generated after the prompt, at most
  bool stop_at_eos = true;   // stop (without emitting it) when the model produces its EOS token
  // More token ids that end generation like EOS (not emitted, not in Generation::tokens), whatever stop_at_eos.
  std::vector<int32_t> stop_tokens;
  // Generation ends when its text contains one of these (non-empty) strings; the string and anything after
  // it are not returned. Text that could still be the start of a stop string is held back from the callback
  // until it cannot, so streamed text never shows part of one. The token that completes it stays in tokens.
  std::vector<std::string> stop_strings;
  // Runaway repetition: stop when the last repetition_window generated tokens are one cycle of at most
  // repetition_max_cycle tokens repeated (window 64, cycle ≤ 16: a cycle of 16 seen 4 times, or one token 64
  // times in a row). Normal text does not repeat a short span verbatim 64 tokens long. 0 disables either.
  int64_t repetition_window = 64;
  int64_t repetition_max_cycle = 16;
};

enum class StopReason {
  kMaxTokens,    // max_tokens were generated                      finish reason "length"
  kEos,          // the model produced its EOS token               "stop"
  kContextFull,  // the sequence reached the model's context length "context"
  kCallback,     // the token callback returned false              "cancelled"
  kStopToken,    // the model produced one of stop_tokens          "stop"
  kStopString,   // the text reached one of stop_strings           "stop"
  kRepetition,   // runaway repetition (repetition_window)         "repetition"
};

// The OpenAI-style finish reason of `stop`: "stop", "length", "context", "cancelled" or "repetition".
const char* finish_reason(StopReason stop);

struct Generation {
  std::vector<int32_t> tokens;  // generated ids, without the prompt and without the final EOS
  std::string text;             // their text, as streamed to the callback (cut before a stop string)
  StopReason stop = StopReason::kMaxTokens;
};

// Called once per generated token with the text that token releases: whole UTF-8 characters only, so it
// may be empty (a token holding the first bytes of a character, or text held back as a possible stop string)
// or hold several characters. Return false to stop. Runs on the calling thread.
using TokenCallback = std::function<bool(int32_t token, std::string_view text)>;

// Runs the prompt (non-empty; the caller adds the BOS) in one prefill pass, then generates one token at a
// time. Throws Error(kLimit) when the prompt alone does not fit the context length, kInvalidArgument for a
// token id outside the vocabulary or an option out of range. Stops with kContextFull rather than failing
// when generation reaches the end of the context.
Generation generate(const Model& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                    const TokenCallback& on_token = {});

}  // namespace rag::generate
