// Tokenizers read from GGUF metadata (the `tokenizer.ggml.*` keys of llama.cpp's converters), matching
// llama.cpp's src/llama-vocab.cpp token for token:
//
//   tokenizer.ggml.model  "bert"   WordPiece: NFD, lower case, accents stripped, split on white space and
//                                  punctuation, greedy longest match; word starts carry "▁" in the vocab
//                         "gpt2"   byte-level BPE: pre-tokenizer chosen by tokenizer.ggml.pre, bytes mapped
//                                  to printable characters, merges ranked by tokenizer.ggml.merges
//                         "llama"  SentencePiece BPE: scores decide merges, " " is "▁", optional "▁"
//                                  prefix, <0xNN> byte fallback
//
// Text in, ids out: encode() first splits out special tokens (user-defined ones always, control ones
// only with parse_special), then runs the model's algorithm on the text between them. Input that is not
// valid UTF-8 is repaired first (each invalid byte becomes U+FFFD), so every tokenizer sees valid text and
// decode(encode(x)) == utf8_repair(x) for the byte-level BPE.
//
// Work is bounded on hostile input: merges run on a priority queue over a linked list (n log n per word),
// WordPiece walks a trie; a vocabulary with duplicate tokens, too few scores or absurd sizes is refused
// with Error(kCorrupt) naming the file and key, and special ids outside the vocabulary are ignored.
//
// A Tokenizer is immutable after construction and safe to share between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rag::nn {

class GgufFile;

enum class TokenizerModel { kWordPiece, kBpe, kSentencePiece };

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0, kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6,
};

constexpr int32_t kNoToken = -1;

// Everything a tokenizer is built from, as plain data. from_gguf fills it from metadata; tests build small
// ones by hand. Ids are indexes into `tokens`; kNoToken means "this vocabulary has none".
struct Vocab {
  TokenizerModel model = TokenizerModel::kBpe;
  std::string pre;                  // tokenizer.ggml.pre: "gpt2", "llama-bpe", "qwen2", "deepseek-coder", ...
  std::string name;                 // general.name; Phi-3 vocabularies strip spaces after special tokens
  std::vector<std::string> tokens;  // token text as stored (byte-level BPE text is in GPT-2's byte map)
  std::vector<float> scores;        // empty, or one per token (SentencePiece merge priority)
  std::vector<TokenType> types;     // empty (all normal), or one per token
  std::vector<std::string> merges;  // BPE: "left right", rank = index
  int32_t bos = kNoToken, eos = kNoToken, unk = kNoToken, sep = kNoToken, pad = kNoToken;
  int32_t cls = kNoToken, mask = kNoToken;
  // Unset means the model's default: BOS for SentencePiece and llama3-style BPE, CLS/SEP for WordPiece,
  // the ▁ prefix for SentencePiece.
  std::optional<bool> add_bos, add_eos, add_space_prefix;
  bool lowercase = true;       // WordPiece normalizer
  bool strip_accents = true;   // WordPiece normalizer
};

// A pair encoded for a cross-encoder: [CLS] a [SEP] b [SEP], segment 0 up to the first SEP, then 1.
struct PairEncoding {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;  // one per id: 0 for the first segment, 1 for the second
};

class Tokenizer {
 public:
  // Reads the tokenizer.ggml.* metadata of `file`. Throws Error(kCorrupt) for malformed metadata and
  // Error(kUnsupported) for a tokenizer model or pre-tokenizer this code does not implement.
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);
  // Builds from plain data; `source` names it in error messages.
  static std::unique_ptr<Tokenizer> from_vocab(Vocab vocab, const std::string& source = "vocab");
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special adds what the vocabulary asks for: BOS (and EOS) for BPE/SentencePiece, CLS ... SEP for
  // WordPiece. parse_special turns control-token text in `text` (e.g. "<|im_start|>") into its id; leave it
  // off for untrusted text so that a document cannot forge control tokens.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special = false) const;

  // Cross-encoder input. When max_tokens > 0 the longer segment is shortened a token at a time until the
  // whole fits ("longest first"). Throws Error(kUnsupported) when the vocabulary has no CLS/BOS or SEP/EOS.
  PairEncoding encode_pair(std::string_view a, std::string_view b, size_t max_tokens = 0) const;

  // Text of `ids`. skip_special drops control and unknown tokens. Byte-level BPE gives back the exact
  // bytes; SentencePiece removes the ▁ prefix it added; WordPiece joins words with spaces (lower-cased,
  // accents stripped: it is not reversible). The result may contain invalid UTF-8 when the ids cut a
  // character; StreamDecoder handles that for streaming. Ids outside the vocabulary decode to nothing.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The bytes one token stands for, as decode() renders it in the middle of a sequence.
  std::string piece(int32_t id) const;
  // The token's text as stored in the vocabulary ("Ġthe", "▁the", "<0x0A>"); "" outside the vocabulary.
  const std::string& token_text(int32_t id) const;
  TokenType token_type(int32_t id) const;
  int32_t find(std::string_view token_text) const;  // kNoToken when absent
  bool is_control(int32_t id) const;                 // control or unknown: not text
  bool is_eog(int32_t id) const;                     // ends generation: EOS, EOT, <|im_end|>, ...

  TokenizerModel model() const;
  const std::string& pre() const;
  size_t vocab_size() const;
  int32_t bos() const;
  int32_t eos() const;
  int32_t eot() const;   // end of turn (<|im_end|>, <|eot_id|>, <|end|>), kNoToken when none
  int32_t cls() const;   // WordPiece: [CLS]; otherwise BOS
  int32_t sep() const;   // WordPiece: [SEP]; otherwise EOS
  int32_t pad() const;
  int32_t unk() const;
  bool add_bos() const;
  bool add_eos() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns a token stream into text as it is generated, emitting only whole UTF-8 characters: bytes of a
// character split across tokens (byte fallback, byte-level BPE) are held until it is complete. Invalid
// sequences come out as U+FFFD, so the output is always valid UTF-8. Not thread-safe; one per sequence.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  std::string push(int32_t token);  // the newly completed text, possibly empty
  std::string flush();              // whatever is held back, repaired; resets the decoder

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  bool at_start_ = true;
  std::string pending_;  // an incomplete UTF-8 sequence at the end of the text so far
};

}  // namespace rag::nn
