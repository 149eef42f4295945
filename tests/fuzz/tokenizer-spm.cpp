// The SentencePiece tokenizer (llama-spm, phi-3) on arbitrary text (see tokenizer.h).
#include "tests/fuzz/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto vocabs = rag::fuzz::load_vocabs({"llama-spm", "phi-3"});
  return rag::fuzz::tokenize_and_check(vocabs, data, size);
}
