// Index: the catalog (SQLite, the truth), the keyword index (Xapian, derived from the catalog), the ingest
// job that keeps both in step with folders of files, and keyword search over chunks.
//
//   ingest(data_dir, roots) ──▶ walk ─▶ parse+chunk (worker pool) ─▶ one writer: catalog, then Xapian
//   search(data_dir, query)  ──▶ Xapian BM25 over chunks ─▶ catalog (path, title, page, text) ─▶ SearchHit
//
// A data dir (DESIGN.md "Storage"):
//   <data>/catalog.db        SQLite (WAL): documents, chunks, acl_entries, roots, meta
//   <data>/gen/<n>/xapian    the Xapian database of generation n: one Xapian document per chunk, docid = chunk id
//   <data>/gen/<n>/vectors.faiss   the FAISS index of generation n (when the data dir has an embedder), derived
//                            from the catalog's chunk_vectors; <data>/gen/<n>/manifest.json says what it
//                            reflects and carries its hash (see "vectors" below)
//   <data>/CURRENT           the live generation number n, replaced by write-temp, fsync, rename, fsync dir
//   <data>/write.lock        flock()ed by the one writer (ingest); holds the writer's pid
// Readers (search) never take the lock and are never blocked by a writer.
//
// Chunk ids are SQLite AUTOINCREMENT keys: never reused, so a chunk id names one text forever, and the
// Xapian docid of a chunk is its id, so catalog and keyword index agree by construction.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
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

// Generations a writer keeps after publishing one (the live one and older ones that queries in flight may
// still be reading); older ones are deleted.
constexpr int kDefaultKeepGenerations = 3;

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

// ---- permissions ------------------------------------------------------------------------------------
//
// A document's ACL lists the principals that may read it. A document with an EMPTY ACL is indexed under the
// sentinel principal kNoAclPrincipal in both indexes (Xapian term "Aacl:none"; the vector filter admits
// chunks of documents without acl_entries), so a caller that wants such documents readable (DESIGN: holders
// of the configured default group) adds kNoAclPrincipal to SearchOptions::principals. index/ knows nothing of
// default groups. Filters apply before ranking in both indexes: a principal set's top-k is the top-k over
// only the chunks it may read.
constexpr const char* kNoAclPrincipal = "acl:none";

// ---- embedder ---------------------------------------------------------------------------------------

// Text to vectors. Implementations are immutable after construction and embed() may be called from several
// threads at once. Tests implement it with fakes.
class Embedder {
 public:
  virtual ~Embedder() = default;
  virtual int dim() const = 0;
  // Names the model and its weights (nn::Encoder::identity(): "NAME/POOLING/dDIM/HASH"); manifests and the
  // catalog record it so vectors of two models are never mixed.
  virtual const std::string& identity() const = 0;
  // texts.size() × dim() floats, row-major (text i at [i * dim(), (i + 1) * dim())), each row L2-normalised.
  virtual std::vector<float> embed(const std::vector<std::string>& texts) const = 0;
};

// Opens a BERT-family GGUF embedding model (nn/encoder.h). A reranker (cross-encoder) file is kUnsupported
// naming the file; other failures as nn::Encoder::open (kNotFound, kIo, kCorrupt, kUnsupported).
std::shared_ptr<const Embedder> open_embedder(const std::string& gguf_path);

// The passage a chunk is embedded as: title, heading path and text, each on its own line when not empty.
// Ingest, re-embedding and anything that wants comparable vectors use this one function.
std::string embed_passage(std::string_view title, std::string_view heading, std::string_view text);

