// The keyword index: one Xapian database per generation, one Xapian document per chunk.
//
// Terms of a chunk:
//   body, title and heading words, stemmed (English, STEM_SOME), unprefixed; title words at wdf kTitleWdf and
//   heading words at kHeadingWdf so a plain query ranks a title match above a body match; only body words
//   carry positions (phrase queries match body text);
//   "S" + title words and "H" + heading words, for title:/heading: queries;
//   "Q<chunk_id>" (unique id), "D<doc_id>", and "A<principal>" per ACL principal (boolean, wdf 0); a chunk of
//   a document with an empty ACL gets "A" + kNoAclPrincipal instead (index.h "permissions").
// docid = chunk id; value slot kSlotDocId = doc id. Metadata kChangeKey = the catalog change counter that
// the last commit reflects.
#include <climits>

#include "common/error.h"
#include "index/keyword-index-impl.h"

namespace rag::index {
namespace {

// A small English stop list (articles, pronouns, auxiliaries, prepositions); stop words are still indexed
// (TermGenerator STOP_STEMMED keeps their unstemmed form) but the query parser drops them unless quoted.
constexpr const char* kStopWords[] = {
    "a",     "about", "an",    "and",   "are",  "as",    "at",    "be",   "been", "but",   "by",    "can",
    "could", "did",   "do",    "does",  "for",  "from",  "had",   "has",  "have", "he",    "her",   "his",
    "how",   "i",     "if",    "in",    "into", "is",    "it",    "its",  "may",  "more",  "most",  "no",
    "not",   "of",    "on",    "or",    "our",  "she",   "should", "so",  "some", "such",  "than",  "that",
    "the",   "their", "them",  "then",  "there", "these", "they", "this", "those", "to",   "too",   "us",
    "very",  "was",   "we",    "were",  "what", "when",  "where", "which", "who", "whom",  "why",   "will",
    "with",  "would", "you",   "your",
};

Xapian::Stopper* shared_stopper() {
  static Xapian::SimpleStopper* stopper = [] {
    auto* s = new Xapian::SimpleStopper;
    for (const char* word : kStopWords) s->add(word);
    return s;
  }();
  return stopper;
}

Xapian::docid to_docid(int64_t chunk_id) {
  if (chunk_id < 1 || chunk_id > int64_t{UINT_MAX})
    fail(Errc::kLimit, "chunk id {} does not fit a Xapian document id; run rag rebuild to renumber", chunk_id);
  return static_cast<Xapian::docid>(chunk_id);
}

}  // namespace

Analyzer::Analyzer() : stem_("english"), stopper_(shared_stopper()) {
  generator_.set_stemmer(stem_);
  generator_.set_stemming_strategy(Xapian::TermGenerator::STEM_SOME);
  generator_.set_stopper(stopper_);
  generator_.set_stopper_strategy(Xapian::TermGenerator::STOP_STEMMED);
  generator_.set_max_word_length(kMaxWordBytes);
}

Xapian::Document Analyzer::terms(const std::string& title, const std::string& heading, const std::string& text) {
  Xapian::Document doc;
  generator_.set_document(doc);
  // Title and heading repeat on every chunk of a document: indexing them without positions keeps the
  // position table (the bulk of the writer's work) to the body, at the price of phrase queries on them.
  if (!title.empty()) {
    generator_.index_text_without_positions(title, 1, "S");
    generator_.index_text_without_positions(title, kTitleWdf);
  }
  if (!heading.empty()) {
    generator_.index_text_without_positions(heading, 1, "H");
    generator_.index_text_without_positions(heading, kHeadingWdf);
  }
  generator_.index_text(text);
  return doc;
}

bool valid_principal(std::string_view principal) {
  if (principal.empty() || principal.size() > 200) return false;
  for (unsigned char c : principal)
    if (c <= ' ' || c == 0x7f) return false;
  return true;
}

// A boolean term: prefix letter and a number. Appending, where "Q" + std::to_string(id) draws GCC 12's false
// -Wrestrict warning once inlined.
std::string id_term(char prefix, int64_t id) {
  std::string term(1, prefix);
  term += std::to_string(id);
  return term;
}

void add_ids(Xapian::Document& doc, int64_t chunk_id, int64_t doc_id, const std::vector<std::string>& acl) {
  doc.add_boolean_term(id_term('Q', chunk_id));
  doc.add_boolean_term(id_term('D', doc_id));
  for (const auto& principal : acl) {
    RAG_ASSERT(valid_principal(principal));  // checked where ACLs enter (ingest job)
    doc.add_boolean_term("A" + principal);
  }
  if (acl.empty()) doc.add_boolean_term(std::string("A") + kNoAclPrincipal);
  doc.add_value(kSlotDocId, Xapian::sortable_serialise(static_cast<double>(doc_id)));
}

void KeywordIndex::Impl::replace(int64_t chunk_id, Xapian::Document doc) {
  RAG_ASSERT(writer.has_value());
  try {
    writer->replace_document(to_docid(chunk_id), doc);
  } catch (const Xapian::Error& e) {
    fail(Errc::kInternal, "{}: cannot index chunk {}: {}", path, chunk_id, e.get_description());
  }
}

KeywordIndex::KeywordIndex(const std::string& path, Mode mode) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  try {
    if (mode == Mode::kWrite) {
      impl_->writer.emplace(path, Xapian::DB_CREATE_OR_OPEN | Xapian::DB_BACKEND_GLASS);
      impl_->reader = *impl_->writer;
    } else {
      impl_->reader = Xapian::Database(path);
    }
  } catch (const Xapian::DatabaseLockError& e) {
    fail(Errc::kBusy, "{}: the keyword index is locked by another writer: {}", path, e.get_msg());
  } catch (const Xapian::DatabaseOpeningError& e) {
    fail(mode == Mode::kRead ? Errc::kNotFound : Errc::kIo, "{}: cannot open the keyword index: {}", path,
         e.get_msg());
  } catch (const Xapian::Error& e) {
    fail(Errc::kCorrupt, "{}: cannot open the keyword index: {}; run rag rebuild", path, e.get_description());
  }
}

