// The ingest job: brings a data dir in step with folders of files.
//
//   walk roots ─▶ plan (main thread: unchanged by size+mtime+ACL, else a task; gone files are removals)
//             ─▶ worker pool: hash; same hash → touch; else parse, chunk and build each chunk's whole
//                Xapian document (stemming, positions, prefixes) with the worker's own Analyzer
//             ─▶ bounded queue ─▶ main thread = the one writer, in batches of IngestOptions::batch_bytes:
//                  1. one SQLite transaction: documents, ACL, chunks (new ids), removals; change_counter + 1
//                  2. Xapian: add the id terms (Q, D, A, value) to the prebuilt documents, delete the replaced
//                     chunk ids, replace_document(chunk id) the new ones, commit with that change_counter
// The writer does no text analysis: a prebuilt Xapian::Document is a plain value, independent of any
// database, and its terms do not depend on the chunk id, so parallel and one-thread runs index the same
// terms and positions (tests/index/ingest-job-test.cpp compares them).
//
// Vectors (when the data dir has an embedder, IngestOptions::embedder or the one the catalog records): the
// writer embeds the chunks of parsed files as they arrive, kEmbedBatch passages per Embedder::embed call
// across files, while the workers go on parsing; each batch's vectors go into chunk_vectors in the same
// SQLite transaction as their chunks, then into the in-memory VectorIndex loaded from the live generation
// (remove replaced ids, add new ones). At the end of the job the index is rebuilt from the catalog's vectors
// if it should be (VectorIndex::needs_rebuild: kind by size, tombstones, IVF training). Chunks without a
// vector (a data dir that gains an embedder, a --reembed, an interrupted run) are embedded first ("backfill").
//
// Generations (generation.cpp): the job writes a new generation gen/<n> beside the live one, made on the
// first change as a copy of the live keyword index; every batch commits the catalog first, then Xapian in
// gen/<n>; at the end the FAISS file and manifest go into gen/<n> and CURRENT names it. Readers stay on the
// live generation until then, so a query sees all of the job's changes or none; the catalog removes softly,
// so the live generation's chunks stay hydratable meanwhile. A job that dies leaves the live generation and
// a catalog ahead of it; the next writer removes the unpublished folder and catches up from the catalog's
// change stamps (Catalog::chunk_changes_since) before its own changes.
//
// Failures: a file that cannot be examined or parsed is recorded as a document with status 'error' and a
// one-line reason, and the job goes on. For a file that was ingested before and now fails, the previous
// chunks are kept (still searchable, still under the old ACL) and the row keeps the size, mtime and hash of
// the content they came from, with status 'error': the next ingest sees a changed file and tries again.
// Files in status 'error' are always retried.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "common/error.h"
#include "common/hash.h"
#include "common/log.h"
#include "index/generation.h"
#include "index/keyword-index-impl.h"

namespace rag::index {
namespace {

constexpr size_t kMaxReasonBytes = 500;
// Chunk text parsed ahead of the writer; the Xapian documents built from it take several times as much.
constexpr size_t kQueueBytes = 16 << 20;

using Clock = std::chrono::steady_clock;

std::string one_line(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, kMaxReasonBytes)) out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  return out;
}

std::string normal_root(const std::string& root) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(root, ec);
  if (ec) fail(Errc::kIo, "{}: cannot resolve: {}", root, ec.message());
  std::string out = p.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

struct Task {
  ingest::FileEntry entry;
  std::string root;
  std::vector<std::string> acl;      // effective ACL (the .ragacl's, else --acl), sorted, unique
  std::optional<DocumentRecord> known;
};

enum class Outcome { kParsed, kTouched, kFailed };

struct Result {
  size_t task = 0;
  Outcome outcome = Outcome::kFailed;
  std::string hash;
  std::string reason;
  ingest::ParsedDocument doc;           // kParsed: blocks and text dropped after chunking
  std::vector<ingest::Chunk> chunks;
  std::vector<Xapian::Document> terms;  // one per chunk, without ids
  std::vector<float> vectors;           // chunks.size() × dim once embedded (writer thread)
};

size_t text_bytes(const Result& r) {
  size_t bytes = 0;
  for (const auto& c : r.chunks) bytes += c.text.size();
  return bytes;
}

