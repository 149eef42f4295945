// The invariants ingest/ingest.h promises for any parsed document, checked on whatever the fuzzer feeds
// a parser, then the chunker run over the result (it reads parser output, so it is fuzzed through it).
#pragma once

#include "common/error.h"
#include "common/text.h"
#include "ingest/ingest.h"
#include "tests/fuzz/fuzz.h"

namespace rag::fuzz {

inline void check_document(const ingest::ParsedDocument& doc) {
  if (!utf8_valid(doc.text)) finding("document text is not valid UTF-8");
  if (!utf8_valid(doc.title)) finding("title is not valid UTF-8");
  for (const ingest::Block& b : doc.blocks) {
    if (b.begin > b.end || b.end > doc.text.size()) finding("block range outside the text");
    if (doc.text.compare(b.begin, b.end - b.begin, b.text) != 0) finding("block range does not hold the block's text");
  }
  for (const ingest::Chunk& c : ingest::chunk_document(doc)) {
    if (c.begin > c.end || c.end > doc.text.size()) finding("chunk range outside the text");
    if (!utf8_valid(c.text)) finding("chunk text is not valid UTF-8");
  }
}

template <typename Parse>
int parse_and_check(const uint8_t* data, size_t size, Parse parse) {
  try {
    check_document(parse(as_text(data, size), "fuzz-input"));
  } catch (const Error&) {
    // Refusing bad input with a typed error is the documented behaviour.
  }
  return 0;
}

}  // namespace rag::fuzz
