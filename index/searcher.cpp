// Keyword search: Xapian BM25 over chunks, resolved through the catalog into paths, pages and snippets.
//
// Readers take no lock. The catalog is committed before Xapian (see ingest-job.cpp), so a hit whose chunk is
// no longer in the catalog was deleted by a writer in flight: it is skipped, never shown with stale text.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "common/log.h"
#include "common/text.h"
#include "index/keyword-index-impl.h"

namespace rag::index {
namespace {

constexpr size_t kMaxQueryBytes = 4096;
// Snippet markers that cannot occur in the text handed to Xapian (we replace them there first), so the
// caller's own markers ("**") never clash with the chunk's text.
constexpr char kMarkBegin = '\x01';
constexpr char kMarkEnd = '\x02';

// MSet::snippet escapes &, < and > for HTML; our callers want plain text. One pass, so "&amp;lt;" (a literal
// "&lt;" in the source) comes back as "&lt;".
std::string plain_snippet(const std::string& html, const std::string& begin, const std::string& end) {
  static constexpr std::pair<std::string_view, char> kEntities[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''}};
  std::string out;
  out.reserve(html.size());
  for (size_t i = 0; i < html.size();) {
    char c = html[i];
    if (c == kMarkBegin || c == kMarkEnd) {
      out += c == kMarkBegin ? begin : end;
      ++i;
      continue;
    }
    if (c == '&') {
      bool matched = false;
      for (auto [entity, replacement] : kEntities) {
        if (html.compare(i, entity.size(), entity) == 0) {
          out += replacement;
          i += entity.size();
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    out += c;
    ++i;
  }
  return out;
}

// One line of the chunk's text around the query's words, with the caller's highlight markers.
std::string snippet(const Xapian::MSet& mset, std::string body, const SearchOptions& options,
                    const Xapian::Stem& stemmer) {
  std::replace(body.begin(), body.end(), kMarkBegin, ' ');
  std::replace(body.begin(), body.end(), kMarkEnd, ' ');
  // No SNIPPET_BACKGROUND_MODEL: it looks up the term frequency of every word of the chunk in the database
  // (about half of a 100k-chunk retrieval's time went there) only to prefer "interesting" context words.
  std::string html = mset.snippet(body, options.snippet_bytes, stemmer, Xapian::MSet::SNIPPET_EXHAUSTIVE,
                                  std::string(1, kMarkBegin), std::string(1, kMarkEnd), "...");
  // Chunk text keeps paragraph breaks; a snippet is one line.
  return collapse_whitespace(plain_snippet(html, options.highlight_begin, options.highlight_end));
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

// The vector side: its own catalog connection (so it may run beside the keyword side), the FAISS index of
// the Searcher's generation, and the ACL filters built for it. One lock around all of it. The manifest is
// read and the FAISS file opened with the Searcher, as Xapian opens its tables then: writers may remove the
// generation afterwards (three publishes retire it), and the open file still loads. The index itself is
// read on first use, so a BM25-only reader never pays for it (a published generation never changes).
//
// ACL filter cache: key = catalog change counter + sorted principal set, so an ACL change in the catalog
// drops the entries; a principal set's filter serves only that exact set.
//
// The loaded index is shared by every Searcher of the process that reads the same file (path, hash and
// kind): a server's pool holds a reader per request in flight, and each used to load its own copy (eight
// readers at a million vectors of dimension 384: 8 × 1.7 GB, and seconds of loading for each first query).
// VectorIndex's const members may run from several threads at once. An entry lives while a Searcher holds it.
class SharedVectorIndexes {
 public:
  static SharedVectorIndexes& instance() {
    static SharedVectorIndexes shared;
    return shared;
  }
  // The index for `key`, loaded by `load` unless a Searcher holds it already. One load at a time: a second
  // reader of the same file waits for the first instead of reading it again.
  template <typename Load>
  std::shared_ptr<const VectorIndex> get(const std::string& key, Load&& load) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::erase_if(indexes_, [](const auto& entry) { return entry.second.expired(); });
    if (auto it = indexes_.find(key); it != indexes_.end())
      if (auto alive = it->second.lock()) return alive;
    std::shared_ptr<const VectorIndex> loaded = load();
    indexes_[key] = loaded;
    return loaded;
  }
  int64_t alive() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::count_if(indexes_.begin(), indexes_.end(), [](const auto& entry) { return !entry.second.expired(); });
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::weak_ptr<const VectorIndex>> indexes_;
};

struct Searcher::Vectors {
  static constexpr size_t kMaxCachedFilters = 32;

  std::mutex mutex;
  std::string data_dir;
  int64_t gen = 0;
  std::unique_ptr<Catalog> catalog;
  std::optional<VectorManifest> manifest;              // none: this generation has no vectors
  std::unique_ptr<FILE, int (*)(FILE*)> file{nullptr, std::fclose};  // the manifest's FAISS file
  std::string file_path;                               // for messages
  int open_error = 0;                                  // errno of the failed fopen when file is null
  std::exception_ptr manifest_error;                   // a manifest that could not be read
  std::shared_ptr<const VectorIndex> index;            // null until the first vector query; a failed load is
                                                       // retried (and reported) by the next one
  std::list<std::pair<std::string, std::shared_ptr<const VectorFilter>>> filters;  // most recent first

  Vectors(const std::string& dir, int64_t generation) : data_dir(dir), gen(generation) {
    try {
      manifest = read_manifest(data_dir, gen);
    } catch (const Error&) {
      manifest_error = std::current_exception();  // thrown by whatever needs the vectors: BM25 still answers
    }
    if (!manifest) return;
    file_path = generation_path(data_dir, gen) + "/" + manifest->file;
    file.reset(std::fopen(file_path.c_str(), "rbe"));
    open_error = file ? 0 : errno;  // reported by vector queries: BM25 still answers
  }

  // The manifest, or its read error; none when the generation has no vectors.
  const std::optional<VectorManifest>& checked_manifest() const {
    if (manifest_error) std::rethrow_exception(manifest_error);
    return manifest;
  }

  void load() {
    if (index || !checked_manifest()) return;
    if (!file)
      fail(open_error == ENOENT ? Errc::kNotFound : Errc::kIo, "{}: cannot open the vector index: {}; run rag "
           "verify --repair", file_path, std::strerror(open_error));
    const std::string key = file_path + '\n' + manifest->hash + '\n' + manifest->kind;
    auto loaded = SharedVectorIndexes::instance().get(key, [&] {
      auto fresh =
          VectorIndex::load(file.get(), file_path, manifest->hash, {}, parse_vector_index_kind(manifest->kind));
      spdlog::debug("search: {}: loaded {} vectors ({}) of generation {}", data_dir, fresh->size(), manifest->kind,
                    gen);
      return fresh;
    });
    if (loaded->dim() != manifest->dim || loaded->size() != manifest->vectors)
      fail(Errc::kCorrupt, "{}: manifest says {} vectors of dimension {}, the file has {} of {}; run rag verify "
           "--repair", manifest_path(data_dir, gen), manifest->vectors, manifest->dim, loaded->size(), loaded->dim());
    index = std::move(loaded);
  }

  std::shared_ptr<const VectorFilter> filter_for(const std::vector<std::string>& principals) {
    std::vector<std::string> sorted = principals;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    std::string key = std::to_string(catalog->change_counter());
    for (const auto& p : sorted) key += '\n' + p;
    for (auto it = filters.begin(); it != filters.end(); ++it) {
      if (it->first != key) continue;
      filters.splice(filters.begin(), filters, it);
      return it->second;
    }
    std::vector<std::string> valid;
    for (const auto& p : sorted)
      if (valid_principal(p)) valid.push_back(p);
    auto filter = std::make_shared<const VectorFilter>(index->filter(catalog->chunk_ids_readable_by(valid)));
    filters.emplace_front(key, filter);
    if (filters.size() > kMaxCachedFilters) filters.pop_back();
    return filter;
  }
};

Searcher::Searcher(const std::string& data_dir) : data_dir_(data_dir) {
  if (!exists(catalog_path(data_dir)))
    fail(Errc::kNotFound, "{}: no index here; run rag ingest PATH --data {} first", data_dir, data_dir);
  int64_t gen = current_generation(data_dir);
  if (gen == 0)
    fail(Errc::kNotFound, "{}: no index generation yet (CURRENT missing); run rag ingest PATH --data {}", data_dir,
         data_dir);
  generation_ = gen;
  catalog_ = std::make_unique<Catalog>(catalog_path(data_dir), Catalog::Mode::kRead);
  keywords_ = std::make_unique<KeywordIndex>(keyword_path(data_dir, gen), KeywordIndex::Mode::kRead);
  vectors_ = std::make_unique<Vectors>(data_dir, gen);
}

Searcher::~Searcher() = default;

int64_t loaded_vector_indexes() { return SharedVectorIndexes::instance().alive(); }

namespace {

std::string checked_query(std::string_view query, const SearchOptions& options) {
  if (options.k < 1 || options.k > kMaxK)
    fail(Errc::kInvalidArgument, "k: {} is out of range [1, {}]", options.k, kMaxK);
  if (query.size() > kMaxQueryBytes)
    fail(Errc::kInvalidArgument, "query: {} bytes is longer than the {} allowed", query.size(), kMaxQueryBytes);
  std::string text(query);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) fail(Errc::kInvalidArgument, "query: is empty");
  return text;
}

// The parsed query, restricted to options.principals when set.
Xapian::Query keyword_query(KeywordIndex::Impl& impl, const std::string& text, const SearchOptions& options,
                            bool filtered) {
  Xapian::QueryParser parser;
  parser.set_database(impl.reader);
  parser.set_stemmer(impl.analyzer.stemmer());
  parser.set_stemming_strategy(Xapian::QueryParser::STEM_SOME);
  parser.set_stopper(&impl.analyzer.stopper());
  parser.set_default_op(Xapian::Query::OP_OR);
  parser.add_prefix("title", "S");
  parser.add_prefix("heading", "H");
  Xapian::Query parsed;
  try {
    parsed = parser.parse_query(text, Xapian::QueryParser::FLAG_DEFAULT);
  } catch (const Xapian::QueryParserError&) {
    // Unbalanced quotes or a stray operator: read the words literally rather than refuse the question.
    try {
      parsed = parser.parse_query(text, 0);
    } catch (const Xapian::QueryParserError& e) {
      fail(Errc::kInvalidArgument, "query: cannot parse: {}", e.get_msg());
    }
  }
  if (filtered && options.principals) {
    std::vector<Xapian::Query> allowed;
    for (const auto& principal : *options.principals)
      if (valid_principal(principal)) allowed.emplace_back("A" + principal);
    Xapian::Query filter = allowed.empty() ? Xapian::Query::MatchNothing
                                           : Xapian::Query(Xapian::Query::OP_OR, allowed.begin(), allowed.end());
    parsed = Xapian::Query(Xapian::Query::OP_FILTER, parsed, filter);
  }
  return parsed;
}

Xapian::MSet run_query(KeywordIndex::Impl& impl, const Xapian::Query& query, int k) {
  Xapian::Enquire enquire(impl.reader);
  enquire.set_query(query);
  enquire.set_weighting_scheme(Xapian::BM25Weight(kBm25.k1, kBm25.k2, kBm25.k3, kBm25.b, kBm25.min_normlen));
  return enquire.get_mset(0, static_cast<Xapian::doccount>(k));
}

// Runs `body` over the keyword index. A published generation's database never changes (writers build the
// next one beside it), so the reader never reopens it: the tables it opened keep answering even after three
// publishes have removed the generation's directory.
template <typename Body>
auto with_xapian(const std::string& data_dir, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Xapian::Error& e) {
    fail(Errc::kInternal, "{}: search failed: {}", data_dir, e.get_description());
  }
}

bool readable(const DocumentRecord& doc, const SearchOptions& options) {
  if (!options.principals) return true;
  for (const auto& p : *options.principals) {
    if (doc.acl.empty() && p == kNoAclPrincipal) return true;
    if (std::binary_search(doc.acl.begin(), doc.acl.end(), p)) return true;
  }
  return false;
}

// A hit's citation fields, from its chunk and document; the snippet is the caller's.
SearchHit hit_of(const ChunkRecord& chunk, const DocumentRecord& doc, double score) {
  SearchHit hit;
  hit.chunk_id = chunk.id;
  hit.doc_id = chunk.doc_id;
  hit.path = doc.path;
  hit.title = doc.title;
  hit.page = chunk.page;
  hit.heading = chunk.heading_path;
  hit.score = score;
  return hit;
}

}  // namespace

std::vector<SearchHit> Searcher::search(std::string_view query, const SearchOptions& options) {
  std::string text = checked_query(query, options);
  auto& impl = keywords_->impl();
  return with_xapian(data_dir_, [&] {
    Xapian::MSet mset = run_query(impl, keyword_query(impl, text, options, true), options.k);
    std::vector<SearchHit> hits;
    for (auto it = mset.begin(); it != mset.end(); ++it) {
      auto chunk = catalog_->chunk(static_cast<int64_t>(*it));
      if (!chunk) continue;
      auto doc = catalog_->document(chunk->doc_id);
      if (!doc) continue;
      SearchHit hit = hit_of(*chunk, *doc, it.get_weight());
      if (options.snippet_bytes > 0) hit.snippet = snippet(mset, chunk->text, options, impl.analyzer.stemmer());
      hits.push_back(std::move(hit));
    }
    return hits;
  });
}

std::vector<ScoredChunk> Searcher::keyword_candidates(std::string_view query, const SearchOptions& options) {
  std::string text = checked_query(query, options);
  auto& impl = keywords_->impl();
  return with_xapian(data_dir_, [&] {
    Xapian::MSet mset = run_query(impl, keyword_query(impl, text, options, true), options.k);
    std::vector<ScoredChunk> out;
    out.reserve(mset.size());
    for (auto it = mset.begin(); it != mset.end(); ++it) out.push_back({static_cast<int64_t>(*it), it.get_weight()});
    return out;
  });
}

std::vector<ScoredChunk> Searcher::vector_candidates(std::span<const float> query_vector, const SearchOptions& options) {
  if (options.k < 1 || options.k > kMaxK)
    fail(Errc::kInvalidArgument, "k: {} is out of range [1, {}]", options.k, kMaxK);
  auto& v = *vectors_;
  std::lock_guard lock(v.mutex);
  if (!v.catalog) v.catalog = std::make_unique<Catalog>(catalog_path(data_dir_), Catalog::Mode::kRead);
  v.load();
  if (!v.manifest)
    fail(Errc::kUnsupported, "{}: has no vectors (ingested without an embedder); add them with rag ingest PATH "
         "--embed-model FILE --data {}", data_dir_, data_dir_);
  if (query_vector.size() != static_cast<size_t>(v.index->dim()))
    fail(Errc::kInvalidArgument, "query vector: {} floats, but the index holds vectors of {} (embedder {})",
         query_vector.size(), v.index->dim(), v.manifest->embedder);
  if (!options.embedder_identity.empty() && options.embedder_identity != v.manifest->embedder)
    fail(Errc::kMismatch, "{}: vectors were made by embedder {}, the query by {}; use that model, or re-embed with "
         "rag ingest --reembed --embed-model FILE --data {}", data_dir_, v.manifest->embedder,
         options.embedder_identity, data_dir_);
  for (float x : query_vector)
    if (!std::isfinite(x)) fail(Errc::kInvalidArgument, "query vector: holds a value that is not finite");
  if (!options.principals) return v.index->search(query_vector, options.k);
  auto filter = v.filter_for(*options.principals);
  return v.index->search(query_vector, options.k, filter.get());
}

std::vector<ScoredChunk> Searcher::vector_candidates(std::string_view query, const Embedder& embedder,
                                                     const SearchOptions& options) {
  checked_query(query, options);
  SearchOptions checked = options;
  checked.embedder_identity = embedder.identity();
  std::vector<float> q = embedder.embed({std::string(query)});
  return vector_candidates(std::span<const float>(q), checked);
}

std::vector<SearchHit> Searcher::hydrate(const std::vector<ScoredChunk>& candidates, std::string_view query_for_snippet,
                                         const SearchOptions& options) {
  auto& impl = keywords_->impl();
  bool want_snippet = options.snippet_bytes > 0;
  std::string text(query_for_snippet.substr(0, kMaxQueryBytes));
  bool has_words = text.find_first_not_of(" \t\r\n") != std::string::npos;
  return with_xapian(data_dir_, [&] {
    // An MSet of the query supplies the terms (and their weights) that snippets highlight; it need not
    // contain the candidates, so a vector-only hit still gets the query's words marked. Asking for no
    // documents gives those weights without running the match over the posting lists.
    std::optional<Xapian::MSet> mset;
    if (want_snippet && has_words) {
      try {
        mset = run_query(impl, keyword_query(impl, text, options, false), 0);
      } catch (const Error&) {
        mset.reset();  // an unparsable query still hydrates, with unmarked snippets
      }
    }
    std::vector<SearchHit> hits;
    for (const auto& c : candidates) {
      auto chunk = catalog_->chunk(c.chunk_id);
      if (!chunk) continue;
      auto doc = catalog_->document(chunk->doc_id);
      if (!doc || !readable(*doc, options)) continue;
      SearchHit hit = hit_of(*chunk, *doc, c.score);
      if (want_snippet) {
        if (mset) {
          hit.snippet = snippet(*mset, chunk->text, options, impl.analyzer.stemmer());
        } else {
          std::string plain = collapse_whitespace(chunk->text);
          if (plain.size() > options.snippet_bytes) {
            size_t cut = options.snippet_bytes;
            while (cut > 0 && (static_cast<unsigned char>(plain[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8 chars
            plain = plain.substr(0, cut) + "...";
          }
          hit.snippet = std::move(plain);
        }
      }
      hits.push_back(std::move(hit));
    }
    return hits;
  });
}

bool Searcher::has_vectors() const { return vectors_->checked_manifest().has_value(); }

std::string Searcher::embedder_identity() const {
  const auto& m = vectors_->checked_manifest();
  return m ? m->embedder : std::string();
}

std::string Searcher::embedder_path() const { return catalog_->meta("embedder_path").value_or(""); }

VectorInfo Searcher::vector_info() const {
  VectorInfo info;
  info.generation = generation_;
  info.manifest = vectors_->checked_manifest();
  info.catalog_change_counter = catalog_->change_counter();
  return info;
}

std::vector<SearchHit> search(const std::string& data_dir, std::string_view query, const SearchOptions& options) {
  Searcher searcher(data_dir);
  return searcher.search(query, options);
}

}  // namespace rag::index
