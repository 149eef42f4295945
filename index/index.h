// Index: the catalog (SQLite, the truth), the keyword index (Xapian, derived from the catalog), the ingest
// job that keeps both in step with folders of files, and keyword search over chunks.
//
//   ingest(data_dir, roots) ──▶ walk ─▶ parse+chunk (worker pool) ─▶ one writer: catalog, then Xapian
//   search(data_dir, query)  ──▶ Xapian BM25 over chunks ─▶ catalog (path, title, page, text) ─▶ SearchHit
//
// A data dir (DESIGN.md "Storage"):
//   <data>/catalog.db        SQLite (WAL): documents, chunks, acl_entries, roots, meta
//   <data>/gen/<n>/xapian    the Xapian database of generation n: one Xapian document per chunk, docid = chunk id
//   <data>/CURRENT           the live generation number n, replaced by write-temp, fsync, rename, fsync dir
//   <data>/write.lock        flock()ed by the one writer (ingest); holds the writer's pid
// Readers (search) never take the lock and are never blocked by a writer.
//
// Chunk ids are SQLite AUTOINCREMENT keys: never reused, so a chunk id names one text forever, and the
// Xapian docid of a chunk is its id, so catalog and keyword index agree by construction.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ingest/ingest.h"

namespace rag::index {

// ---- data dir ---------------------------------------------------------------------------------------

std::string catalog_path(const std::string& data_dir);                  // <data>/catalog.db
std::string generation_path(const std::string& data_dir, int64_t gen);  // <data>/gen/<n>
std::string keyword_path(const std::string& data_dir, int64_t gen);     // <data>/gen/<n>/xapian

// The live generation named by <data>/CURRENT, or 0 when there is none yet. A malformed CURRENT is kCorrupt.
int64_t current_generation(const std::string& data_dir);

// Makes `gen` the live generation: writes CURRENT.tmp, fsyncs it, renames it over CURRENT, fsyncs the dir.
void publish_generation(const std::string& data_dir, int64_t gen);

// The writer's exclusive lock on <data>/write.lock (flock), released on destruction. Acquiring fails at once
// with Errc::kBusy "locked by pid N" unless `wait`, in which case it blocks until the holder lets go.
class WriteLock {
 public:
  WriteLock(const std::string& data_dir, bool wait);
  ~WriteLock();
  WriteLock(const WriteLock&) = delete;
  WriteLock& operator=(const WriteLock&) = delete;

 private:
  int fd_ = -1;
};

// ---- catalog ----------------------------------------------------------------------------------------

// One row of `documents`, plus its ACL.
struct DocumentRecord {
  int64_t id = 0;                  // documents.id; 0 before insertion
  std::string root;                // the ingested root (absolute) the file was found under
  std::string path;                // absolute, lexically normal path; unique in the catalog
  std::string type;                // ingest::doc_type_name(): "text", "markdown", "html", "pdf", "unknown"
  std::string title;
  int64_t size = 0;                // bytes, as seen by the ingest that produced the chunks
  int64_t mtime_ns = 0;            // nanoseconds since the epoch, same
  std::string content_hash;        // Hash128::hex() of the bytes the chunks came from; empty if never parsed
  std::string status = "ok";       // "ok" or "error"
  std::string error;               // one-line reason when status is "error" (chunks may be from the last good version)
  int page_count = 0;              // PDF pages; 0 for formats without pages
  int chunk_count = 0;             // rows in `chunks` for this document
  int64_t ingested_at = 0;         // seconds since the epoch of the last change to this row
  std::vector<std::string> acl;    // principals allowed to read it ("user:ann", "group:eng"), sorted; empty = none
};

// One row of `chunks`.
struct ChunkRecord {
  int64_t id = 0;                  // chunks.id = Xapian docid; never reused
  int64_t doc_id = 0;
  int ordinal = 0;                 // 0-based position within the document
  std::string text;
  std::string heading_path;        // "Install > Linux"; may be empty
  int page = 0;                    // 1-based PDF page; 0 (NULL in SQLite) where the format has none
  int64_t byte_begin = 0;          // range in the parsed document text (ingest::ParsedDocument::text)
  int64_t byte_end = 0;
};

// The SQLite catalog. A writer opens it read-write (creating it, checking it with PRAGMA quick_check and
// applying schema migrations in order); a reader opens it read-only and requires the current schema.
// One Catalog object is used by one thread at a time.
class Catalog {
 public:
  static constexpr int kSchemaVersion = 1;  // PRAGMA user_version after all migrations
  enum class Mode { kRead, kWrite };

