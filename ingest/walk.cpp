// Folder walk with per-folder access lists.
//
// ACL rules:
//  1. A folder's `.ragacl` replaces the list its parent handed down; sub-folders inherit it until one of
//     them has its own.
//  2. A root starts from the nearest `.ragacl` in the folders above it, so walking a sub-folder or a
//     single file of a protected folder keeps the protection.
//  3. A `.ragacl` that exists but cannot be read makes every file below it an error entry rather than
//     silently inheriting a broader list.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>

#include "common/error.h"
#include "common/log.h"
#include "ingest/ingest.h"

namespace rag::ingest {

namespace {

constexpr off_t kMaxAclBytes = 64 << 10;
constexpr int kMaxDepth = 256;

struct Acl {
  std::vector<std::string> principals;
  std::string error;  // non-empty: the folder's .ragacl could not be read
};

struct DirId {
  dev_t dev;
  ino_t ino;
  bool operator==(const DirId&) const = default;
};

std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return std::string(s.substr(b, e - b));
}

bool valid_principal(std::string_view line) {
  std::string_view name;
  if (line.starts_with("user:"))
    name = line.substr(5);
  else if (line.starts_with("group:"))
    name = line.substr(6);
  else
    return false;
  if (name.empty() || name.size() > 256) return false;
  for (unsigned char c : name)
    if (c <= ' ' || c == 0x7F) return false;
  return true;
}

std::vector<std::string> parse_acl(const std::string& path, std::string_view content) {
  std::vector<std::string> principals;
  int line_number = 0;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t eol = std::min(content.find('\n', pos), content.size());
    std::string line = trim(content.substr(pos, eol - pos));
    pos = eol + 1;
    ++line_number;
    if (line.empty() || line[0] == '#') continue;
    if (!valid_principal(line)) {
      spdlog::warn("{}:{}: ignoring invalid ACL line (expected user:NAME or group:NAME)", path, line_number);
      continue;
    }
    if (std::find(principals.begin(), principals.end(), line) == principals.end())
      principals.push_back(std::move(line));
  }
  return principals;
}

