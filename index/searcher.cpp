// Keyword search: Xapian BM25 over chunks, resolved through the catalog into paths, pages and snippets.
//
// Readers take no lock. The catalog is committed before Xapian (see ingest-job.cpp), so a hit whose chunk is
// no longer in the catalog was deleted by a writer in flight: it is skipped, never shown with stale text.
// A Xapian commit during a search surfaces as DatabaseModifiedError: reopen and run the query again.
#include <sys/stat.h>

#include <algorithm>

#include "common/error.h"
#include "common/text.h"
#include "index/keyword-index-impl.h"

namespace rag::index {
namespace {

constexpr int kMaxAttempts = 5;
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
  std::string html = mset.snippet(body, options.snippet_bytes, stemmer,
                                  Xapian::MSet::SNIPPET_BACKGROUND_MODEL | Xapian::MSet::SNIPPET_EXHAUSTIVE,
                                  std::string(1, kMarkBegin), std::string(1, kMarkEnd), "...");
  // Chunk text keeps paragraph breaks; a snippet is one line.
  return collapse_whitespace(plain_snippet(html, options.highlight_begin, options.highlight_end));
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

struct Searcher::Vectors {};

Searcher::Searcher(const std::string& data_dir) : data_dir_(data_dir) {
  if (!exists(catalog_path(data_dir)))
    fail(Errc::kNotFound, "{}: no index here; run rag ingest PATH --data {} first", data_dir, data_dir);
  int64_t gen = current_generation(data_dir);
  if (gen == 0)
    fail(Errc::kNotFound, "{}: no index generation yet (CURRENT missing); run rag ingest PATH --data {}", data_dir,
         data_dir);
  catalog_ = std::make_unique<Catalog>(catalog_path(data_dir), Catalog::Mode::kRead);
  keywords_ = std::make_unique<KeywordIndex>(keyword_path(data_dir, gen), KeywordIndex::Mode::kRead);
}

Searcher::~Searcher() = default;

std::vector<SearchHit> Searcher::search(std::string_view query, const SearchOptions& options) {
  if (options.k < 1 || options.k > kMaxK)
    fail(Errc::kInvalidArgument, "k: {} is out of range [1, {}]", options.k, kMaxK);
  if (query.size() > kMaxQueryBytes)
    fail(Errc::kInvalidArgument, "query: {} bytes is longer than the {} allowed", query.size(), kMaxQueryBytes);
  std::string text(query);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) fail(Errc::kInvalidArgument, "query: is empty");

  auto& impl = keywords_->impl();
  for (int attempt = 1;; ++attempt) {
    try {
      // A long-lived Searcher must see the writer's latest commit, which the catalog already reflects:
      // reopen() is cheap when nothing changed.
      impl.reader.reopen();
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
      if (options.principals) {
        std::vector<Xapian::Query> allowed;
        for (const auto& principal : *options.principals)
          if (valid_principal(principal)) allowed.emplace_back("A" + principal);
        Xapian::Query filter = allowed.empty() ? Xapian::Query::MatchNothing
                                               : Xapian::Query(Xapian::Query::OP_OR, allowed.begin(), allowed.end());
        parsed = Xapian::Query(Xapian::Query::OP_FILTER, parsed, filter);
      }
      Xapian::Enquire enquire(impl.reader);
      enquire.set_query(parsed);
      enquire.set_weighting_scheme(Xapian::BM25Weight(kBm25.k1, kBm25.k2, kBm25.k3, kBm25.b, kBm25.min_normlen));
      Xapian::MSet mset = enquire.get_mset(0, static_cast<Xapian::doccount>(options.k));

      std::vector<SearchHit> hits;
      for (auto it = mset.begin(); it != mset.end(); ++it) {
        auto chunk = catalog_->chunk(static_cast<int64_t>(*it));
        if (!chunk) continue;
        auto doc = catalog_->document(chunk->doc_id);
        if (!doc) continue;
        SearchHit hit;
        hit.chunk_id = chunk->id;
        hit.doc_id = chunk->doc_id;
        hit.path = doc->path;
        hit.title = doc->title;
        hit.page = chunk->page;
        hit.heading = chunk->heading_path;
        hit.score = it.get_weight();
        if (options.snippet_bytes > 0) hit.snippet = snippet(mset, chunk->text, options, impl.analyzer.stemmer());
        hits.push_back(std::move(hit));
      }
      return hits;
    } catch (const Xapian::DatabaseModifiedError&) {
      if (attempt >= kMaxAttempts)
        fail(Errc::kBusy, "{}: the index kept changing during the search; try again", data_dir_);
      impl.reader.reopen();
    } catch (const Xapian::Error& e) {
      fail(Errc::kInternal, "{}: search failed: {}", data_dir_, e.get_description());
    }
  }
}

std::vector<SearchHit> search(const std::string& data_dir, std::string_view query, const SearchOptions& options) {
  Searcher searcher(data_dir);
  return searcher.search(query, options);
}

}  // namespace rag::index