// Parser results flow to the writer through a queue bounded by the chunk text it holds, so parsing never runs
// far ahead of writing. A bound in bytes rather than files lets the workers run ahead over many small files
// (HTML pages, which keep the writer busy) and on to the slow ones (PDFs), so parsing overlaps writing.
class ResultQueue {
 public:
  explicit ResultQueue(size_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}

  // False when the queue was stopped (the writer failed): the worker should quit. A result larger than the
  // whole capacity still enters an empty queue.
  bool push(Result&& r) {
    size_t bytes = text_bytes(r);
    std::unique_lock lock(mutex_);
    not_full_.wait(lock, [&] { return items_.empty() || bytes_ + bytes <= capacity_bytes_ || stopped_; });
    if (stopped_) return false;
    bytes_ += bytes;
    items_.push_back(std::move(r));
    not_empty_.notify_one();
    return true;
  }
  // Empty when a worker failed outside a document (see abort()).
  std::optional<Result> pop() {
    std::unique_lock lock(mutex_);
    not_empty_.wait(lock, [&] { return !items_.empty() || error_; });
    if (items_.empty()) return std::nullopt;
    Result r = std::move(items_.front());
    items_.pop_front();
    bytes_ -= text_bytes(r);
    not_full_.notify_all();
    return r;
  }
  void stop() {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    not_full_.notify_all();
  }
  void abort(std::exception_ptr error) {
    std::lock_guard lock(mutex_);
    if (!error_) error_ = error;
    not_empty_.notify_all();
  }
  std::exception_ptr error() {
    std::lock_guard lock(mutex_);
    return error_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Result> items_;
  size_t capacity_bytes_;
  size_t bytes_ = 0;  // chunk text held by items_
  bool stopped_ = false;
  std::exception_ptr error_;
};

Result process(const Task& task, size_t index, const IngestOptions& options, Analyzer& analyzer) {
  Result r;
  r.task = index;
  const auto& entry = task.entry;
  try {
    if (!entry.error.empty()) {
      r.reason = one_line(entry.error);
      return r;
    }
    if (entry.size > options.max_file_bytes) {
      r.reason = one_line(fmt::format("{}: {} bytes is more than the {} allowed (--max-file-mb)", entry.path,
                                      entry.size, options.max_file_bytes));
      return r;
    }
    r.hash = hash_file(entry.path).hex();
    if (task.known && task.known->content_hash == r.hash && task.known->acl == task.acl) {
      r.outcome = Outcome::kTouched;
      return r;
    }
    ingest::ParseOptions parse_options;
    parse_options.max_file_bytes = options.max_file_bytes;
    r.doc = ingest::parse_file(entry.path, parse_options);
    r.chunks = ingest::chunk_document(r.doc, options.chunking);
    r.doc.text.clear();
    r.doc.blocks.clear();
    r.terms.reserve(r.chunks.size());
    for (const auto& c : r.chunks) r.terms.push_back(analyzer.terms(r.doc.title, c.heading_path, c.text));
    r.outcome = Outcome::kParsed;
  } catch (const Error& e) {
    r = Result{};
    r.task = index;
    r.reason = one_line(e.what());
  } catch (const Xapian::Error& e) {
    r = Result{};
    r.task = index;
    r.reason = one_line(fmt::format("{}: indexing failed: {}", entry.path, e.get_description()));
  } catch (const std::exception& e) {
    // A parser bug or an allocation failure on one hostile file fails that file, not the whole ingest.
    r = Result{};
    r.task = index;
    r.reason = one_line(fmt::format("{}: internal error: {}", entry.path, e.what()));
  }
  return r;
}

std::vector<std::string> effective_acl(const ingest::FileEntry& entry, const std::vector<std::string>& fallback) {
  std::vector<std::string> acl = entry.acl.empty() ? fallback : entry.acl;
  std::sort(acl.begin(), acl.end());
  acl.erase(std::unique(acl.begin(), acl.end()), acl.end());
  return acl;
}

}  // namespace

