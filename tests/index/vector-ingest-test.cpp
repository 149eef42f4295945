// Ingest with an embedder: vectors in the catalog, a FAISS file with its manifest, deletions, crash repair,
// embedder mismatches and corrupt files; the Searcher's vector side and hydrate.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <thread>

#include "common/error.h"
#include "index/index.h"
#include "tests/support/support.h"
#include "tests/support/tiny-bert.h"

namespace rag::index {
namespace {

std::string tiny_model(const test::TempDir& dir, uint32_t seed = 5, bool reranker = false) {
  test::TinyBertSpec spec;
  spec.seed = seed;
  spec.context = 256;
  spec.reranker = reranker;
  std::string path = dir / ("model-" + std::to_string(seed) + (reranker ? "-rank" : "") + ".gguf");
  test::write_tiny_bert(path, spec);
  return path;
}

void write_docs(const test::TempDir& dir) {
  test::write_file(dir / "docs/cats.txt", "cats sleep on the warm mat all day");
  test::write_file(dir / "docs/dogs.txt", "dogs fetch sticks in the park");
  test::write_file(dir / "docs/cells.txt", "cells divide when the gene says so");
  test::write_file(dir / "docs/travel.md", "# Travel policy\n\nthe expense limit for travel is low\n");
  test::write_file(dir / "docs/risk.txt", "patients at risk of cancer in the study");
}

IngestSummary run(const test::TempDir& dir, std::shared_ptr<const Embedder> embedder = nullptr,
                  VectorIndexKind kind = VectorIndexKind::kAuto, const std::string& model_path = "") {
  IngestOptions options;
  options.roots = {dir / "docs"};
  options.threads = 2;
  options.embedder = std::move(embedder);
  options.embedder_path = model_path;
  options.vector_index = kind;
  return ingest(dir / "data", options);
}

// The five documents ingested with a tiny embedder, where most tests here start.
struct Embedded {
  std::string model;
  std::shared_ptr<const Embedder> embedder;
  std::string data;
};
Embedded ingest_embedded(const test::TempDir& dir) {
  write_docs(dir);
  Embedded e{tiny_model(dir), nullptr, dir / "data"};
  e.embedder = open_embedder(e.model);
  run(dir, e.embedder, VectorIndexKind::kAuto, e.model);
  return e;
}

std::vector<int64_t> ids_of(const std::vector<ScoredChunk>& hits) {
  std::vector<int64_t> out;
  for (const auto& h : hits) out.push_back(h.chunk_id);
  return out;
}

// Each chunk, queried by the vector of its own passage, comes first.
void expect_each_chunk_finds_itself(const std::string& data, const Embedder& embedder) {
  Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
  Searcher searcher(data);
  int checked = 0;
  catalog.for_each_chunk([&](const ChunkRecord& c, const DocumentRecord& d) {
    SearchOptions options;
    options.k = 3;
    auto hits = searcher.vector_candidates(embed_passage(d.title, c.heading_path, c.text), embedder, options);
    ASSERT_FALSE(hits.empty());
    EXPECT_EQ(hits[0].chunk_id, c.id) << d.path;
    EXPECT_NEAR(hits[0].score, 1.0, 1e-4);
    ++checked;
  });
  EXPECT_GT(checked, 0);
}

template <typename F>
void expect_error(Errc code, const std::string& fragment, F&& f) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(VectorIngest, EmbedsChunksIntoTheCatalogAndAFaissFileAndFindsAChunkByItsOwnText) {
  test::TempDir dir;
  write_docs(dir);
  std::string model = tiny_model(dir);
  auto embedder = open_embedder(model);
  auto s = run(dir, embedder, VectorIndexKind::kAuto, model);
  EXPECT_EQ(s.embedded, s.chunks);
  EXPECT_EQ(s.vectors, s.chunks);
  std::string data = dir / "data";
  {
    Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
    EXPECT_EQ(catalog.schema_version(), Catalog::kSchemaVersion);
    EXPECT_EQ(catalog.vector_count(), catalog.chunk_count());
    EXPECT_EQ(catalog.meta("embedder_identity"), embedder->identity());
    EXPECT_EQ(catalog.meta("embedder_path"), model);
    auto m = read_manifest(data, current_generation(data));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->change_counter, catalog.change_counter());
    EXPECT_EQ(m->embedder, embedder->identity());
    EXPECT_EQ(m->dim, embedder->dim());
    EXPECT_EQ(m->vectors, catalog.chunk_count());
    EXPECT_EQ(m->kind, "flat");
    EXPECT_TRUE(std::filesystem::exists(vectors_path(data, current_generation(data))));
  }
  Searcher searcher(data);
  EXPECT_TRUE(searcher.has_vectors());
  EXPECT_EQ(searcher.embedder_identity(), embedder->identity());
  EXPECT_EQ(searcher.embedder_path(), model);
  expect_each_chunk_finds_itself(data, *embedder);

