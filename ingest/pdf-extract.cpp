#include "ingest/pdf-extract.h"

#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-page.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>

#include "common/error.h"

namespace rag::ingest {

namespace {

// Poppler reports problems through this hook; keep the last one to explain a load failure instead of
// letting poppler write to the service's stderr. A plain array, not a std::string: the extraction child is
// forked by the PDF worker before main() and before this file's dynamic initializers have run.
char g_poppler_message[201];

void remember_poppler_message(const std::string& message, void*) {
  size_t n = std::min(message.size(), sizeof g_poppler_message - 1);
  std::memcpy(g_poppler_message, message.data(), n);
  g_poppler_message[n] = '\0';
}

void write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(3);  // the parent is gone or gave up: nothing left to report to
    data += n;
    size -= static_cast<size_t>(n);
  }
}

void write_record(int fd, char tag, std::string_view payload) {
  char header[5] = {tag};
  uint32_t length = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) header[1 + i] = static_cast<char>((length >> (8 * i)) & 0xFF);
  write_all(fd, header, sizeof header);
  write_all(fd, payload.data(), payload.size());
}

// Cuts at a UTF-8 character boundary at or below `limit` bytes.
std::string_view cut(std::string_view text, size_t limit) {
  if (text.size() <= limit) return text;
  size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

void write_error(int fd, Errc code, std::string_view message) {
  std::string payload(1, static_cast<char>(code));
  payload.append(cut(message, kMaxPdfMessageBytes - 1));
  write_record(fd, 'E', payload);
}

std::string utf8(const poppler::ustring& text) {
  poppler::byte_array bytes = text.to_utf8();
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

void extract_pdf_records(const std::string& path, int fd) {
  g_poppler_message[0] = '\0';
  poppler::set_debug_error_function(remember_poppler_message, nullptr);
  try {
    std::unique_ptr<poppler::document> doc(poppler::document::load_from_file(path));
    if (!doc) {
      std::string reason =
          g_poppler_message[0] == '\0' ? "" : " (poppler: " + std::string(g_poppler_message) + ")";
      write_error(fd, Errc::kCorrupt, "cannot be read as a PDF: damaged or not a PDF" + reason);
      return;
    }
    if (doc->is_locked()) {
      write_error(fd, Errc::kUnsupported, "encrypted PDF (password required)");
      return;
    }
    int pages = doc->pages();
    if (pages < 0 || static_cast<uint32_t>(pages) > kMaxPdfPages) {
      write_error(fd, Errc::kLimit,
                  "has " + std::to_string(pages) + " pages, more than the " + std::to_string(kMaxPdfPages) +
                      " supported");
      return;
    }
    std::string count(4, '\0');
    for (int i = 0; i < 4; ++i) count[i] = static_cast<char>((uint32_t(pages) >> (8 * i)) & 0xFF);
    write_record(fd, 'N', count);
    write_record(fd, 'T', cut(utf8(doc->info_key("Title")), kMaxPdfTitleBytes));
    for (int i = 0; i < pages; ++i) {
      std::unique_ptr<poppler::page> page(doc->create_page(i));
      std::string text = page ? utf8(page->text()) : std::string();
      write_record(fd, 'G', cut(text, kMaxPdfPageBytes));
    }
    write_record(fd, 'D', {});
  } catch (const std::bad_alloc&) {
    write_error(fd, Errc::kLimit, "PDF extraction ran out of memory (raise pdf_memory_limit_bytes)");
  } catch (const std::exception& e) {
    write_error(fd, Errc::kCorrupt, std::string("PDF extraction failed: ") + e.what());
  }
}

}  // namespace rag::ingest
