// PDF extraction: the work of the extraction child (extract_pdf_records, poppler), run in-process so the
// sanitizers see it, followed by a check that the record stream it wrote is one the parent accepts
// (ingest/pdf-extract.h). In production a poppler crash or hang only fails the child; here it is a finding
// to look at (and, when it is poppler's, to leave to the child's limits).
#include <unistd.h>

#include <vector>

#include "ingest/pdf-extract.h"
#include "tests/fuzz/fuzz.h"

using namespace rag;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile input("fuzz-pdf");
  static fuzz::MemFile records("fuzz-pdf-records");
  const std::string& path = input.write(data, size);
  records.write(nullptr, 0);
  lseek(records.fd(), 0, SEEK_SET);
  ingest::extract_pdf_records(path, records.fd());

  const off_t length = lseek(records.fd(), 0, SEEK_END);
  std::vector<uint8_t> out(static_cast<size_t>(length));
  if (length > 0 && pread(records.fd(), out.data(), out.size(), 0) != length) fuzz::finding("cannot read records back");
  size_t pos = 0, pages = 0, page_records = 0;
  bool ended = false;
  while (pos < out.size()) {
    if (ended) fuzz::finding("record after 'E' or 'D'");
    if (out.size() - pos < 5) fuzz::finding("truncated record header");
    const char tag = static_cast<char>(out[pos]);
    const uint32_t n = out[pos + 1] | out[pos + 2] << 8 | out[pos + 3] << 16 | uint32_t(out[pos + 4]) << 24;
    pos += 5;
    if (out.size() - pos < n) fuzz::finding("record longer than the stream");
    switch (tag) {
      case 'N':
        if (n != 4) fuzz::finding("'N' payload is not a u32");
        pages = out[pos] | out[pos + 1] << 8 | out[pos + 2] << 16 | size_t(out[pos + 3]) << 24;
        if (pages > ingest::kMaxPdfPages) fuzz::finding("page count over kMaxPdfPages");
        break;
      case 'T': if (n > ingest::kMaxPdfTitleBytes) fuzz::finding("title over its cap"); break;
      case 'G': if (n > ingest::kMaxPdfPageBytes) fuzz::finding("page text over its cap"); ++page_records; break;
      case 'E': if (n < 1 || n > ingest::kMaxPdfMessageBytes) fuzz::finding("error message size"); ended = true; break;
      case 'D':
        if (n != 0) fuzz::finding("'D' with a payload");
        if (page_records != pages) fuzz::finding("'D' after a page count other than announced");
        ended = true;
        break;
      default: fuzz::finding("unknown record tag");
    }
    pos += n;
  }
  if (!ended) fuzz::finding("stream ends without 'E' or 'D'");
  return 0;
}