  // Unchanged files: nothing embedded, nothing rewritten; the recorded model is used without being given.
  std::string before = test::read_file(manifest_path(data, current_generation(data)));
  auto again = run(dir);
  EXPECT_EQ(again.unchanged, 5);
  EXPECT_EQ(again.embedded, 0);
  EXPECT_EQ(again.vectors, s.vectors);
  EXPECT_EQ(test::read_file(manifest_path(data, current_generation(data))), before);

  // A new file without --embed-model is embedded with the recorded model.
  test::write_file(dir / "docs/new.txt", "a dog and a cat travel");
  auto added = run(dir);
  EXPECT_EQ(added.new_files, 1);
  EXPECT_EQ(added.embedded, 1);
  expect_each_chunk_finds_itself(data, *embedder);
}

TEST(VectorIngest, AChangedFilesOldVectorsAreGoneInEveryIndexKind) {
  for (auto kind : {VectorIndexKind::kFlat, VectorIndexKind::kSq4, VectorIndexKind::kHnsw, VectorIndexKind::kIvf}) {
    SCOPED_TRACE(std::string(vector_index_kind_name(kind)));
    test::TempDir dir;
    write_docs(dir);
    for (int i = 0; i < 10; ++i)  // enough chunks that two dead rows stay under HNSW's compaction threshold
      test::write_file(dir / ("docs/filler" + std::to_string(i) + ".txt"), "filler text number " + std::to_string(i));
    std::string model = tiny_model(dir);
    auto embedder = open_embedder(model);
    run(dir, embedder, kind, model);
    std::string data = dir / "data";
    std::vector<int64_t> old_ids;
    std::vector<float> old_vector;
    {
      Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
      auto doc = catalog.document_by_path(dir / "docs/dogs.txt");
      ASSERT_TRUE(doc);
      old_ids = catalog.chunk_ids_of(doc->id);
      old_vector = catalog.vector(old_ids.at(0), embedder->dim());
      ASSERT_FALSE(old_vector.empty());
    }
    test::write_file(dir / "docs/dogs.txt", "dogs now chase cats instead of sticks");
    std::filesystem::remove(dir / "docs/risk.txt");
    auto s = run(dir);  // the kind is remembered too
    EXPECT_EQ(s.updated, 1);
    EXPECT_EQ(s.removed, 1);
    EXPECT_EQ(s.embedded, 1);
    Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
    // The replaced chunk's row and vector stay (softly removed) while generation 1, which holds them, is kept.
    EXPECT_FALSE(catalog.vector(old_ids.at(0), embedder->dim()).empty());
    EXPECT_GT(catalog.chunk(old_ids.at(0))->id, 0);
    EXPECT_EQ(catalog.vector_count(), catalog.chunk_count());
    auto m = read_manifest(data, current_generation(data));
    ASSERT_TRUE(m);
    EXPECT_EQ(m->kind, vector_index_kind_name(kind));
    EXPECT_EQ(m->vectors, catalog.chunk_count());
    if (kind == VectorIndexKind::kHnsw) {
      EXPECT_GT(m->rows, m->vectors);  // tombstones, not yet compacted
    }
    Searcher searcher(data);
    SearchOptions options;
    options.k = 50;
    auto hits = searcher.vector_candidates(std::span<const float>(old_vector), options);
    EXPECT_EQ(static_cast<int64_t>(hits.size()), catalog.chunk_count());
    for (const auto& h : hits) EXPECT_FALSE(std::count(old_ids.begin(), old_ids.end(), h.chunk_id)) << h.chunk_id;
    expect_each_chunk_finds_itself(data, *embedder);
  }
}

TEST(VectorIngest, AManifestBehindTheCatalogIsRepairedByTheNextIngest) {
  test::TempDir dir;
  auto [model, embedder, data] = ingest_embedded(dir);
  int64_t gen = current_generation(data);
  // A crash after a catalog commit: the catalog dropped a document, the FAISS file still has its chunks.
  std::vector<int64_t> dropped;
  {
    Catalog catalog(catalog_path(data), Catalog::Mode::kWrite);
    auto doc = catalog.document_by_path(dir / "docs/cats.txt");
    ASSERT_TRUE(doc);
    catalog.begin();
    catalog.remove_document(doc->id, dropped);
    catalog.commit();
  }
  ASSERT_FALSE(dropped.empty());
  EXPECT_LT(read_manifest(data, gen)->change_counter, Catalog(catalog_path(data), Catalog::Mode::kRead).change_counter());
  test::write_file(dir / "docs/extra.txt", "an extra file so the walk finds the cat file gone too");
  std::filesystem::remove(dir / "docs/cats.txt");
  run(dir);
  Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
  EXPECT_EQ(current_generation(data), gen + 1);
  auto m = read_manifest(data, gen + 1);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->change_counter, catalog.change_counter());
  EXPECT_EQ(m->vectors, catalog.chunk_count());
  EXPECT_EQ(m->rows, catalog.chunk_count());  // rebuilt from the catalog, not patched
  Searcher searcher(data);
  SearchOptions options;
  options.k = 50;
  std::vector<float> q = embedder->embed({"cats"});
  for (const auto& h : searcher.vector_candidates(std::span<const float>(q), options))
    EXPECT_FALSE(std::count(dropped.begin(), dropped.end(), h.chunk_id));
}