constexpr int kEmbedBatch = 32;  // texts per Embedder::embed call at ingest

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
  int64_t removed_change = 0;      // the change counter that removed it; 0 = live (see Catalog)
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
  static constexpr int kSchemaVersion = 3;  // PRAGMA user_version after all migrations
  enum class Mode { kRead, kWrite };

  Catalog(const std::string& path, Mode mode);
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  int schema_version() const;

  // ---- reads
  // Removal is soft: a removed document or chunk keeps its row, stamped with the change counter that removed
  // it, until purge_removed(), so a published generation that still holds it can hydrate it. document(id) and
  // chunk(id) return such rows too (hydration by id); every other read sees live rows only.
  std::optional<DocumentRecord> document(int64_t doc_id) const;
  std::optional<DocumentRecord> document_by_path(const std::string& path) const;
  // Documents whose path is `root` itself or lies under it (root + "/..."), by path.
  std::vector<DocumentRecord> documents_under(const std::string& root) const;
  std::optional<ChunkRecord> chunk(int64_t chunk_id) const;
  std::vector<ChunkRecord> chunks_of(int64_t doc_id) const;  // by ordinal
  std::vector<int64_t> chunk_ids_of(int64_t doc_id) const;
  int64_t document_count() const;
  int64_t chunk_count() const;
  // Chunk ids (ascending) that were live when the change counter was `change`: what a generation reflecting
  // `change` must hold. Exact only while rows removed after `change` are not purged.
  std::vector<int64_t> chunk_ids_live_at(int64_t change) const;
  // What changed after `change` (ascending ids): chunks live then and removed since, and live chunks created
  // since. Exact under the same condition.
  void chunk_changes_since(int64_t change, std::vector<int64_t>& removed, std::vector<int64_t>& added) const;
  bool has_root(const std::string& root) const;
  std::vector<std::string> roots() const;
  // Bumped by every write transaction that changed documents or chunks; the keyword index records the
  // value it reflects, so a mismatch after a crash is detected (see ingest-job.cpp).
  int64_t change_counter() const;
  // Calls `visit` for every chunk with its document (chunk order by id); used to rebuild derived indexes.
  void for_each_chunk(const std::function<void(const ChunkRecord&, const DocumentRecord&)>& visit) const;

  // meta(key, value) rows; nullopt when absent. Keys used by index/: "embedder_identity", "embedder_dim",
  // "embedder_path" (the model a data dir embeds with), "vector_index_kind" (a forced kind, see
  // VectorIndexKind).
  std::optional<std::string> meta(const std::string& key) const;
  // Chunk vectors (schema 2: chunk_vectors, one float32 BLOB of `dim` values per chunk, dropped with its
  // chunk). A stored vector of another length is kCorrupt.
  int64_t vector_count() const;
  std::vector<float> vector(int64_t chunk_id, int dim) const;  // empty when the chunk has none
  // Every stored vector in chunk id order; `visit` gets the chunk id and `dim` floats.
  void for_each_vector(int dim, const std::function<void(int64_t, const float*)>& visit) const;
  // Chunk ids (ascending) that have no stored vector.
  std::vector<int64_t> chunk_ids_without_vector() const;
  // Chunk ids (ascending) of documents whose ACL names one of `principals`; kNoAclPrincipal admits documents
  // with an empty ACL. Removed rows not yet purged are included (an older generation may still hold them).
  std::vector<int64_t> chunk_ids_readable_by(const std::vector<std::string>& principals) const;

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
  // Removes the document with its chunks (softly, see above); appends the removed chunk ids to `removed`.
  void remove_document(int64_t doc_id, std::vector<int64_t>& removed);
  // Deletes rows removed at or before `through_change` (no kept generation holds them), in a transaction of
  // its own, outside begin()/commit(); the change counter stays. Returns the chunks deleted.
  int64_t purge_removed(int64_t through_change);
  void set_meta(const std::string& key, const std::string& value);
  void erase_meta(const std::string& key);
  // Stores (replaces) the vectors of chunk_ids: rows.size() == chunk_ids.size() * dim.
  void put_vectors(const std::vector<int64_t>& chunk_ids, std::span<const float> rows, int dim);
  void clear_vectors();

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
  std::vector<std::string> acl;         // one boolean term "A<principal>" each; empty: "A" + kNoAclPrincipal
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
  std::vector<int64_t> chunk_ids() const;                  // ascending
  std::vector<std::string> terms(int64_t chunk_id) const;  // sorted; empty when the chunk is absent

  // The Xapian side, defined in a private header: for use inside index/ only.
  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// ---- vectors ----------------------------------------------------------------------------------------
