// Errors, in two channels that never mix (STYLE.md, rule 6):
//  - RAG_ASSERT: a programmer's mistake. Aborts with file, line and expression. Must never be reachable
//    from user input, document bytes or a model file.
//  - rag::Error: bad input or a failing environment. Thrown inside a stage, caught at the document boundary
//    (ingest records it and goes on) or at the request boundary (the CLI prints it, the server answers it).
//    The message says what failed, where (file, field, request) and, when it helps, what to do.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace rag {

enum class Errc {
  kInvalidArgument,  // the caller asked for something malformed (bad flag, bad JSON field)
  kNotFound,         // a file, document or model that should exist does not
  kIo,               // the operating system refused: open, read, write, fsync, rename
  kCorrupt,          // bytes that do not follow their format (truncated GGUF, broken PDF, bad manifest)
  kUnsupported,      // well-formed but not something we handle (encrypted PDF, unknown tensor type)
  kLimit,            // a configured bound was hit (file too large, time budget, token budget)
  kBusy,             // someone else holds what we need (the write lock)
  kMismatch,         // two things that must agree do not (embedder vs index manifest)
  kInternal,         // a dependency failed in a way we did not anticipate (Xapian, SQLite)
};

std::string_view errc_name(Errc code);

class Error : public std::runtime_error {
 public:
  Error(Errc code, std::string message) : std::runtime_error(std::move(message)), code_(code) {}
  Errc code() const { return code_; }

 private:
  Errc code_;
};

template <typename... Args>
[[noreturn]] void fail(Errc code, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

[[noreturn]] void assert_failed(const char* file, int line, const char* expression);

}  // namespace rag

#define RAG_ASSERT(expr) ((expr) ? (void)0 : ::rag::assert_failed(__FILE__, __LINE__, #expr))