TEST(VectorIngest, AnotherEmbedderIsAMismatchUntilReembedded) {
  test::TempDir dir;
  write_docs(dir);
  std::string model = tiny_model(dir, 5);
  std::string other_model = tiny_model(dir, 6);
  auto embedder = open_embedder(model);
  auto other = open_embedder(other_model);
  ASSERT_NE(embedder->identity(), other->identity());
  run(dir, embedder, VectorIndexKind::kAuto, model);
  std::string data = dir / "data";
  expect_error(Errc::kMismatch, "--reembed", [&] { run(dir, other, VectorIndexKind::kAuto, other_model); });

  Searcher searcher(data);
  SearchOptions options;
  options.embedder_identity = other->identity();
  std::vector<float> q = other->embed({"cats"});
  expect_error(Errc::kMismatch, "re-embed", [&] { searcher.vector_candidates(std::span<const float>(q), options); });
  expect_error(Errc::kMismatch, "re-embed", [&] { searcher.vector_candidates("cats", *other); });
  std::vector<float> short_vector(3, 0.5f);
  expect_error(Errc::kInvalidArgument, "floats", [&] { searcher.vector_candidates(std::span<const float>(short_vector)); });

  // --reembed switches models: every chunk is embedded again and the manifest names the new model.
  IngestOptions options2;
  options2.embedder = other;
  options2.embedder_path = other_model;
  options2.reembed = true;
  auto s = ingest(data, options2);
  Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
  EXPECT_EQ(s.embedded, catalog.chunk_count());
  EXPECT_EQ(catalog.meta("embedder_identity"), other->identity());
  EXPECT_EQ(read_manifest(data, current_generation(data))->embedder, other->identity());
  EXPECT_EQ(Searcher(data).embedder_identity(), other->identity());
  expect_each_chunk_finds_itself(data, *other);
}