KeywordIndex::~KeywordIndex() = default;

void KeywordIndex::replace(const KeywordChunk& chunk) {
  for (const auto& principal : chunk.acl)
    if (!valid_principal(principal)) fail(Errc::kInvalidArgument, "ACL principal '{}' is not valid", principal);
  Xapian::Document doc = impl_->analyzer.terms(chunk.title, chunk.heading_path, chunk.text);
  add_ids(doc, chunk.chunk_id, chunk.doc_id, chunk.acl);
  impl_->replace(chunk.chunk_id, std::move(doc));
}

void KeywordIndex::remove(int64_t chunk_id) {
  RAG_ASSERT(impl_->writer.has_value());
  try {
    // By unique term, so removing an id that is not there is not an error.
    impl_->writer->delete_document(id_term('Q', chunk_id));
  } catch (const Xapian::Error& e) {
    fail(Errc::kInternal, "{}: cannot remove chunk {}: {}", impl_->path, chunk_id, e.get_description());
  }
}

void KeywordIndex::remove_all() {
  RAG_ASSERT(impl_->writer.has_value());
  try {
    // The empty term's posting list holds every document.
    std::vector<Xapian::docid> ids;
    for (auto it = impl_->writer->postlist_begin(std::string()); it != impl_->writer->postlist_end(std::string()); ++it)
      ids.push_back(*it);
    for (Xapian::docid id : ids) impl_->writer->delete_document(id);
  } catch (const Xapian::Error& e) {
    fail(Errc::kInternal, "{}: cannot clear: {}", impl_->path, e.get_description());
  }
}

void KeywordIndex::begin_batch() {
  RAG_ASSERT(impl_->writer.has_value() && !impl_->in_batch);
  try {
    impl_->writer->begin_transaction(false);  // unflushed: commit() below makes it durable
    impl_->in_batch = true;
  } catch (const Xapian::Error& e) {
    fail(Errc::kInternal, "{}: cannot begin a batch: {}", impl_->path, e.get_description());
  }
}

void KeywordIndex::commit(int64_t change_counter) {
  RAG_ASSERT(impl_->writer.has_value());
  try {
    impl_->writer->set_metadata(kChangeKey, std::to_string(change_counter));
    if (impl_->in_batch) {
      impl_->in_batch = false;
      impl_->writer->commit_transaction();
    }
    impl_->writer->commit();
  } catch (const Xapian::Error& e) {
    fail(Errc::kIo, "{}: cannot commit the keyword index: {}", impl_->path, e.get_description());
  }
}

int64_t KeywordIndex::committed_change() const {
  std::string value = impl_->reader.get_metadata(kChangeKey);
  if (value.empty()) return -1;
  try {
    return std::stoll(value);
  } catch (const std::exception&) {
    fail(Errc::kCorrupt, "{}: metadata {} is '{}', not a number; run rag rebuild", impl_->path, kChangeKey, value);
  }
}

int64_t KeywordIndex::size() const { return impl_->reader.get_doccount(); }

std::vector<int64_t> KeywordIndex::chunk_ids() const {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(size()));
  for (auto it = impl_->reader.postlist_begin(""); it != impl_->reader.postlist_end(""); ++it) out.push_back(*it);
  return out;
}

std::vector<std::string> KeywordIndex::terms(int64_t chunk_id) const {
  std::vector<std::string> out;
  if (chunk_id < 1 || chunk_id > int64_t{UINT_MAX}) return out;
  try {
    Xapian::Document doc = impl_->reader.get_document(static_cast<Xapian::docid>(chunk_id));
    for (auto it = doc.termlist_begin(); it != doc.termlist_end(); ++it) out.push_back(*it);
  } catch (const Xapian::DocNotFoundError&) {
    out.clear();
  }
  return out;
}

}  // namespace rag::index
