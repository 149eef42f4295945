// The GGUF reader (nn::GgufFile) on arbitrary bytes; when a file is accepted, every tensor's bytes are
// read (they must lie inside the mapping), every metadata value is visited, and the tokenizer is built from
// its tokenizer.ggml.* keys and run, since a model file is where a vocabulary comes from.
#include <string>

#include "common/error.h"
#include "nn/gguf.h"
#include "nn/tokenizer.h"
#include "tests/fuzz/fuzz.h"

using namespace rag;

namespace {

size_t visit(const nn::GgufValue& v, int depth) {
  if (depth > 64) fuzz::finding("arrays nested deeper than the reader should allow");
  if (auto* a = std::get_if<std::shared_ptr<nn::GgufArray>>(&v.value)) {
    if (!*a) fuzz::finding("null array");
    size_t n = 0;
    for (const auto& e : (*a)->values) n += visit(e, depth + 1);
    return n + 1;
  }
  return 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile input("fuzz-gguf");
  const std::string& path = input.write(data, size);
  std::unique_ptr<nn::GgufFile> file;
  try {
    file = nn::GgufFile::open(path);
  } catch (const Error&) {
    return 0;
  }
  for (const auto& [key, value] : file->metadata()) visit(value, 0);
  unsigned sum = 0;
  for (const nn::GgufTensor& t : file->tensors()) {
    if (t.nbytes > 0 && t.data == nullptr) fuzz::finding("tensor with bytes but no data");
    const auto* bytes = static_cast<const uint8_t*>(t.data);
    if (t.nbytes > 0) {
      const uint64_t end = file->file_size();
      if (file->data_offset() > end || t.offset > end || t.nbytes > end || file->data_offset() + t.offset + t.nbytes > end)
        fuzz::finding("tensor bytes past the end of the file");
      sum += bytes[0] + bytes[t.nbytes - 1];
    }
  }
  (void)sum;
  try {
    auto tokenizer = nn::Tokenizer::from_gguf(*file);
    std::vector<int32_t> ids = tokenizer->encode("Hello world! <s> [CLS] <|endoftext|> 123 \xe2\x96\x81x \xff", true, true);
    for (int32_t id : ids)
      if (id < 0 || static_cast<size_t>(id) >= tokenizer->vocab_size()) fuzz::finding("token id outside the vocabulary");
    tokenizer->decode(ids);
  } catch (const Error&) {
  }
  return 0;
}