  Catalog(const std::string& path, Mode mode);
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  int schema_version() const;

  // ---- reads
  std::optional<DocumentRecord> document(int64_t doc_id) const;
  std::optional<DocumentRecord> document_by_path(const std::string& path) const;
  // Documents whose path is `root` itself or lies under it (root + "/..."), by path.
  std::vector<DocumentRecord> documents_under(const std::string& root) const;
  std::optional<ChunkRecord> chunk(int64_t chunk_id) const;
  std::vector<ChunkRecord> chunks_of(int64_t doc_id) const;  // by ordinal
  std::vector<int64_t> chunk_ids_of(int64_t doc_id) const;
  int64_t document_count() const;
  int64_t chunk_count() const;
  bool has_root(const std::string& root) const;
  std::vector<std::string> roots() const;
  // Bumped by every write transaction that changed documents or chunks; the keyword index records the
  // value it reflects, so a mismatch after a crash is detected (see ingest-job.cpp).
  int64_t change_counter() const;
  // Calls `visit` for every chunk with its document (chunk order by id); used to rebuild derived indexes.
  void for_each_chunk(const std::function<void(const ChunkRecord&, const DocumentRecord&)>& visit) const;

  // ---- writes (Mode::kWrite only), inside begin() ... commit(); rollback() undoes.
  void begin();
  void commit();   // also bumps change_counter when something changed since begin()
  void rollback();
  void add_root(const std::string& root);
  // Inserts (record.id == 0) or updates the row and replaces its ACL; returns the document id.
  int64_t put_document(const DocumentRecord& record);
  // Replaces all chunks of doc_id with `chunks`; returns the new chunk ids in order and appends the removed
  // ids to `removed`. Also sets documents.chunk_count.
  std::vector<int64_t> replace_chunks(int64_t doc_id, const std::vector<ingest::Chunk>& chunks,
                                      std::vector<int64_t>& removed);
  // Deletes the document with its chunks and ACL; appends the removed chunk ids to `removed`.
  void remove_document(int64_t doc_id, std::vector<int64_t>& removed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- keyword index ----------------------------------------------------------------------------------

// What the keyword index needs to index one chunk: the chunk and its document's title and ACL.
struct KeywordChunk {
  int64_t chunk_id = 0;                 // becomes the Xapian docid and the unique term "Q<chunk_id>"
  int64_t doc_id = 0;                   // boolean term "D<doc_id>"
  std::string title;                    // indexed with prefix "S" and unprefixed at kTitleWdf
  std::string heading_path;             // indexed with prefix "H" and unprefixed at kHeadingWdf
  std::string text;                     // the body, unprefixed
  std::vector<std::string> acl;         // one boolean term "A<principal>" each
};

struct KeywordHit {
  int64_t chunk_id = 0;
  int64_t doc_id = 0;
  double score = 0;                     // BM25 (see keyword-index.cpp kBm25)
};

// One generation's Xapian database. A writer (one per database, under the WriteLock) replaces and deletes
// chunks and commits; a reader searches and retries over concurrent commits (DatabaseModifiedError).
class KeywordIndex {
 public:
  enum class Mode { kRead, kWrite };
  KeywordIndex(const std::string& path, Mode mode);
  ~KeywordIndex();
  KeywordIndex(const KeywordIndex&) = delete;
  KeywordIndex& operator=(const KeywordIndex&) = delete;

  void replace(const KeywordChunk& chunk);
  void remove(int64_t chunk_id);
  void remove_all();
  // Optional: holds the changes up to the next commit() in one transaction, so Xapian does not commit on its
  // own part way through a large batch (it does every XAPIAN_FLUSH_THRESHOLD documents otherwise).
  void begin_batch();
  // Makes everything since the last commit durable and records the catalog change counter it reflects.
  void commit(int64_t change_counter);
  // The change counter recorded by the last commit; -1 for a database never committed by us.
  int64_t committed_change() const;

  int64_t size() const;                                    // number of chunks
  std::vector<std::string> terms(int64_t chunk_id) const;  // sorted; empty when the chunk is absent

  // The Xapian side, defined in a private header: for use inside index/ only.
  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// ---- ingest job -------------------------------------------------------------------------------------

struct IngestProgress {
  int64_t files_done = 0;     // files decided (new, updated, unchanged or failed)
  int64_t files_total = 0;    // files found by the walk
  int64_t pages = 0;          // PDF pages parsed so far
  int64_t bytes_done = 0;     // bytes of the decided files
  int64_t bytes_total = 0;    // bytes of all files found
  double seconds = 0;         // since the job started
};

struct IngestOptions {
  std::vector<std::string> roots;        // folders or files; made absolute
  std::vector<std::string> acl;          // principals for documents without a .ragacl
  int64_t max_file_bytes = 100ll << 20;  // larger files fail with a reason
  bool wait_for_lock = false;            // block on a held write lock instead of failing with kBusy
  // Remove catalog documents under a root whose files are gone. Unset: on for roots already in the
  // catalog's roots table (re-ingest), which for a new root has nothing to remove anyway.
  std::optional<bool> prune;
  int threads = 0;                       // parser threads; 0 = hardware concurrency
  // A writer batch (one SQLite transaction, then one Xapian commit) closes once the chunk text of its files
  // reaches this many bytes. Commits cost a sync and a merge of Xapian's in-memory changes, so fewer are
  // faster; the batch's documents are held in memory meanwhile (several times their text with positions).
  int64_t batch_bytes = 32ll << 20;
  ingest::ChunkOptions chunking;
  // Called from the calling thread after each file is decided; keep it cheap (rate-limit drawing yourself).
  std::function<void(const IngestProgress&)> on_progress;
};

struct IngestFailure {
  std::string path;
  std::string reason;  // one line
};

// Counts of files by outcome. A file whose content changed but fails to parse counts as failed; its previous
// chunks stay searchable and its row records status "error" with the reason (see ingest-job.cpp).
struct IngestSummary {
  int64_t new_files = 0;
  int64_t updated = 0;
  int64_t unchanged = 0;
  int64_t removed = 0;
  int64_t failed = 0;
  int64_t chunks = 0;         // chunks written by this run (new and updated documents)
  int64_t pages = 0;          // PDF pages parsed by this run
  int64_t bytes = 0;          // bytes of the files parsed by this run
  int64_t files = 0;          // files found by the walk
  double seconds = 0;         // wall clock of the whole job
  std::vector<IngestFailure> failures;  // by path
};

// Brings the data dir in step with `options.roots`. Takes the write lock (kBusy when held), creates the data
// dir on first use. Per-file problems are recorded and counted, never thrown; environment failures (catalog,
// Xapian, disk) throw rag::Error.
IngestSummary ingest(const std::string& data_dir, const IngestOptions& options);

// ---- search -----------------------------------------------------------------------------------------

struct SearchOptions {
  int k = 10;                                  // results wanted, 1..kMaxK
  // Only chunks of documents whose ACL names one of these principals. Unset: no filter (local admin use).
  std::optional<std::vector<std::string>> principals;
  size_t snippet_bytes = 240;                  // target snippet length; 0: no snippet
  std::string highlight_begin = "**";          // placed around matched terms in the snippet
  std::string highlight_end = "**";
};

constexpr int kMaxK = 1000;

struct SearchHit {
  int64_t chunk_id = 0;
  int64_t doc_id = 0;
  std::string path;
  std::string title;
  int page = 0;            // 1-based PDF page; 0 where the format has none
  std::string heading;     // heading path, may be empty
  double score = 0;        // BM25, higher is better; comparable only within one query
  std::string snippet;     // plain text (not HTML) with matches between highlight_begin/_end
};

// An open reader over a data dir's live generation and catalog; reuse it across queries. Not thread-safe:
// one per thread.
class Searcher {
 public:
  // Throws kNotFound (saying to run `rag ingest`) when the data dir has no index.
  explicit Searcher(const std::string& data_dir);
  ~Searcher();
  Searcher(const Searcher&) = delete;
  Searcher& operator=(const Searcher&) = delete;

  // BM25 over chunks, best first. A malformed query is kInvalidArgument.
  std::vector<SearchHit> search(std::string_view query, const SearchOptions& options = {});

 private:
  std::string data_dir_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<KeywordIndex> keywords_;
};

// One-shot convenience over Searcher.
std::vector<SearchHit> search(const std::string& data_dir, std::string_view query, const SearchOptions& options = {});

// ---- evaluation -------------------------------------------------------------------------------------
//
// Retrieval quality on a BEIR-layout folder (corpus.jsonl, queries*.jsonl, qrels/*.tsv; see eval.cpp).

struct BeirDocument {
  std::string id;     // corpus "_id"
  std::string title;
  std::string text;
};

struct BeirQuery {
  std::string id;     // queries "_id"
  std::string text;
};

// Relevance judgements: query id -> (corpus id -> graded relevance, > 0 = relevant).
using Qrels = std::map<std::string, std::map<std::string, int>>;

// Loaders. A missing file is kNotFound; a malformed line (bad JSON, missing or non-string field, bad TSV
// row) is kCorrupt naming the file and its 1-based line number. Blank lines are skipped.
std::vector<BeirDocument> load_beir_corpus(const std::string& path);
std::vector<BeirQuery> load_beir_queries(const std::string& path);
Qrels load_qrels(const std::string& path);  // TSV with a header: query-id, corpus-id, score

// Metrics of one query's ranking (corpus ids, best first) against its judgements.
double ndcg_at(const std::vector<std::string>& ranking, const std::map<std::string, int>& judged, int k);
double recall_at(const std::vector<std::string>& ranking, const std::map<std::string, int>& judged, int k);
double mrr_at(const std::vector<std::string>& ranking, const std::map<std::string, int>& judged, int k);

struct EvalScores {
  int64_t queries = 0;  // queries with at least one relevant judgement (the others are skipped)
  double ndcg10 = 0, recall100 = 0, mrr10 = 0;  // means over those queries
};

// Scores rankings (query id -> corpus ids, best first); queries without a relevant judgement are skipped.
EvalScores score_rankings(const std::map<std::string, std::vector<std::string>>& rankings, const Qrels& qrels);

struct BeirEvalOptions {
  std::string mode = "bm25";   // only "bm25" runs; "dense", "hybrid", "hybrid+rerank" are kUnsupported
  std::string queries_path;    // empty: <dir>/queries_train.jsonl if present, else <dir>/queries.jsonl
  std::string qrels_path;      // empty: <dir>/qrels/train.tsv if present, else <dir>/qrels/test.tsv
  int k = 100;                 // hits retrieved per query, 1..kMaxK
  std::string work_dir;        // where the temporary data dir goes; empty: $TMPDIR or /tmp
};

struct BeirEvalResult {
  std::string mode;
  EvalScores scores;
  double seconds = 0;          // wall clock: index build plus queries
};

// Indexes the corpus into a fresh temporary data dir (one chunk per document; removed afterwards), runs every
// judged query through Searcher::search and scores the rankings.
BeirEvalResult eval_beir(const std::string& dir, const BeirEvalOptions& options);

}  // namespace rag::index