IngestSummary ingest(const std::string& data_dir, const IngestOptions& options) {
  auto start = Clock::now();
  if (options.roots.empty() && !options.reembed) fail(Errc::kInvalidArgument, "ingest: no folder or file given");
  if (options.reembed && !options.embedder)
    fail(Errc::kInvalidArgument, "ingest: re-embedding needs the model to embed with (--embed-model FILE)");
  for (const auto& principal : options.acl)
    if (!valid_principal(principal))
      fail(Errc::kInvalidArgument, "--acl: '{}' is not a principal (like user:ann or group:eng, no spaces)",
           principal);
  if (options.max_file_bytes < 1) fail(Errc::kInvalidArgument, "--max-file-mb: must be positive");
  RAG_ASSERT(options.batch_bytes >= 1);

  std::vector<std::string> roots;
  for (const auto& root : options.roots) {
    std::string normal = normal_root(root);
    std::error_code ec;
    if (!std::filesystem::exists(normal, ec)) fail(Errc::kNotFound, "{}: no such file or folder", root);
    if (std::find(roots.begin(), roots.end(), normal) == roots.end()) roots.push_back(normal);
  }

  if (options.keep_generations < 2)
    fail(Errc::kInvalidArgument, "--keep: at least 2 generations (the live one and the one queries may still read)");

  WriteLock lock(data_dir, options.wait_for_lock);
  Catalog catalog(catalog_path(data_dir), Catalog::Mode::kWrite);
  remove_unpublished_generations(data_dir);
  const int64_t live = current_generation(data_dir);
  const int64_t live_change = live > 0 ? generation_change(data_dir, live) : -1;
  // Chunks the catalog changed after the live generation's counter: a writer died after committing some
  // batches. (Changes that touch no chunk, like a file failing again, need no new generation.)
  bool behind = live == 0 || live_change < 0;
  if (!behind) {
    std::vector<int64_t> removed, added;
    catalog.chunk_changes_since(live_change, removed, added);
    behind = !removed.empty() || !added.empty();
  }
  // The generation this job writes, made on first need: a job that changes nothing publishes nothing.
  std::unique_ptr<PendingGeneration> new_gen;
  std::unique_ptr<KeywordIndex> keywords;
  auto open_next = [&] {
    if (new_gen) return;
    bool copy = live > 0 && live_change >= 0;
    new_gen = std::make_unique<PendingGeneration>(data_dir, copy ? live : 0);
    keywords = std::make_unique<KeywordIndex>(keyword_path(data_dir, new_gen->number()), KeywordIndex::Mode::kWrite);
    if (!copy) keywords_from_catalog(catalog, *keywords, data_dir);
    else if (behind) catch_up_keywords(catalog, *keywords, live_change, data_dir);
  };
  // A first ingest publishes even an empty generation; a catalog ahead of the live generation is caught up
  // before anything new.
  if (behind) open_next();

  // ---- vectors: which embedder, and the index to update
  std::shared_ptr<const Embedder> embedder = options.embedder;
  std::string embedder_path = options.embedder_path;
  auto recorded_identity = catalog.meta("embedder_identity");
  if (!embedder && recorded_identity) embedder = open_recorded_embedder(catalog, data_dir, &embedder_path);
  if (embedder && recorded_identity && embedder->identity() != *recorded_identity && !options.reembed)
    fail(Errc::kMismatch, "{}: the data dir embeds with {}, not {} ({}); to switch models run rag ingest --reembed "
         "--embed-model FILE --data {} (re-embeds every chunk)", data_dir, *recorded_identity, embedder->identity(),
         embedder_path.empty() ? "given embedder" : embedder_path, data_dir);
  std::unique_ptr<VectorIndex> vectors;
  std::optional<VectorManifest> manifest;
  VectorIndexKind wanted_kind = options.vector_index;
  int dim = embedder ? embedder->dim() : 0;
  bool vectors_changed = false;
  if (embedder) {
    if (wanted_kind == VectorIndexKind::kAuto)
      if (auto forced = catalog.meta("vector_index_kind")) wanted_kind = parse_vector_index_kind(*forced);
    try {
      if (live > 0) manifest = read_manifest(data_dir, live);
    } catch (const Error& e) {
      spdlog::warn("ingest: {}; rebuilding the vector index", e.what());
    }
    if (manifest && !options.reembed && manifest->embedder == embedder->identity() && manifest->dim == dim) {
      if (manifest->change_counter != live_change || behind) {
        spdlog::warn("ingest: {}: vector index reflects catalog change {}, behind the catalog; rebuilding it",
                     data_dir, manifest->change_counter);
      } else {
        try {
          vectors = VectorIndex::load(generation_path(data_dir, live) + "/" + manifest->file, manifest->hash,
                                      options.vector_params, parse_vector_index_kind(manifest->kind));
        } catch (const Error& e) {
          spdlog::warn("ingest: {}; rebuilding the vector index from the catalog", e.what());
        }
      }
    }
    catalog.begin();
    try {
      // Only what differs, so an ingest that changes nothing leaves the change counter (and the files) alone.
      auto set = [&](const char* key, const std::string& value) {
        if (catalog.meta(key) != value) catalog.set_meta(key, value);
      };
      if (options.reembed || !recorded_identity) catalog.clear_vectors();
      set("embedder_identity", embedder->identity());
      set("embedder_dim", std::to_string(dim));
      if (!embedder_path.empty()) set("embedder_path", embedder_path);
      if (options.vector_index != VectorIndexKind::kAuto)
        set("vector_index_kind", std::string(vector_index_kind_name(options.vector_index)));
      catalog.commit();
    } catch (...) {
      catalog.rollback();
      throw;
    }
  }

  // ---- backfill: chunks without a vector
  IngestSummary summary;
  if (embedder) {
    summary.embedded = embed_missing(catalog, *embedder, data_dir);
    if (summary.embedded > 0) vectors.reset();  // the backfilled ids may fall anywhere: rebuild below
    if (!vectors) {
      vectors = vectors_from_catalog(catalog, dim, wanted_kind, options.vector_params, data_dir);
      vectors_changed = true;
    }
  }

  // ---- plan
  std::vector<Task> tasks;
  std::vector<DocumentRecord> removals;
  std::set<std::string> seen;
  for (const auto& root : roots) {
    bool prune = options.prune.value_or(catalog.has_root(root));
    std::unordered_map<std::string, DocumentRecord> known;
    for (auto& d : catalog.documents_under(root)) known.emplace(d.path, std::move(d));
    for (auto& entry : ingest::walk({root})) {
      if (!seen.insert(entry.path).second) continue;
      ++summary.files;
      std::vector<std::string> acl = effective_acl(entry, options.acl);
      std::string bad_principal;
      for (const auto& p : acl)
        if (!valid_principal(p)) bad_principal = p;
      if (!bad_principal.empty() && entry.error.empty())
        entry.error = fmt::format("{}: ACL principal '{}' is not valid (check the .ragacl)", entry.path,
                                  bad_principal.substr(0, 64));
      auto it = known.find(entry.path);
      std::optional<DocumentRecord> record;
      if (it != known.end()) record = it->second;
      if (record && entry.error.empty() && record->status == "ok" && record->size == entry.size &&
          record->mtime_ns == entry.mtime_ns && record->acl == acl) {
        ++summary.unchanged;
        continue;
      }
      tasks.push_back({std::move(entry), root, std::move(acl), std::move(record)});
    }
    if (prune)
      for (auto& [path, d] : known)
        if (!seen.count(path)) removals.push_back(std::move(d));
  }
  std::sort(removals.begin(), removals.end(), [](auto& a, auto& b) { return a.path < b.path; });

  IngestProgress progress;
  progress.files_total = summary.files;
  progress.files_done = summary.unchanged;
  for (const auto& t : tasks) progress.bytes_total += t.entry.size;
  auto report = [&] {
    if (!options.on_progress) return;
    progress.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    options.on_progress(progress);
  };
  report();

  // ---- write
  bool roots_recorded = false;
  auto flush = [&](std::vector<Result>& batch, const std::vector<DocumentRecord>& remove) {
    std::vector<int64_t> deleted;
    std::vector<std::pair<int64_t, Xapian::Document>> added;
    std::vector<int64_t> vector_ids;
    std::vector<float> vector_rows;
    // Before the catalog commits: the new generation catches up with the catalog as it was before this batch.
    if (!remove.empty() || std::any_of(batch.begin(), batch.end(), [](const Result& r) {
          return r.outcome == Outcome::kParsed;
        }))
      open_next();
    catalog.begin();
    try {
      if (!roots_recorded)
        for (const auto& root : roots) catalog.add_root(root);
      for (auto& r : batch) {
        const Task& task = tasks[r.task];
        const auto& entry = task.entry;
        if (r.outcome == Outcome::kParsed) {
          DocumentRecord d;
          d.id = task.known ? task.known->id : 0;
          d.root = task.root;
          d.path = entry.path;
          d.type = std::string(ingest::doc_type_name(r.doc.type));
          d.title = r.doc.title;
          d.size = entry.size;
          d.mtime_ns = entry.mtime_ns;
          d.content_hash = r.hash;
          d.page_count = r.doc.page_count;
          d.chunk_count = static_cast<int>(r.chunks.size());
          d.acl = task.acl;
          int64_t id = catalog.put_document(d);
          std::vector<int64_t> ids = catalog.replace_chunks(id, r.chunks, deleted);
          for (size_t i = 0; i < ids.size(); ++i) {
            add_ids(r.terms[i], ids[i], id, task.acl);
            added.emplace_back(ids[i], std::move(r.terms[i]));
          }
          if (embedder) {
            RAG_ASSERT(r.vectors.size() == ids.size() * static_cast<size_t>(dim));
            catalog.put_vectors(ids, r.vectors, dim);
            vector_ids.insert(vector_ids.end(), ids.begin(), ids.end());
            vector_rows.insert(vector_rows.end(), r.vectors.begin(), r.vectors.end());
          }
        } else if (r.outcome == Outcome::kTouched) {
          DocumentRecord d = *task.known;
          d.size = entry.size;
          d.mtime_ns = entry.mtime_ns;
          d.status = "ok";
          d.error.clear();
          catalog.put_document(d);
        } else if (task.known) {
          DocumentRecord d = *task.known;  // keeps the last good version's chunks, size, mtime, hash and ACL
          d.status = "error";
          d.error = r.reason;
          catalog.put_document(d);
        } else {
          DocumentRecord d;
          d.root = task.root;
          d.path = entry.path;
          d.type = "unknown";
          d.title = std::filesystem::path(entry.path).stem().string();
          d.size = entry.size;
          d.mtime_ns = entry.mtime_ns;
          d.status = "error";
          d.error = r.reason;
          d.acl = task.acl;
          catalog.put_document(d);
        }
      }
      for (const auto& d : remove) catalog.remove_document(d.id, deleted);
      catalog.commit();
    } catch (...) {
      catalog.rollback();
      throw;
    }
    roots_recorded = true;
    if (deleted.empty() && added.empty()) {
      batch.clear();
      return;
    }
    // An unflushed Xapian transaction around the batch: without it Xapian commits by itself (with an fsync)
    // every XAPIAN_FLUSH_THRESHOLD documents, several times inside one large batch.
    keywords->begin_batch();
    for (int64_t id : deleted) keywords->remove(id);
    for (auto& [id, doc] : added) keywords->impl().replace(id, std::move(doc));
    keywords->commit(catalog.change_counter());
    if (vectors && (!deleted.empty() || !vector_ids.empty())) {
      vectors->remove(deleted);
      vectors->add(vector_ids, vector_rows);
      vectors_changed = true;
    }
    batch.clear();
  };

  // Passages waiting for an embed call: (index in the current batch, chunk index), in arrival order.
  std::vector<std::pair<size_t, size_t>> pending;
  auto embed_pending = [&](std::vector<Result>& batch, bool all) {
    while (pending.size() >= static_cast<size_t>(kEmbedBatch) || (all && !pending.empty())) {
      size_t n = std::min(pending.size(), static_cast<size_t>(kEmbedBatch));
      std::vector<std::string> texts;
      texts.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        const Result& r = batch[pending[i].first];
        const auto& c = r.chunks[pending[i].second];
        texts.push_back(embed_passage(r.doc.title, c.heading_path, c.text));
      }
      std::vector<float> v = embed_checked(*embedder, texts);
      for (size_t i = 0; i < n; ++i) {
        Result& r = batch[pending[i].first];
        std::copy_n(v.begin() + static_cast<ptrdiff_t>(i * dim), dim,
                    r.vectors.begin() + static_cast<ptrdiff_t>(pending[i].second * dim));
      }
      pending.erase(pending.begin(), pending.begin() + static_cast<ptrdiff_t>(n));
      summary.embedded += static_cast<int64_t>(n);
    }
  };

  size_t thread_count = options.threads > 0 ? static_cast<size_t>(options.threads)
                                            : std::max(1u, std::thread::hardware_concurrency());
  thread_count = std::min(thread_count, std::max<size_t>(tasks.size(), 1));
  ResultQueue queue(kQueueBytes);
  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  auto join = [&] {
    queue.stop();
    for (auto& w : workers)
      if (w.joinable()) w.join();
  };
  try {
    for (size_t t = 0; t < thread_count && !tasks.empty(); ++t) {
      workers.emplace_back([&] {
        try {
          Analyzer analyzer;
          for (size_t i = next++; i < tasks.size(); i = next++)
            if (!queue.push(process(tasks[i], i, options, analyzer))) return;
        } catch (...) {
          queue.abort(std::current_exception());
        }
      });
    }
    std::vector<Result> batch;
    int64_t batch_bytes = 0;
    for (size_t received = 0; received < tasks.size(); ++received) {
      std::optional<Result> r = queue.pop();
      if (!r) {
        join();
        std::rethrow_exception(queue.error());
      }
      const Task& task = tasks[r->task];
      switch (r->outcome) {
        case Outcome::kParsed:
          ++(task.known ? summary.updated : summary.new_files);
          summary.chunks += static_cast<int64_t>(r->chunks.size());
          summary.pages += r->doc.page_count;
          summary.bytes += task.entry.size;
          progress.pages += r->doc.page_count;
          break;
        case Outcome::kTouched:
          ++summary.unchanged;
          break;
        case Outcome::kFailed:
          ++summary.failed;
          summary.failures.push_back({task.entry.path, r->reason});
          spdlog::debug("ingest: failed: {}", r->reason);
          break;
      }
      ++progress.files_done;
      progress.bytes_done += task.entry.size;
      for (const auto& c : r->chunks) batch_bytes += static_cast<int64_t>(c.text.size());
      batch.push_back(std::move(*r));
      if (embedder && batch.back().outcome == Outcome::kParsed) {
        Result& added = batch.back();
        added.vectors.assign(added.chunks.size() * static_cast<size_t>(dim), 0.0f);
        for (size_t c = 0; c < added.chunks.size(); ++c) pending.emplace_back(batch.size() - 1, c);
        embed_pending(batch, false);
      }
      if (batch_bytes >= options.batch_bytes) {
        if (embedder) embed_pending(batch, true);
        flush(batch, {});
        batch_bytes = 0;
      }
      report();
    }
    join();
    if (embedder) embed_pending(batch, true);
    if (!batch.empty() || !removals.empty() || (!roots_recorded && !roots.empty())) flush(batch, removals);
  } catch (...) {
    join();
    throw;
  }
  summary.removed = static_cast<int64_t>(removals.size());

  // ---- vectors: rebuild when due, then publish file and manifest
  if (vectors) {
    if (vectors->needs_rebuild(wanted_kind)) {
      spdlog::info("ingest: {}: rebuilding the vector index ({} live of {} rows, {} wanted)", data_dir,
                   vectors->size(), vectors->rows(), vector_index_kind_name(wanted_kind));
      vectors.reset();
      vectors = vectors_from_catalog(catalog, dim, wanted_kind, options.vector_params, data_dir);
      vectors_changed = true;
    }
    summary.vectors = vectors->size();
  }
  // ---- publish: one new generation holding everything this job changed
  if (vectors_changed) open_next();
  if (new_gen) {
    if (keywords->committed_change() != catalog.change_counter()) keywords->commit(catalog.change_counter());
    keywords.reset();
    if (vectors) save_vectors(*vectors, data_dir, new_gen->number(), catalog.change_counter(), embedder->identity());
    new_gen->publish(catalog, options.keep_generations);
    summary.generation = new_gen->number();
  } else {
    summary.generation = live;
  }
  std::sort(summary.failures.begin(), summary.failures.end(), [](auto& a, auto& b) { return a.path < b.path; });
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  spdlog::info("ingest: {}: {} new, {} updated, {} unchanged, {} removed, {} failed, {} chunks, generation {}, "
               "{:.2f}s", data_dir, summary.new_files, summary.updated, summary.unchanged, summary.removed,
               summary.failed, summary.chunks, summary.generation, summary.seconds);
  return summary;
}

}  // namespace rag::index