//
// The catalog holds every chunk's vector (chunk_vectors); a generation's FAISS file is derived from them and
// can be rebuilt at any time without re-embedding:
//   <data>/gen/<n>/vectors.faiss   a FAISS IndexIDMap over the index of VectorIndexKind: row r of the inner
//                                  index holds the vector of chunk id_map[r] (id_map ascending; -1 = a deleted
//                                  row, still in an index that cannot remove, never returned)
//   <data>/gen/<n>/manifest.json   VectorManifest: what the file reflects and its XXH3-128, checked before use
// Both are written to a temp file, fsynced and renamed (faiss file first, manifest last); a reader that meets
// a file whose hash differs from the manifest re-reads the manifest (a writer may be between the renames),
// then fails with kCorrupt. An ingest that finds the manifest's change counter behind the catalog's (a crash
// after a catalog commit) rebuilds the file from the catalog's vectors.

enum class VectorIndexKind {
  kAuto,  // by live vectors: flat up to VectorIndexParams::flat_max_vectors, sq4 up to sq4_max_vectors, else HNSW
  kFlat,  // exact inner product (IndexFlatIP); deletions removed from the index
  kSq4,   // the float rows of flat plus a 4-bit scalar-quantized copy (in memory only, derived at load): a
          // query scans the copy and re-scores its best sq4_rescore rows exactly
  kHnsw,  // IndexHNSWFlat (inner product); no removal in FAISS: deletions are tombstones, compacted on rebuild
  kIvf,   // IndexIVFFlat (inner product); deletions removed from the index
};
std::string_view vector_index_kind_name(VectorIndexKind kind);  // "auto", "flat", "sq4", "hnsw", "ivf"
VectorIndexKind parse_vector_index_kind(std::string_view name);  // kInvalidArgument for anything else

struct VectorIndexParams {
  int64_t flat_max_vectors = 100000;  // kAuto: flat at or below this many live vectors
  // kAuto: sq4 at or below this many. Its scan reads 192 bytes a row (dimension 384) on every query, about
  // 8 ms per million rows here; HNSW reads far less per query but builds for hours at millions of rows on
  // two cores and loses recall on data without clear clusters.
  int64_t sq4_max_vectors = 4000000;
  int sq4_rescore = 200;              // sq4: rows re-scored exactly (at least 4 × k)
  int hnsw_m = 32;                    // graph degree
  int hnsw_ef_construction = 80;
  int hnsw_ef_search = 64;            // raised for filtered queries in proportion to what the filter drops
  int ivf_lists = 0;                  // 0: about 4 * sqrt(n)
  int ivf_probe = 32;
  // A filtered query admitting at most this share of the live vectors (or at most exact_max_rows of them)
  // scores exactly the admitted rows instead of walking the approximate index, which loses recall when most
  // of what it visits is filtered out. An index of at most exact_max_rows live vectors is always scored
  // exactly.
  double exact_fraction = 0.15;
  int64_t exact_max_rows = 20000;
  // Rebuild (compact) when deleted rows exceed this share of the rows.
  double max_dead_fraction = 0.25;
};

// The kind kAuto stands for at this many live vectors.
VectorIndexKind auto_vector_index_kind(int64_t vectors, const VectorIndexParams& params);

struct ScoredChunk {
  int64_t chunk_id = 0;
  double score = 0;  // inner product of L2-normalised vectors (cosine) for vectors; BM25 for keywords
};

// The rows a filtered query may return: a bitmap over an index's rows (built by VectorIndex::filter()).
struct VectorFilter {
  std::vector<uint8_t> bitmap;  // bit r set = row r admitted
  std::vector<int64_t> rows;    // the admitted rows, ascending
};

