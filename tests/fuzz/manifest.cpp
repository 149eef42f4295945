// The vector manifest reader (index::read_manifest) on arbitrary bytes. An accepted manifest must survive
// write_manifest and read back equal: the reader accepts only what the writer can reproduce.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "common/error.h"
#include "index/index.h"
#include "tests/fuzz/fuzz.h"

using namespace rag;

namespace {

bool same(const index::VectorManifest& a, const index::VectorManifest& b) {
  return a.change_counter == b.change_counter && a.embedder == b.embedder && a.dim == b.dim &&
         a.vectors == b.vectors && a.rows == b.rows && a.kind == b.kind && a.params == b.params &&
         a.file == b.file && a.hash == b.hash;
}

// A data dir in shared memory: gen/1/manifest.json links to the memfd holding the input (no disk write per
// iteration); gen/2 receives the round trip.
struct DataDir {
  fuzz::MemFile input{"fuzz-manifest"};
  std::string path;
  DataDir() {
    char tmpl[] = "/dev/shm/rag-fuzz-manifest-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) fuzz::finding("mkdtemp failed");
    path = tmpl;
    std::filesystem::create_directories(path + "/gen/1");
    std::filesystem::create_directories(path + "/gen/2");
    std::filesystem::create_symlink("/proc/self/fd/" + std::to_string(input.fd()), index::manifest_path(path, 1));
  }
  ~DataDir() { std::filesystem::remove_all(path); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static DataDir dir;
  dir.input.write(data, size);
  std::optional<index::VectorManifest> m;
  try {
    m = index::read_manifest(dir.path, 1);
  } catch (const Error&) {
    return 0;
  }
  if (!m) fuzz::finding("a present manifest read as absent");
  index::write_manifest(dir.path, 2, *m);
  std::optional<index::VectorManifest> again = index::read_manifest(dir.path, 2);
  if (!again || !same(*m, *again)) fuzz::finding("manifest does not read back as written");
  return 0;
}
