// parse_file: size check before reading, type detection, dispatch to the parser for the type.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "ingest/document-builder.h"
#include "ingest/ingest.h"

namespace rag::ingest {

namespace {

constexpr size_t kHeadBytes = 4096;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads up to `limit` bytes; stops early at end of file (the file may shrink while we read).
std::string read_up_to(int fd, size_t limit, const std::string& path) {
  std::string bytes(limit, '\0');
  size_t got = 0;
  while (got < limit) {
    ssize_t n = pread(fd, bytes.data() + got, limit - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(Errc::kIo, "{}: read failed: {}", path, std::strerror(errno));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  bytes.resize(got);
  return bytes;
}

}  // namespace

ParsedDocument parse_file(const std::string& path, const ParseOptions& options) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0)
    fail(errno == ENOENT ? Errc::kNotFound : Errc::kIo, "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) fail(Errc::kIo, "{}: cannot examine: {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(Errc::kUnsupported, "{}: not a regular file", path);
  if (st.st_size > options.max_file_bytes)
    fail(Errc::kLimit, "{}: {} bytes exceeds the limit of {} bytes (raise max_file_bytes to ingest it)", path,
         st.st_size, options.max_file_bytes);
  if (st.st_size == 0) fail(Errc::kCorrupt, "{}: empty file", path);

  std::string head = read_up_to(fd.get(), kHeadBytes, path);
  DocType type = detect_type(head, path);
  if (type == DocType::kPdf) return parse_pdf(path, options);
  if (type == DocType::kUnknown) {
    std::string ext = file_extension(path);
    if (ext == ".txt" || ext == ".text" || ext == ".md" || ext == ".markdown" || ext == ".html" ||
        ext == ".htm")
      fail(Errc::kCorrupt, "{}: binary content, not {}", path, ext.substr(1));
    fail(Errc::kUnsupported, "{}: unknown or binary file type", path);
  }

  // One byte past what fstat saw, so a file that grew past the limit meanwhile is still caught.
  int64_t limit = std::min(options.max_file_bytes, int64_t(st.st_size)) + 1;
  std::string bytes = read_up_to(fd.get(), static_cast<size_t>(limit), path);
  if (int64_t(bytes.size()) > options.max_file_bytes)
    fail(Errc::kLimit, "{}: grew past the limit of {} bytes while being read", path, options.max_file_bytes);
  switch (type) {
    case DocType::kMarkdown:
      return parse_markdown(bytes, path);
    case DocType::kHtml:
      return parse_html(bytes, path);
    default:
      return parse_text(bytes, path);
  }
}

}  // namespace rag::ingest