// An in-memory FAISS index with its row -> chunk id map. One writer mutates it; const members may run from
// several threads at once.
class VectorIndex {
 public:
  VectorIndex(int dim, VectorIndexKind kind, const VectorIndexParams& params = {});
  ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  // Builds an index over `n` vectors (rows, n × dim) of ascending chunk ids. kAuto picks by n.
  static std::unique_ptr<VectorIndex> build(int dim, VectorIndexKind kind, const VectorIndexParams& params,
                                            std::span<const int64_t> chunk_ids, std::span<const float> rows);
  // Reads a file written by save(); its bytes must hash to `expected_hash` (Hash128::hex()), else kCorrupt.
  // `kind` is the one its manifest names (kAuto: whatever the file holds, a flat file as kFlat): sq4 and
  // flat write the same file.
  static std::unique_ptr<VectorIndex> load(const std::string& path, const std::string& expected_hash,
                                           const VectorIndexParams& params = {},
                                           VectorIndexKind kind = VectorIndexKind::kAuto);
  // The same from a file opened earlier (read from its start; `path` names it in errors): a reader that
  // opened it with its generation still loads it after a writer has removed that generation.
  static std::unique_ptr<VectorIndex> load(std::FILE* file, const std::string& path, const std::string& expected_hash,
                                           const VectorIndexParams& params = {},
                                           VectorIndexKind kind = VectorIndexKind::kAuto);
  // Writes the index (temp + fsync + rename); returns the file's Hash128::hex().
  std::string save(const std::string& path) const;

  // Appends vectors of chunk ids larger than any in the index, ascending (chunk ids are never reused).
  void add(std::span<const int64_t> chunk_ids, std::span<const float> rows);
  // Removes chunks (absent ids are ignored): from the index where the kind can, else as tombstones.
  void remove(std::span<const int64_t> chunk_ids);

  int dim() const;
  VectorIndexKind kind() const;          // never kAuto
  int64_t size() const;                  // live vectors
  int64_t rows() const;                  // rows including tombstones
  double dead_fraction() const;
  // True when a rebuild from the catalog would serve better: the kind is not `wanted` (kAuto: by size), too
  // many rows are dead, or an IVF index has outgrown the lists it was trained with.
  bool needs_rebuild(VectorIndexKind wanted) const;
  const VectorIndexParams& params() const;
  std::string describe() const;          // kind and parameters as JSON, for the manifest
  std::optional<int64_t> row_of(int64_t chunk_id) const;
  std::vector<int64_t> chunk_ids() const;  // live chunk ids, ascending

  // The admitted rows for ascending chunk ids (ids not in the index are skipped).
  VectorFilter filter(std::span<const int64_t> chunk_ids) const;
  // Top-k live chunks by inner product with `query` (dim floats), best first; only admitted rows when
  // `filter` is given. Exact over the admitted rows when few are admitted (see VectorIndexParams).
  std::vector<ScoredChunk> search(std::span<const float> query, int k, const VectorFilter* filter = nullptr) const;
  // The same by brute force over every admitted live row: the oracle for tests and the bench.
  std::vector<ScoredChunk> search_exact(std::span<const float> query, int k, const VectorFilter* filter = nullptr) const;

  struct Impl;

 private:
  explicit VectorIndex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// <data>/gen/<n>/manifest.json.
struct VectorManifest {
  int64_t change_counter = -1;   // the catalog change counter the FAISS file reflects
  std::string embedder;          // Embedder::identity() of the vectors
  int dim = 0;
  int64_t vectors = 0;           // live vectors
  int64_t rows = 0;              // rows in the file, tombstones included
  std::string kind;              // vector_index_kind_name()
  std::string params;            // VectorIndex::describe()
  std::string file = "vectors.faiss";  // relative to the generation dir
  std::string hash;              // XXH3-128 hex of the file
};

std::string vectors_path(const std::string& data_dir, int64_t gen);   // <data>/gen/<n>/vectors.faiss
std::string manifest_path(const std::string& data_dir, int64_t gen);  // <data>/gen/<n>/manifest.json
// nullopt when the generation has no manifest; a malformed one is kCorrupt naming the file.
std::optional<VectorManifest> read_manifest(const std::string& data_dir, int64_t gen);
void write_manifest(const std::string& data_dir, int64_t gen, const VectorManifest& manifest);
// Saves `vectors` into generation `gen` with its manifest (the FAISS file first, the manifest last).
void save_vectors(const VectorIndex& vectors, const std::string& data_dir, int64_t gen, int64_t change_counter,
                  const std::string& embedder_identity);

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
  // Embeds chunks (embed_passage of title, heading, text) in batches of kEmbedBatch and keeps a FAISS index.
  // Null: the embedder the data dir records (catalog meta "embedder_path"), if any; none = BM25 only. A
  // model whose identity differs from the recorded one is kMismatch unless `reembed`.
  std::shared_ptr<const Embedder> embedder;
  std::string embedder_path;             // recorded in the catalog with the embedder's identity; may be empty
  bool reembed = false;                  // re-embed every chunk with `embedder` (a model change); roots optional
  VectorIndexKind vector_index = VectorIndexKind::kAuto;  // a forced kind is remembered by the data dir
  VectorIndexParams vector_params;
  int keep_generations = kDefaultKeepGenerations;  // generations kept after publishing; at least 2
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
  int64_t embedded = 0;       // chunks embedded by this run (new, updated, backfilled or re-embedded)
  int64_t vectors = 0;        // live vectors in the FAISS index afterwards; 0 without an embedder
  int64_t pages = 0;          // PDF pages parsed by this run
  int64_t bytes = 0;          // bytes of the files parsed by this run
  int64_t files = 0;          // files found by the walk
  int64_t generation = 0;     // the live generation afterwards (a new one when anything changed)
  double seconds = 0;         // wall clock of the whole job
  std::vector<IngestFailure> failures;  // by path
};

