// Private to index/: the Xapian side of KeywordIndex, shared by keyword-index.cpp, searcher.cpp and the
// ingest job (which builds term lists on its parser threads, so the writer thread only adds ids).
#pragma once

#include <xapian.h>

#include <optional>
#include <string>
#include <vector>

#include "index/index.h"

namespace rag::index {

// Term weighting: a plain query word found in a title or heading outranks the same word in body text.
constexpr unsigned kTitleWdf = 5;
constexpr unsigned kHeadingWdf = 3;
constexpr unsigned kMaxWordBytes = 64;  // longer "words" (base64, hashes) are not indexed

// BM25 parameters in one place (a later issue tunes them on SciFact). Xapian's defaults are k1=1, k2=0,
// k3=1, b=0.5, min_normlen=0.5; these are the classic Robertson values.
struct Bm25Params {
  double k1 = 1.2, k2 = 0.0, k3 = 1.0, b = 0.75, min_normlen = 0.5;
};
constexpr Bm25Params kBm25;

// Value slots.
constexpr Xapian::valueno kSlotDocId = 0;  // sortable_serialise(doc_id)

constexpr const char* kChangeKey = "rag.change_counter";  // Xapian metadata: catalog change counter reflected

// A stemmer, stopper and term generator configured for our corpus; one per thread.
class Analyzer {
 public:
  Analyzer();
  // The terms of a chunk (title, heading, body) without ids: the expensive part, safe on any thread.
  Xapian::Document terms(const std::string& title, const std::string& heading, const std::string& text);
  const Xapian::Stem& stemmer() const { return stem_; }
  const Xapian::Stopper& stopper() const { return *stopper_; }

 private:
  Xapian::Stem stem_;
  Xapian::Stopper* stopper_;  // owned by a process-wide static: Xapian holds it by pointer
  Xapian::TermGenerator generator_;
};

// Adds the unique id term, the document and ACL boolean terms and the value slot to a document from terms().
void add_ids(Xapian::Document& doc, int64_t chunk_id, int64_t doc_id, const std::vector<std::string>& acl);

// Principals usable as terms: non-empty, no white space or control bytes, short enough for a Xapian term.
bool valid_principal(std::string_view principal);

struct KeywordIndex::Impl {
  std::string path;
  std::optional<Xapian::WritableDatabase> writer;
  Xapian::Database reader;  // the writer itself when writing
  Analyzer analyzer;
  bool in_batch = false;  // inside begin_batch() ... commit()

  void replace(int64_t chunk_id, Xapian::Document doc);
};

}  // namespace rag::index
