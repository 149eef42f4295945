#include "common/error.h"

#include <cstdio>
#include <cstdlib>

namespace rag {

std::string_view errc_name(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument: return "invalid_argument";
    case Errc::kNotFound: return "not_found";
    case Errc::kIo: return "io";
    case Errc::kCorrupt: return "corrupt";
    case Errc::kUnsupported: return "unsupported";
    case Errc::kLimit: return "limit";
    case Errc::kBusy: return "busy";
    case Errc::kMismatch: return "mismatch";
    case Errc::kInternal: return "internal";
  }
  return "unknown";
}

void assert_failed(const char* file, int line, const char* expression) {
  std::fprintf(stderr, "rag: assertion failed at %s:%d: %s\n", file, line, expression);
  std::abort();
}

}  // namespace rag
