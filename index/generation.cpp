// Index generations: how writers publish, and `rag rebuild` / `rag verify`.
//
//   writer (ingest or rebuild, under write.lock)
//     remove_unpublished_generations()          leftovers of a writer that died
//     PendingGeneration(n = above all on disk)  gen/<n>: a copy of the live keyword index (ingest) or empty
//     write gen/<n>: Xapian (commit records the catalog change counter), vectors.faiss, manifest.json
//     publish(): fsync every file and folder of gen/<n>, CURRENT = n (rename), delete generations beyond the
//                newest `keep`, purge catalog rows removed at or before the oldest kept generation's counter
//   readers open CURRENT's generation and stay on it for the query (retrieve's reader pool drops readers of
//   older generations at their next use); a published generation's files never change again.
//
// A generation reflects the catalog at one change counter C: it holds exactly the chunks live at C
// (Catalog::chunk_ids_live_at). The catalog commits ahead of the generation being built and removes softly,
// so readers of the live generation still hydrate every chunk it holds while a writer works.
// Crash at any moment: before the rename of CURRENT the old generation stays live and the next writer removes
// the unpublished folder and catches up with the catalog; after it the new generation is live, and pruning
// that did not happen is done by the next publish.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>

#include "common/error.h"
#include "common/log.h"
#include "index/generation.h"
#include "index/keyword-index-impl.h"
#include "index/vector-impl.h"

