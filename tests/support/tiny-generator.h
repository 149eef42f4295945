// A tiny random-weight Llama-family generator with a vocabulary, written as GGUF without the project's
// libraries (so any test suite, including the e2e one, can make one). Its vocabulary (SentencePiece "llama")
// holds citation markers "[1]".."[12]" as single tokens beside plain words, so sampled text is full of
// markers, valid and not, for the service's citation checks to sort out.
#pragma once

#include <cstdint>
#include <string>

namespace rag::test {

struct TinyGeneratorSpec {
  int64_t dim = 64;
  int64_t ff = 96;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t context = 4096;
  uint32_t seed = 7;
};

// Writes the model to `path`. Token ids: 0 <unk>, 1 <s> (BOS), 2 </s> (EOS), then markers and words.
void write_tiny_generator(const std::string& path, const TinyGeneratorSpec& spec = {});

}  // namespace rag::test