// The list in `dir`/.ragacl; nullopt when the folder has none.
std::optional<Acl> read_acl(const std::string& dir) {
  std::string path = join(dir, ".ragacl");
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    return Acl{{}, fmt::format("cannot examine {}: {}", path, std::strerror(errno))};
  }
  if (!S_ISREG(st.st_mode)) return Acl{{}, fmt::format("{} is not a regular file", path)};
  if (st.st_size > kMaxAclBytes)
    return Acl{{}, fmt::format("{} is {} bytes, more than the {} allowed", path, st.st_size, kMaxAclBytes)};
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Acl{{}, fmt::format("cannot read {}: {}", path, std::strerror(errno))};
  std::string content(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < content.size()) {
    ssize_t n = read(fd, content.data() + got, content.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  content.resize(got);
  return Acl{parse_acl(path, content), {}};
}

// The list for files in `dir`: its own .ragacl when present, else `inherited`.
Acl folder_acl(const std::string& dir, const Acl& inherited) {
  return read_acl(dir).value_or(inherited);
}

class Walker {
 public:
  Walker(const WalkOptions& options, std::vector<FileEntry>& out) : options_(options), out_(out) {}

  void add_file(const std::string& path, const struct stat& st, const Acl& acl) {
    FileEntry entry;
    entry.path = path;
    entry.size = st.st_size;
    entry.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    entry.acl = acl.principals;
    entry.error = acl.error;
    if (entry.error.empty()) {
      // Opening is the only reliable readability test (ACLs, root, network file systems).
      int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        entry.error = fmt::format("cannot open: {}", std::strerror(errno));
      else
        close(fd);
    }
    out_.push_back(std::move(entry));
  }

  void add_error(const std::string& path, std::string error) {
    FileEntry entry;
    entry.path = path;
    entry.error = std::move(error);
    out_.push_back(std::move(entry));
  }

  void walk_dir(const std::string& dir, const struct stat& dir_stat, const Acl& inherited) {
    DirId id{dir_stat.st_dev, dir_stat.st_ino};
    if (std::find(path_.begin(), path_.end(), id) != path_.end()) {
      add_error(dir, "symlink loop: this folder is its own ancestor");
      return;
    }
    if (static_cast<int>(path_.size()) >= kMaxDepth) {
      add_error(dir, fmt::format("folder nesting deeper than {} levels", kMaxDepth));
      return;
    }
    DIR* handle = opendir(dir.c_str());
    if (!handle) {
      add_error(dir, fmt::format("cannot list folder: {}", std::strerror(errno)));
      return;
    }
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* e = readdir(handle)) {
      if (e->d_name[0] == '.') continue;  // hidden, ".", ".." and .ragacl
      names.emplace_back(e->d_name);
    }
    closedir(handle);
    std::sort(names.begin(), names.end());
    Acl acl = folder_acl(dir, inherited);
    path_.push_back(id);
    for (const std::string& name : names) visit(join(dir, name), acl);
    path_.pop_back();
  }

  void visit(const std::string& path, const Acl& acl) {
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) {
      add_error(path, fmt::format("vanished while walking: {}", std::strerror(errno)));
      return;
    }
    if (S_ISLNK(st.st_mode)) {
      if (!options_.follow_symlinks) return;
      if (stat(path.c_str(), &st) != 0) {
        add_error(path, fmt::format("dangling symlink: {}", std::strerror(errno)));
        return;
      }
    }
    if (S_ISDIR(st.st_mode))
      walk_dir(path, st, acl);
    else if (S_ISREG(st.st_mode))
      add_file(path, st, acl);
    else
      spdlog::debug("{}: skipped, not a regular file or folder", path);
  }

 private:
  const WalkOptions& options_;
  std::vector<FileEntry>& out_;
  std::vector<DirId> path_;  // folders from the root to the current one
};

// The list a root inherits: the nearest .ragacl in the folders above it, so ingesting a sub-folder (or
// one file) of a protected folder keeps the protection.
Acl inherited_acl(const std::string& root) {
  std::error_code ec;
  std::filesystem::path path = std::filesystem::absolute(root, ec).lexically_normal();
  if (ec) return {};
  if (!path.has_filename()) path = path.parent_path();  // "dir/" normalises to "dir/" with an empty name
  std::filesystem::path dir = path.parent_path();
  for (int level = 0; level < kMaxDepth && !dir.empty(); ++level) {
    if (std::optional<Acl> acl = read_acl(dir.string())) return *acl;
    if (dir == dir.root_path()) break;
    dir = dir.parent_path();
  }
  return {};
}

}  // namespace

std::vector<FileEntry> walk(const std::vector<std::string>& roots, const WalkOptions& options) {
  std::vector<FileEntry> entries;
  Walker walker(options, entries);
  for (const std::string& root : roots) {
    struct stat st;
    if (stat(root.c_str(), &st) != 0)
      fail(errno == ENOENT ? Errc::kNotFound : Errc::kIo, "{}: cannot read: {}", root, std::strerror(errno));
    if (S_ISDIR(st.st_mode)) {
      if (access(root.c_str(), R_OK | X_OK) != 0)
        fail(Errc::kIo, "{}: cannot list folder: {}", root, std::strerror(errno));
      walker.walk_dir(root, st, inherited_acl(root));
    } else if (S_ISREG(st.st_mode)) {
      walker.add_file(root, st, inherited_acl(root));
    } else {
      fail(Errc::kInvalidArgument, "{}: not a regular file or folder", root);
    }
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const FileEntry& a, const FileEntry& b) { return a.path < b.path; });
  // Overlapping roots reach the same file twice; keep the first.
  entries.erase(std::unique(entries.begin(), entries.end(),
                            [](const FileEntry& a, const FileEntry& b) { return a.path == b.path; }),
                entries.end());
  return entries;
}

}  // namespace rag::ingest