TEST(VectorIngest, WithoutAnEmbedderThereAreNoVectorsAndVectorQueriesSayHowToAddThem) {
  test::TempDir dir;
  write_docs(dir);
  auto s = run(dir);
  EXPECT_EQ(s.embedded, 0);
  EXPECT_EQ(s.vectors, 0);
  std::string data = dir / "data";
  EXPECT_FALSE(read_manifest(data, current_generation(data)));
  Searcher searcher(data);
  EXPECT_FALSE(searcher.has_vectors());
  EXPECT_EQ(searcher.embedder_identity(), "");
  std::vector<float> q(32, 0.1f);
  expect_error(Errc::kUnsupported, "--embed-model", [&] { searcher.vector_candidates(std::span<const float>(q)); });
  EXPECT_FALSE(searcher.keyword_candidates("dogs").empty());

  // Adding an embedder later embeds the chunks already there.
  std::string model = tiny_model(dir);
  auto embedder = open_embedder(model);
  auto later = run(dir, embedder, VectorIndexKind::kAuto, model);
  EXPECT_EQ(later.unchanged, 5);
  EXPECT_EQ(later.embedded, Catalog(catalog_path(data), Catalog::Mode::kRead).chunk_count());
  expect_each_chunk_finds_itself(data, *embedder);
}

TEST(VectorIngest, ACorruptFaissFileIsAClearErrorAndTheNextIngestRebuildsIt) {
  test::TempDir dir;
  auto [model, embedder, data] = ingest_embedded(dir);
  std::string path = vectors_path(data, current_generation(data));
  std::string bytes = test::read_file(path);
  bytes[bytes.size() - 9] ^= 0x11;
  test::write_file(path, bytes);
  Searcher searcher(data);
  std::vector<float> q = embedder->embed({"cats"});
  expect_error(Errc::kCorrupt, "hash", [&] { searcher.vector_candidates(std::span<const float>(q)); });
  test::write_file(manifest_path(data, current_generation(data)), "{ not json");
  expect_error(Errc::kCorrupt, "manifest.json", [&] { Searcher(data).vector_candidates(std::span<const float>(q)); });
  EXPECT_FALSE(Searcher(data).keyword_candidates("cats").empty());  // BM25 does not need the manifest
  run(dir);
  expect_each_chunk_finds_itself(data, *embedder);
}

TEST(VectorSearch, ASearcherKeepsItsGenerationsVectorsAfterWritersRetireIt) {
  test::TempDir dir;
  auto [model, embedder, data] = ingest_embedded(dir);
  const int64_t opened = current_generation(data);
  Searcher searcher(data);
  // Three publishes retire the generation the Searcher opened (its directory is removed) before its
  // first vector query.
  for (int i = 0; i < 3; ++i) {
    test::write_file(dir / "docs/dogs.txt", "dogs fetch sticks in the park, round " + std::to_string(i));
    run(dir, embedder, VectorIndexKind::kAuto, model);
  }
  ASSERT_FALSE(std::filesystem::exists(generation_path(data, opened)));
  EXPECT_EQ(searcher.generation(), opened);
  EXPECT_TRUE(searcher.has_vectors());
  EXPECT_EQ(searcher.embedder_identity(), embedder->identity());
  std::vector<float> q = embedder->embed({"cats sleep on the warm mat all day"});
  auto hits = searcher.vector_candidates(std::span<const float>(q));
  ASSERT_FALSE(hits.empty());
  EXPECT_FALSE(searcher.keyword_candidates("cats").empty());
}

