// The vector manifest of a generation (<data>/gen/<n>/manifest.json) and durable file replacement.
//
// manifest.json (written last, after the FAISS file it names):
//   {"format": "rag-vectors", "version": 1, "change_counter": N, "embedder": "NAME/POOLING/dDIM/HASH",
//    "dim": 384, "vectors": live, "rows": rows, "kind": "hnsw", "params": {...}, "file": "vectors.faiss",
//    "xxh3_128": "32 hex digits"}
// A manifest is ours but still outside bytes: every field is type-checked and a bad one is kCorrupt.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "index/index.h"
#include "index/vector-impl.h"

namespace rag::index {
namespace {

constexpr const char* kFormat = "rag-vectors";
constexpr int kVersion = 1;
constexpr size_t kMaxManifestBytes = 1 << 20;

}  // namespace

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) fail(Errc::kIo, "{}: cannot open to fsync: {}", path, std::strerror(errno));
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (rc != 0) fail(Errc::kIo, "{}: fsync failed: {}", path, std::strerror(saved));
}

void commit_temp_file(const std::string& tmp, const std::string& path) {
  fsync_path(tmp, false);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    fail(Errc::kIo, "{}: cannot rename to {}: {}", tmp, path, std::strerror(errno));
  std::string dir = std::filesystem::path(path).parent_path().string();
  fsync_path(dir.empty() ? "." : dir, true);
}

void write_file_durably(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(Errc::kIo, "{}: cannot create: {}", tmp, std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int saved = errno;
      ::close(fd);
      fail(Errc::kIo, "{}: write failed: {}", tmp, std::strerror(saved));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  commit_temp_file(tmp, path);
}

std::string vectors_path(const std::string& data_dir, int64_t gen) {
  return generation_path(data_dir, gen) + "/vectors.faiss";
}

std::string manifest_path(const std::string& data_dir, int64_t gen) {
  return generation_path(data_dir, gen) + "/manifest.json";
}

std::optional<VectorManifest> read_manifest(const std::string& data_dir, int64_t gen) {
  std::string path = manifest_path(data_dir, gen);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(Errc::kIo, "{}: cannot read: {}", path, std::strerror(errno));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > kMaxManifestBytes) fail(Errc::kCorrupt, "{}: {} bytes is too large for a manifest", path, text.size());
  auto bad = [&](std::string_view what) -> VectorManifest {
    fail(Errc::kCorrupt, "{}: {}; run rag ingest to rebuild the vector index", path, what);
  };
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  auto str = [&](const char* key) -> std::string {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) bad(fmt::format("\"{}\" is missing or not a string", key));
    return it->get<std::string>();
  };
  auto num = [&](const char* key) -> int64_t {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) bad(fmt::format("\"{}\" is missing or not an integer", key));
    return it->get<int64_t>();
  };
  if (str("format") != kFormat) return bad("\"format\" is not rag-vectors");
  if (num("version") != kVersion) return bad(fmt::format("version {} is not {}", num("version"), kVersion));
  VectorManifest m;
  m.change_counter = num("change_counter");
  m.embedder = str("embedder");
  int64_t dim = num("dim");
  if (dim < 1 || dim > 65536) return bad(fmt::format("dim {} is out of range", dim));
  m.dim = static_cast<int>(dim);
  m.vectors = num("vectors");
  m.rows = num("rows");
  if (m.vectors < 0 || m.rows < m.vectors) return bad("vector and row counts disagree");
  m.kind = str("kind");
  parse_vector_index_kind(m.kind);
  auto params = j.find("params");
  if (params == j.end() || !params->is_object()) return bad("\"params\" is missing or not an object");
  m.params = params->dump();
  m.file = str("file");
  if (m.file.empty() || m.file.find('/') != std::string::npos || m.file.front() == '.')
    return bad("\"file\" must name a file in the generation folder");
  m.hash = str("xxh3_128");
  if (m.hash.size() != 32 || m.hash.find_first_not_of("0123456789abcdef") != std::string::npos)
    return bad("\"xxh3_128\" is not 32 hex digits");
  return m;
}

void write_manifest(const std::string& data_dir, int64_t gen, const VectorManifest& m) {
  nlohmann::json params = nlohmann::json::parse(m.params.empty() ? "{}" : m.params, nullptr, false);
  RAG_ASSERT(!params.is_discarded());
  nlohmann::json j = {{"format", kFormat},      {"version", kVersion},    {"change_counter", m.change_counter},
                      {"embedder", m.embedder}, {"dim", m.dim},           {"vectors", m.vectors},
                      {"rows", m.rows},         {"kind", m.kind},         {"params", params},
                      {"file", m.file},         {"xxh3_128", m.hash}};
  write_file_durably(manifest_path(data_dir, gen), j.dump(2) + "\n");
}

}  // namespace rag::index