// Brings the data dir in step with `options.roots` (which may be empty only with `reembed`). Takes the write lock (kBusy when held), creates the data
// dir on first use. Per-file problems are recorded and counted, never thrown; environment failures (catalog,
// Xapian, disk) throw rag::Error.
IngestSummary ingest(const std::string& data_dir, const IngestOptions& options);

// ---- generations: rebuild and verify ------------------------------------------------------------------
//
// Every writer (ingest, rebuild) builds a new generation gen/<n> beside the live one and publishes it by
// replacing CURRENT (generation.cpp), so a query sees one whole generation: everything an ingest run wrote,
// or none of it. Only generations with changes are made; the newest keep_generations are kept.

struct RebuildOptions {
  bool wait_for_lock = false;        // block on a held write lock instead of failing with kBusy
  // Re-embed every chunk with the data dir's embedder (catalog meta "embedder_path") before building the
  // FAISS index; false builds it from the vectors the catalog holds.
  bool reembed = true;
  int keep_generations = kDefaultKeepGenerations;  // at least 2
  VectorIndexKind vector_index = VectorIndexKind::kAuto;  // kAuto: the kind the data dir records, else by size
  VectorIndexParams vector_params;
};

struct RebuildSummary {
  int64_t generation = 0;   // the generation published
  int64_t chunks = 0;       // in its keyword index
  int64_t vectors = 0;      // in its vector index; 0 without an embedder
  int64_t embedded = 0;     // chunks re-embedded
  int64_t purged = 0;       // removed chunk rows deleted from the catalog
  double seconds = 0;
};

// Builds a complete new generation from the catalog and publishes it. Takes the write lock (kBusy when
// held). kNotFound when the data dir has no catalog; kMismatch when the recorded embedder is now another
// model (re-embed with rag ingest --reembed).
RebuildSummary rebuild(const std::string& data_dir, const RebuildOptions& options = {});

// What `rag verify` found: the live generation against the catalog at the change counter it reflects.
struct VerifyReport {
  int64_t generation = 0;
  int64_t generation_change = -1;   // the catalog change counter the generation reflects
  int64_t catalog_change = 0;       // the catalog's counter now (ahead after an interrupted writer)
  int64_t chunks = 0;               // chunks the generation must hold
  int64_t keyword_chunks = 0;       // chunks in its keyword index
  int64_t vectors = -1;             // vectors in its FAISS index; -1 without one
  std::vector<std::string> problems;  // disagreements, one line each; empty = all agree
  std::vector<std::string> notes;     // facts that are not disagreements (unpublished changes, leftovers)
  bool ok() const { return problems.empty(); }
};

// Checks that catalog, keyword index, FAISS index and manifest agree. Reads only; never throws for a
// disagreement (a problem line), only for a data dir that cannot be read at all.
VerifyReport verify(const std::string& data_dir);

// ---- search -----------------------------------------------------------------------------------------