namespace rag::index {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Generation numbers with a folder under <data>/gen, ascending.
std::vector<int64_t> generations_on_disk(const std::string& data_dir) {
  std::vector<int64_t> out;
  std::error_code ec;
  for (fs::directory_iterator it(data_dir + "/gen", ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    int64_t n = 0;
    auto [p, e] = std::from_chars(name.data(), name.data() + name.size(), n);
    if (e == std::errc() && p == name.data() + name.size() && n > 0) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// CURRENT's generation; nullopt when CURRENT is damaged (a rebuild then publishes a good one).
std::optional<int64_t> readable_current(const std::string& data_dir) {
  try {
    return current_generation(data_dir);
  } catch (const Error& e) {
    spdlog::warn("index: {}", e.what());
    return std::nullopt;
  }
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) spdlog::warn("index: {}: cannot remove: {}", path, ec.message());
}

// fsync of every file and folder under `dir`, then of `dir`: a copied table Xapian never rewrote is durable too.
void fsync_tree(const std::string& dir) {
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) fsync_path(it->path().string(), false);
    else if (it->is_directory(ec)) fsync_path(it->path().string(), true);
  }
  if (ec) fail(Errc::kIo, "{}: cannot list: {}", dir, ec.message());
  fsync_path(dir, true);
}

std::string sample_ids(const std::vector<int64_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size() && i < 5; ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  if (ids.size() > 5) out += ", ...";
  return out;
}

// a \ b for ascending vectors.
std::vector<int64_t> minus(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  std::vector<int64_t> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

}  // namespace

// ---- writers' side

PendingGeneration::PendingGeneration(const std::string& data_dir, int64_t copy_from) : data_dir_(data_dir) {
  std::vector<int64_t> on_disk = generations_on_disk(data_dir);
  number_ = std::max(on_disk.empty() ? 0 : on_disk.back(), readable_current(data_dir).value_or(0)) + 1;
  std::error_code ec;
  fs::create_directories(path(), ec);
  if (ec) fail(Errc::kIo, "{}: cannot create: {}", path(), ec.message());
  if (copy_from > 0) {
    fs::copy(keyword_path(data_dir, copy_from), keyword_path(data_dir, number_), fs::copy_options::recursive, ec);
    if (ec) {
      remove_tree(path());
      fail(Errc::kIo, "{}: cannot copy the keyword index of generation {}: {}", path(), copy_from, ec.message());
    }
  }
}

PendingGeneration::~PendingGeneration() {
  if (!published_) remove_tree(path());
}

int64_t PendingGeneration::publish(Catalog& catalog, int keep) {
  RAG_ASSERT(keep >= 2);
  fsync_tree(path());
  fsync_path(data_dir_ + "/gen", true);
  try {
    publish_generation(data_dir_, number_);
  } catch (...) {
    // The fsync of the data dir comes after the rename: when it fails, CURRENT names this generation already,
    // and deleting it would leave CURRENT naming nothing. Its files are durable; the error still says the
    // switch may not be.
    published_ = readable_current(data_dir_) == number_;
    throw;
  }
  published_ = true;
  // The new generation is live; what follows only frees space, and a failure leaves it to the next writer.
  int64_t purged = 0;
  try {
    std::vector<int64_t> on_disk = generations_on_disk(data_dir_);
    std::vector<int64_t> kept;
    for (auto it = on_disk.rbegin(); it != on_disk.rend(); ++it) {
      if (*it > number_) continue;
      if (static_cast<int>(kept.size()) < keep) kept.push_back(*it);
      else remove_tree(generation_path(data_dir_, *it));
    }
    int64_t oldest = -1;
    for (int64_t g : kept) {
      int64_t c = generation_change(data_dir_, g);
      if (c >= 0 && (oldest < 0 || c < oldest)) oldest = c;
    }
    if (oldest >= 0) {
      purged = catalog.purge_removed(oldest);
      if (purged > 0) spdlog::debug("index: {}: purged {} removed chunks", data_dir_, purged);
    }
  } catch (const std::exception& e) {
    spdlog::warn("index: {}: published generation {} but could not prune older ones: {}", data_dir_, number_,
                 e.what());
  }
  return purged;
}

void remove_unpublished_generations(const std::string& data_dir) {
  std::optional<int64_t> live = readable_current(data_dir);
  if (!live) return;  // which one was published is unknown: keep them all
  for (int64_t g : generations_on_disk(data_dir))
    if (g > *live) {
      spdlog::info("index: {}: removing generation {}, left unpublished by a writer that stopped", data_dir, g);
      remove_tree(generation_path(data_dir, g));
    }
  std::error_code ec;
  fs::remove(data_dir + "/CURRENT.tmp", ec);
}

int64_t generation_change(const std::string& data_dir, int64_t gen) {
  try {
    return KeywordIndex(keyword_path(data_dir, gen), KeywordIndex::Mode::kRead).committed_change();
  } catch (const std::exception&) {
    return -1;
  }
}

void keywords_from_catalog(const Catalog& catalog, KeywordIndex& keywords, const std::string& data_dir) {
  auto start = Clock::now();
  keywords.begin_batch();
  int64_t count = 0;
  catalog.for_each_chunk([&](const ChunkRecord& c, const DocumentRecord& d) {
    keywords.replace({c.id, d.id, d.title, c.heading_path, c.text, d.acl});
    ++count;
  });
  keywords.commit(catalog.change_counter());
  spdlog::info("index: {}: keyword index built from {} catalog chunks in {:.1f}s", data_dir, count,
               seconds_since(start));
}

void catch_up_keywords(const Catalog& catalog, KeywordIndex& keywords, int64_t from_change,
                       const std::string& data_dir) {
  std::vector<int64_t> removed, added;
  catalog.chunk_changes_since(from_change, removed, added);
  spdlog::info("index: {}: the catalog has {} removed and {} added chunks the live generation (change {}) lacks "
               "(a writer that stopped): applying them",
               data_dir, removed.size(), added.size(), from_change);
  keywords.begin_batch();
  for (int64_t id : removed) keywords.remove(id);
  std::optional<DocumentRecord> doc;
  for (int64_t id : added) {
    auto c = catalog.chunk(id);
    if (!c) continue;
    if (!doc || doc->id != c->doc_id) doc = catalog.document(c->doc_id);
    if (!doc) continue;
    keywords.replace({c->id, doc->id, doc->title, c->heading_path, c->text, doc->acl});
  }
  keywords.commit(catalog.change_counter());
}

std::unique_ptr<VectorIndex> vectors_from_catalog(const Catalog& catalog, int dim, VectorIndexKind kind,
                                                  const VectorIndexParams& params, const std::string& data_dir) {
  auto start = Clock::now();
  std::vector<int64_t> ids;
  std::vector<float> rows;
  int64_t expected = catalog.vector_count();
  ids.reserve(static_cast<size_t>(expected));
  rows.reserve(static_cast<size_t>(expected) * static_cast<size_t>(dim));
  catalog.for_each_vector(dim, [&](int64_t id, const float* v) {
    ids.push_back(id);
    rows.insert(rows.end(), v, v + dim);
  });
  auto index = VectorIndex::build(dim, kind, params, ids, rows);
  spdlog::info("index: {}: vector index ({}) built from {} catalog vectors in {:.1f}s", data_dir,
               vector_index_kind_name(index->kind()), ids.size(), seconds_since(start));
  return index;
}

void save_vectors(const VectorIndex& vectors, const std::string& data_dir, int64_t gen, int64_t change_counter,
                  const std::string& embedder_identity) {
  VectorManifest m;
  m.change_counter = change_counter;
  m.embedder = embedder_identity;
  m.dim = vectors.dim();
  m.vectors = vectors.size();
  m.rows = vectors.rows();
  m.kind = std::string(vector_index_kind_name(vectors.kind()));
  m.params = vectors.describe();
  m.hash = vectors.save(vectors_path(data_dir, gen));
  write_manifest(data_dir, gen, m);
}

std::vector<float> embed_checked(const Embedder& embedder, const std::vector<std::string>& texts) {
  std::vector<float> out = embedder.embed(texts);
  if (out.size() != texts.size() * static_cast<size_t>(embedder.dim()))
    fail(Errc::kInternal, "embedder {} returned {} floats for {} texts of dimension {}", embedder.identity(),
         out.size(), texts.size(), embedder.dim());
  return out;
}

std::shared_ptr<const Embedder> open_recorded_embedder(const Catalog& catalog, const std::string& data_dir,
                                                       std::string* path_out) {
  std::optional<std::string> identity = catalog.meta("embedder_identity");
  if (!identity) return nullptr;
  std::string path = catalog.meta("embedder_path").value_or("");
  if (path.empty())
    fail(Errc::kNotFound, "{}: vectors were made by {} but the data dir records no model file; give it with "
         "rag ingest --embed-model FILE", data_dir, *identity);
  std::shared_ptr<const Embedder> embedder;
  try {
    embedder = open_embedder(path);
  } catch (const Error& e) {
    fail(e.code(), "{}: the data dir embeds with {} and cannot open it: {}; restore the file, give it with "
         "rag ingest --embed-model FILE, or re-embed with rag ingest --reembed --embed-model FILE", data_dir, path,
         e.what());
  }
  if (embedder->identity() != *identity)
    fail(Errc::kMismatch, "{}: {} is now model {}, but the vectors were made by {}; re-embed with rag ingest "
         "--reembed --embed-model {} --data {}", data_dir, path, embedder->identity(), *identity, path, data_dir);
  if (path_out) *path_out = path;
  return embedder;
}

int64_t embed_missing(Catalog& catalog, const Embedder& embedder, const std::string& data_dir) {
  std::vector<int64_t> missing = catalog.chunk_ids_without_vector();
  if (missing.empty()) return 0;
  spdlog::info("index: {}: embedding {} chunks that have no vector", data_dir, missing.size());
  constexpr size_t kCommitChunks = 1024;  // chunks per SQLite transaction
  auto start = Clock::now(), logged = start;
  int64_t done = 0;
  std::optional<DocumentRecord> doc;
  for (size_t begin = 0; begin < missing.size(); begin += kCommitChunks) {
    std::vector<int64_t> ids;
    std::vector<float> rows;
    size_t end = std::min(missing.size(), begin + kCommitChunks);
    for (size_t i = begin; i < end; i += kEmbedBatch) {
      std::vector<std::string> texts;
      for (size_t j = i; j < std::min(end, i + kEmbedBatch); ++j) {
        auto chunk = catalog.chunk(missing[j]);
        if (!chunk) continue;
        if (!doc || doc->id != chunk->doc_id) doc = catalog.document(chunk->doc_id);
        if (!doc) continue;
        texts.push_back(embed_passage(doc->title, chunk->heading_path, chunk->text));
        ids.push_back(chunk->id);
      }
      std::vector<float> v = embed_checked(embedder, texts);
      rows.insert(rows.end(), v.begin(), v.end());
    }
    catalog.begin();
    try {
      catalog.put_vectors(ids, rows, embedder.dim());
      catalog.commit();
    } catch (...) {
      catalog.rollback();
      throw;
    }
    done += static_cast<int64_t>(ids.size());
    if (seconds_since(logged) >= 10) {
      logged = Clock::now();
      spdlog::info("index: {}: embedded {} of {} chunks ({:.0f} chunks/s)", data_dir, done, missing.size(),
                   static_cast<double>(done) / seconds_since(start));
    }
  }
  return done;
}

// ---- rebuild

RebuildSummary rebuild(const std::string& data_dir, const RebuildOptions& options) {
  auto start = Clock::now();
  if (options.keep_generations < 2)
    fail(Errc::kInvalidArgument, "--keep: at least 2 generations (the live one and the one queries may still read)");
  std::error_code ec;
  if (!fs::exists(catalog_path(data_dir), ec))
    fail(Errc::kNotFound, "{}: no catalog here; run rag ingest PATH --data {} first", data_dir, data_dir);
  WriteLock lock(data_dir, options.wait_for_lock);
  Catalog catalog(catalog_path(data_dir), Catalog::Mode::kWrite);
  remove_unpublished_generations(data_dir);

  std::shared_ptr<const Embedder> embedder = open_recorded_embedder(catalog, data_dir);

  RebuildSummary summary;
  if (embedder && options.reembed) {
    catalog.begin();
    try {
      catalog.clear_vectors();
      catalog.commit();
    } catch (...) {
      catalog.rollback();
      throw;
    }
  }
  // Also completes vectors an interrupted writer left out.
  if (embedder) summary.embedded = embed_missing(catalog, *embedder, data_dir);

  PendingGeneration next(data_dir, 0);
  {
    KeywordIndex keywords(keyword_path(data_dir, next.number()), KeywordIndex::Mode::kWrite);
    keywords_from_catalog(catalog, keywords, data_dir);
    summary.chunks = keywords.size();
  }
  if (embedder) {
    VectorIndexKind kind = options.vector_index;
    if (kind == VectorIndexKind::kAuto)
      if (auto forced = catalog.meta("vector_index_kind")) kind = parse_vector_index_kind(*forced);
    auto vectors = vectors_from_catalog(catalog, embedder->dim(), kind, options.vector_params, data_dir);
    save_vectors(*vectors, data_dir, next.number(), catalog.change_counter(), embedder->identity());
    summary.vectors = vectors->size();
  }
  summary.purged = next.publish(catalog, options.keep_generations);
  summary.generation = next.number();
  summary.seconds = seconds_since(start);
  spdlog::info("rebuild: {}: generation {} published: {} chunks, {} vectors, {} embedded, {:.2f}s", data_dir,
               summary.generation, summary.chunks, summary.vectors, summary.embedded, summary.seconds);
  return summary;
}

// ---- verify

VerifyReport verify(const std::string& data_dir) {
  VerifyReport r;
  std::error_code ec;
  if (!fs::exists(catalog_path(data_dir), ec))
    fail(Errc::kNotFound, "{}: no catalog here; run rag ingest PATH --data {} first", data_dir, data_dir);
  // No CURRENT and no generation folder: a first writer stopped before publishing (or before its catalog had
  // tables, which the catalog refuses to open for reading). Nothing is served and nothing disagrees.
  if (!fs::exists(data_dir + "/CURRENT", ec) && generations_on_disk(data_dir).empty()) {
    r.notes.push_back("nothing published yet (a first rag ingest stopped before publishing, or none ran); the "
                      "next rag ingest or rag rebuild publishes what the catalog holds");
    return r;
  }
  Catalog catalog(catalog_path(data_dir), Catalog::Mode::kRead);
  r.catalog_change = catalog.change_counter();
  auto problem = [&](std::string line) { r.problems.push_back(std::move(line)); };
  try {
    r.generation = current_generation(data_dir);
  } catch (const Error& e) {
    problem(e.what());
    return r;
  }
  for (int64_t g : generations_on_disk(data_dir))
    if (g > r.generation)
      r.notes.push_back(fmt::format("gen/{}: left unpublished by a writer that stopped; the next writer removes it", g));
  if (r.generation == 0) {
    if (catalog.document_count() > 0) problem("no generation is published (CURRENT is missing); run rag rebuild");
    else r.notes.push_back("empty data dir: nothing ingested yet");
    return r;
  }

  std::vector<int64_t> keyword_ids;
  try {
    KeywordIndex keywords(keyword_path(data_dir, r.generation), KeywordIndex::Mode::kRead);
    r.generation_change = keywords.committed_change();
    keyword_ids = keywords.chunk_ids();
    r.keyword_chunks = static_cast<int64_t>(keyword_ids.size());
  } catch (const std::exception& e) {
    problem(fmt::format("generation {}: keyword index unreadable: {}", r.generation, e.what()));
    return r;
  }
  if (r.generation_change < 0 || r.generation_change > r.catalog_change) {
    problem(fmt::format("generation {} reflects catalog change {} but the catalog is at {} (a catalog restored "
                        "from an older copy?); run rag verify --repair",
                        r.generation, r.generation_change, r.catalog_change));
    return r;
  }
  std::vector<int64_t> removed, added;
  catalog.chunk_changes_since(r.generation_change, removed, added);
  if (!removed.empty() || !added.empty())
    r.notes.push_back(fmt::format("the catalog has {} removed and {} added chunks the live generation does not "
                                  "reflect yet (a writer stopped or is running); the next rag ingest or rag "
                                  "rebuild publishes them",
                                  removed.size(), added.size()));

  std::vector<int64_t> expected = catalog.chunk_ids_live_at(r.generation_change);
  r.chunks = static_cast<int64_t>(expected.size());
  auto compare = [&](const char* what, const std::vector<int64_t>& have) {
    std::vector<int64_t> missing = minus(expected, have), extra = minus(have, expected);
    if (!missing.empty())
      problem(fmt::format("generation {}: {} lacks {} catalog chunks (ids {})", r.generation, what, missing.size(),
                          sample_ids(missing)));
    if (!extra.empty())
      problem(fmt::format("generation {}: {} holds {} chunks the catalog does not (ids {})", r.generation, what,
                          extra.size(), sample_ids(extra)));
  };
  compare("keyword index", keyword_ids);

  std::optional<std::string> identity = catalog.meta("embedder_identity");
  std::optional<VectorManifest> manifest;
  try {
    manifest = read_manifest(data_dir, r.generation);
  } catch (const Error& e) {
    problem(e.what());
    return r;
  }
  if (!manifest) {
    if (identity) problem(fmt::format("generation {}: no vector index, but the data dir embeds with {}", r.generation,
                                      *identity));
    return r;
  }
  if (manifest->change_counter != r.generation_change)
    problem(fmt::format("generation {}: manifest reflects catalog change {}, its keyword index {}", r.generation,
                        manifest->change_counter, r.generation_change));
  if (!identity || *identity != manifest->embedder)
    problem(fmt::format("generation {}: vectors made by {} but the catalog records {}", r.generation,
                        manifest->embedder, identity.value_or("no embedder")));
  try {
    auto vectors = VectorIndex::load(generation_path(data_dir, r.generation) + "/" + manifest->file, manifest->hash,
                                     {}, parse_vector_index_kind(manifest->kind));
    r.vectors = vectors->size();
    if (vectors->dim() != manifest->dim || vectors->size() != manifest->vectors)
      problem(fmt::format("generation {}: manifest says {} vectors of dimension {}, the file has {} of {}",
                          r.generation, manifest->vectors, manifest->dim, vectors->size(), vectors->dim()));
    compare("vector index", vectors->chunk_ids());
  } catch (const Error& e) {
    problem(e.what());
  }
  return r;
}

}  // namespace rag::index