// Readers of one generation share its loaded vector index; a newer generation's readers get their own, and
// the last reader of a generation frees it.
TEST(VectorSearch, SearchersOfOneGenerationShareOneLoadedIndex) {
  test::TempDir dir;
  auto [model, embedder, data] = ingest_embedded(dir);
  std::vector<float> q = embedder->embed({"cats sleep on the warm mat all day"});
  const int64_t before = loaded_vector_indexes();
  {
    auto first = std::make_unique<Searcher>(data);
    Searcher second(data);
    EXPECT_EQ(loaded_vector_indexes(), before);  // loaded on first use
    auto a = ids_of(first->vector_candidates(std::span<const float>(q)));
    auto b = ids_of(second.vector_candidates(std::span<const float>(q)));
    EXPECT_EQ(a, b);
    EXPECT_EQ(loaded_vector_indexes(), before + 1);
    test::write_file(dir / "docs/dogs.txt", "dogs fetch sticks in the park, again");
    run(dir, embedder, VectorIndexKind::kAuto, model);
    Searcher third(data);
    ASSERT_NE(third.generation(), second.generation());
    EXPECT_FALSE(third.vector_candidates(std::span<const float>(q)).empty());
    EXPECT_EQ(loaded_vector_indexes(), before + 2);
    first.reset();  // the other reader of its generation still holds the index
    EXPECT_EQ(loaded_vector_indexes(), before + 2);
    EXPECT_EQ(ids_of(second.vector_candidates(std::span<const float>(q))), b);
  }
  EXPECT_EQ(loaded_vector_indexes(), before);
}

TEST(VectorIngest, ARerankerIsNotAnEmbedder) {
  test::TempDir dir;
  std::string path = tiny_model(dir, 5, true);
  expect_error(Errc::kUnsupported, "reranker", [&] { open_embedder(path); });
}

TEST(VectorSearch, KeywordAndVectorCandidatesRunConcurrentlyOnOneSearcher) {
  test::TempDir dir;
  auto [model, embedder, data] = ingest_embedded(dir);
  Searcher searcher(data);
  SearchOptions options;
  options.principals = std::vector<std::string>{kNoAclPrincipal};
  std::vector<float> q = embedder->embed({"dogs in the park"});
  auto keyword_alone = ids_of(searcher.keyword_candidates("dogs park", options));
  auto vector_alone = ids_of(searcher.vector_candidates(std::span<const float>(q), options));
  ASSERT_FALSE(keyword_alone.empty());
  ASSERT_FALSE(vector_alone.empty());
  for (int round = 0; round < 20; ++round) {
    std::vector<int64_t> from_thread;
    std::thread t([&] { from_thread = ids_of(searcher.vector_candidates(std::span<const float>(q), options)); });
    auto here = ids_of(searcher.keyword_candidates("dogs park", options));
    t.join();
    EXPECT_EQ(here, keyword_alone);
    EXPECT_EQ(from_thread, vector_alone);
  }
}

TEST(VectorSearch, HydrateKeepsOrderAndScoresAndMarksQueryWordsInAVectorOnlyHit) {
  test::TempDir dir;
  auto [model, embedder, data] = ingest_embedded(dir);
  Searcher searcher(data);
  Catalog catalog(catalog_path(data), Catalog::Mode::kRead);
  auto dogs = catalog.chunk_ids_of(catalog.document_by_path(dir / "docs/dogs.txt")->id).at(0);
  auto cats = catalog.chunk_ids_of(catalog.document_by_path(dir / "docs/cats.txt")->id).at(0);
  std::vector<ScoredChunk> candidates = {{dogs, 0.9}, {123456, 0.8}, {cats, 0.5}};
  auto hits = searcher.hydrate(candidates, "park sticks");
  ASSERT_EQ(hits.size(), 2u);  // the unknown chunk is skipped
  EXPECT_EQ(hits[0].chunk_id, dogs);
  EXPECT_DOUBLE_EQ(hits[0].score, 0.9);
  EXPECT_EQ(hits[0].path, dir / "docs/dogs.txt");
  EXPECT_NE(hits[0].snippet.find("**park**"), std::string::npos) << hits[0].snippet;
  EXPECT_NE(hits[0].snippet.find("**sticks**"), std::string::npos) << hits[0].snippet;
  EXPECT_EQ(hits[1].chunk_id, cats);
  EXPECT_NE(hits[1].snippet.find("warm mat"), std::string::npos) << hits[1].snippet;
  // A principal set that may not read them gets nothing, whatever the candidates say.
  SearchOptions options;
  options.principals = std::vector<std::string>{"user:nobody"};
  EXPECT_TRUE(searcher.hydrate(candidates, "park", options).empty());
}

}  // namespace
}  // namespace rag::index