struct SearchOptions {
  int k = 10;                                  // results wanted, 1..kMaxK
  // Only chunks of documents whose ACL names one of these principals. Unset: no filter (local admin use).
  std::optional<std::vector<std::string>> principals;
  size_t snippet_bytes = 240;                  // target snippet length; 0: no snippet
  std::string highlight_begin = "**";          // placed around matched terms in the snippet
  std::string highlight_end = "**";
  // vector_candidates: when not empty, must equal the manifest's embedder identity (else kMismatch).
  std::string embedder_identity;
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

// What a Searcher's vector side has loaded.
struct VectorInfo {
  int64_t generation = 0;
  std::optional<VectorManifest> manifest;  // nullopt: no vectors in this generation
  int64_t catalog_change_counter = 0;      // the catalog's counter now (may be ahead of the manifest's)
};

// An open reader over the generation that was live when it was opened, and the catalog; reuse it across
// queries, and open a new one to follow a newer generation (retrieve's reader pool does).
// Thread safety: keyword_candidates() and vector_candidates() may run concurrently, one each, from two
// threads on the same Searcher (they share no state: the vector side has its own catalog connection and
// lock). Everything else, and two calls of the same kind, need one thread at a time (or one Searcher per
// thread).
class Searcher {
 public:
  // Throws kNotFound (saying to run `rag ingest`) when the data dir has no index.
  explicit Searcher(const std::string& data_dir);
  ~Searcher();
  Searcher(const Searcher&) = delete;
  Searcher& operator=(const Searcher&) = delete;

  // BM25 over chunks, best first. A malformed query is kInvalidArgument.
  std::vector<SearchHit> search(std::string_view query, const SearchOptions& options = {});

  // BM25 top options.k chunk ids with scores, best first, within options.principals.
  std::vector<ScoredChunk> keyword_candidates(std::string_view query, const SearchOptions& options = {});
  // Inner-product top options.k chunks for an L2-normalised query vector, best first, within
  // options.principals. kUnsupported when the data dir has no vectors (saying `rag ingest --embed-model
  // FILE`); kInvalidArgument for a vector of the wrong size; kMismatch when options.embedder_identity is set
  // and differs from the manifest's (saying to re-embed with that model); kCorrupt when the FAISS file fails
  // its hash.
  std::vector<ScoredChunk> vector_candidates(std::span<const float> query_vector, const SearchOptions& options = {});
  // Embeds `query` with `embedder` (checking its identity against the manifest) and runs vector_candidates.
  std::vector<ScoredChunk> vector_candidates(std::string_view query, const Embedder& embedder,
                                             const SearchOptions& options = {});
  // Catalog rows and snippets for candidates, in their order; chunks gone from the catalog are skipped. The
  // snippet highlights words of `query_for_snippet` that occur in the chunk (a vector-only hit included).
  // score is the candidate's.
  std::vector<SearchHit> hydrate(const std::vector<ScoredChunk>& candidates, std::string_view query_for_snippet,
                                 const SearchOptions& options = {});

  // The generation read at open and its vector manifest (read then; a corrupt one throws kCorrupt here and
  // from the vector queries, while BM25 still answers).
  int64_t generation() const { return generation_; }
  bool has_vectors() const;               // the generation has a vector manifest
  std::string embedder_identity() const;  // the manifest's; empty when none
  std::string embedder_path() const;      // the catalog's recorded model path; empty when none
  VectorInfo vector_info() const;

 private:
  struct Vectors;
  std::string data_dir_;
  int64_t generation_ = 0;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<KeywordIndex> keywords_;
  std::unique_ptr<Vectors> vectors_;
};

// Vector indexes the process holds loaded: Searchers reading the same generation's file share one (see
// searcher.cpp), and it is freed with the last of them.
int64_t loaded_vector_indexes();

// One-shot convenience over Searcher.
std::vector<SearchHit> search(const std::string& data_dir, std::string_view query, const SearchOptions& options = {});

// ---- evaluation -------------------------------------------------------------------------------------
//
// Loaders and metrics for retrieval quality on BEIR-layout folders (corpus.jsonl, queries*.jsonl, qrels/*.tsv);
// retrieve/retrieve.h's eval_beir runs the queries.

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


}  // namespace rag::index
