// Tokenizer::from_gguf: the tokenizer.ggml.* metadata keys written by llama.cpp's converters, read into a
// Vocab with the defaults llama.cpp applies when a key is absent.
#include <climits>
#include <optional>

#include "common/error.h"
#include "nn/gguf.h"
#include "nn/tokenizer.h"

namespace rag::nn {
namespace {

const GgufArray* find_array(const GgufFile& file, const std::string& key, GgufValueType element,
                            bool required) {
  const GgufValue* value = file.find(key);
  if (value == nullptr) {
    if (required) fail(Errc::kCorrupt, "{}: missing metadata {}", file.path(), key);
    return nullptr;
  }
  const GgufArray& array = value->as_array(file.path() + ": " + key);
  if (array.type != element)
    fail(Errc::kCorrupt, "{}: metadata {} holds elements of type {}, expected {}", file.path(), key,
         static_cast<uint32_t>(array.type), static_cast<uint32_t>(element));
  return &array;
}

std::vector<std::string> read_strings(const GgufFile& file, const std::string& key, bool required) {
  std::vector<std::string> out;
  const GgufArray* array = find_array(file, key, GgufValueType::kString, required);
  if (array == nullptr) return out;
  const std::string what = file.path() + ": " + key;
  out.reserve(array->values.size());
  for (const GgufValue& v : array->values) out.push_back(v.as_string(what));
  return out;
}

int32_t read_id(const GgufFile& file, const std::string& key, int32_t fallback) {
  int64_t id = file.get_int(key, fallback);
  // Out-of-range ids are dropped (with a warning) when the tokenizer is built.
  return id < INT32_MIN || id > INT32_MAX ? INT32_MAX : static_cast<int32_t>(id);
}

std::optional<bool> read_flag(const GgufFile& file, const std::string& key) {
  const GgufValue* value = file.find(key);
  if (value == nullptr) return std::nullopt;
  return value->as_bool(file.path() + ": " + key);
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  Vocab vocab;
  const std::string model = file.require_string("tokenizer.ggml.model");
  // Default special ids when the file does not name them, as llama.cpp assumes.
  int32_t bos = kNoToken, eos = kNoToken, unk = kNoToken, sep = kNoToken, pad = kNoToken, mask = kNoToken;
  if (model == "llama") {
    vocab.model = TokenizerModel::kSentencePiece;
    bos = 1, eos = 2, unk = 0;
  } else if (model == "bert") {
    vocab.model = TokenizerModel::kWordPiece;
    bos = 101, unk = 100, sep = 102, pad = 0, mask = 103;
  } else if (model == "gpt2") {
    vocab.model = TokenizerModel::kBpe;
  } else {
    fail(Errc::kUnsupported, "{}: tokenizer model '{}' (tokenizer.ggml.model) is not supported; expected bert, gpt2 or llama",
         file.path(), model);
  }
  vocab.pre = file.get_string("tokenizer.ggml.pre", "");
  vocab.name = file.get_string("general.name", "");
  vocab.tokens = read_strings(file, "tokenizer.ggml.tokens", true);
  if (vocab.model == TokenizerModel::kBpe) vocab.merges = read_strings(file, "tokenizer.ggml.merges", true);

  if (const GgufValue* value = file.find("tokenizer.ggml.scores")) {
    const std::string what = file.path() + ": tokenizer.ggml.scores";
    const GgufArray& array = value->as_array(what);
    vocab.scores.reserve(array.values.size());
    for (const GgufValue& v : array.values) vocab.scores.push_back(static_cast<float>(v.as_float(what)));
  }
  if (const GgufArray* array = find_array(file, "tokenizer.ggml.token_type", GgufValueType::kInt32, false)) {
    const std::string what = file.path() + ": tokenizer.ggml.token_type";
    vocab.types.reserve(array->values.size());
    for (const GgufValue& v : array->values) {
      int64_t type = v.as_int(what);
      vocab.types.push_back(type >= 0 && type <= 6 ? static_cast<TokenType>(type) : TokenType::kUndefined);
    }
  }

  vocab.bos = read_id(file, "tokenizer.ggml.bos_token_id", bos);
  vocab.eos = read_id(file, "tokenizer.ggml.eos_token_id", eos);
  vocab.unk = read_id(file, "tokenizer.ggml.unknown_token_id", unk);
  vocab.sep = read_id(file, "tokenizer.ggml.seperator_token_id", sep);  // sic: llama.cpp's spelling
  vocab.pad = read_id(file, "tokenizer.ggml.padding_token_id", pad);
  vocab.cls = read_id(file, "tokenizer.ggml.cls_token_id", kNoToken);
  vocab.mask = read_id(file, "tokenizer.ggml.mask_token_id", mask);
  vocab.add_bos = read_flag(file, "tokenizer.ggml.add_bos_token");
  vocab.add_eos = read_flag(file, "tokenizer.ggml.add_eos_token");
  vocab.add_space_prefix = read_flag(file, "tokenizer.ggml.add_space_prefix");
  if (auto lowercase = read_flag(file, "tokenizer.ggml.normalizer.lowercase")) {
    vocab.lowercase = *lowercase;
    vocab.strip_accents = *lowercase;  // coupled as in Hugging Face's BertNormalizer
  }
  if (auto strip = read_flag(file, "tokenizer.ggml.normalizer.strip_accents")) vocab.strip_accents = *strip;
  return from_vocab(std::move(vocab), file.path());
}

}  // namespace rag::nn
