// ingest::parse_html on arbitrary bytes, then the chunker on its result (see parse-check.h).
#include "tests/fuzz/parse-check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return rag::fuzz::parse_and_check(data, size, rag::ingest::parse_html);
}
