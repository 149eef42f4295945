// Private to ingest/: PDF text extraction in a child process, and the records the child sends back.
// The child is forked by the thread's PDF worker process, never by the multi-threaded parent (why, and the
// worker protocol: parse-pdf.cpp).
//
// The child writes a stream of records to a pipe; the parent trusts none of it until validated:
//
//   record  = tag:u8  length:u32 little-endian  payload[length]
//   'N'     page count: payload is a u32 (at most kMaxPdfPages)
//   'T'     title from the document information dictionary, UTF-8 (at most kMaxPdfTitleBytes)
//   'G'     text of the next page, UTF-8 (at most kMaxPdfPageBytes); exactly one per page, in order
//   'E'     failure: payload is errc:u8 then a message (at most kMaxPdfMessageBytes); ends the stream
//   'D'     done: empty payload; ends the stream
//
// A stream that ends without 'E' or 'D', a record over its cap, an unknown tag, or more than
// kMaxPdfTotalBytes in all is a failed extraction (kCorrupt), whatever the child's exit status.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace rag::ingest {

constexpr uint32_t kMaxPdfPages = 100'000;
constexpr size_t kMaxPdfTitleBytes = 4096;
constexpr size_t kMaxPdfPageBytes = 8u << 20;
constexpr size_t kMaxPdfMessageBytes = 1024;
constexpr size_t kMaxPdfTotalBytes = 256u << 20;

// Runs in the extraction child (and in-process in the fuzz target): extracts `path` with poppler and writes
// the records to `fd`. Catches everything it can; never returns an error to the caller, never writes to
// stdout or stderr. Uses no static object that needs dynamic initialization: the child runs before main().
void extract_pdf_records(const std::string& path, int fd);

}  // namespace rag::ingest
