// Logging goes through spdlog: one line per event, to stderr, never document text or secrets.
#pragma once

#include <spdlog/spdlog.h>

namespace rag {

// Sets the process-wide logger: "info" by default, RAG_LOG_LEVEL (trace, debug, info, warn, error, off)
// overrides. Call once from main; tests may skip it and get spdlog's default logger.
void init_logging();

}  // namespace rag
