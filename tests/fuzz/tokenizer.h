// The tokenizer targets: llama.cpp's test vocabularies (the fixtures tests/nn checks conformance with),
// loaded once, and arbitrary text. The first input byte picks the vocabulary and the flags; the rest is
// the text. Checked on every input: ids inside the vocabulary, StreamDecoder output valid UTF-8,
// encode_pair's shape and length cap, and for byte-level BPE the documented round trip
// decode(encode(x)) == utf8_repair(x).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/text.h"
#include "nn/gguf.h"
#include "nn/tokenizer.h"
#include "tests/fuzz/fuzz.h"

namespace rag::fuzz {

inline std::vector<std::unique_ptr<nn::Tokenizer>> load_vocabs(std::initializer_list<const char*> names) {
  std::vector<std::unique_ptr<nn::Tokenizer>> out;
  for (const char* name : names) {
    auto file = nn::GgufFile::open(std::string(RAG_SHARED_DIR) + "/fixtures/vocab/ggml-vocab-" + name + ".gguf");
    out.push_back(nn::Tokenizer::from_gguf(*file));
  }
  return out;
}

inline void check_ids(const nn::Tokenizer& t, const std::vector<int32_t>& ids) {
  for (int32_t id : ids)
    if (id < 0 || static_cast<size_t>(id) >= t.vocab_size()) finding("token id outside the vocabulary");
}

inline int tokenize_and_check(const std::vector<std::unique_ptr<nn::Tokenizer>>& vocabs, const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const nn::Tokenizer& t = *vocabs[flags % vocabs.size()];
  const bool add_special = flags & 0x10, parse_special = flags & 0x20;
  const std::string_view text = as_text(data + 1, size - 1);
  try {
    std::vector<int32_t> ids = t.encode(text, add_special, parse_special);
    check_ids(t, ids);
    nn::StreamDecoder stream(t, !parse_special);
    for (int32_t id : ids)
      if (!utf8_valid(stream.push(id))) finding("StreamDecoder emitted invalid UTF-8");
    if (!utf8_valid(stream.flush())) finding("StreamDecoder flushed invalid UTF-8");
    std::string decoded = t.decode(ids, flags & 0x40);
    if (t.model() == nn::TokenizerModel::kBpe && !add_special && !parse_special && decoded != utf8_repair(text))
      finding("byte-level BPE: decode(encode(x)) != utf8_repair(x)");

    // Split the text in two for a cross-encoder pair, capped at a length from the flags.
    const size_t half = text.size() / 2, cap = (flags >> 6) * 8;
    if (t.cls() != nn::kNoToken && t.sep() != nn::kNoToken) {
      nn::PairEncoding pair = t.encode_pair(text.substr(0, half), text.substr(half), cap);
      check_ids(t, pair.ids);
      if (pair.ids.size() != pair.type_ids.size()) finding("pair ids and type ids differ in length");
      if (cap > 0 && pair.ids.size() > cap) finding("pair longer than max_tokens");
    }
  } catch (const Error&) {
  }
  return 0;
}

}  // namespace rag::fuzz
