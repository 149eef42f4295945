// Logging goes through spdlog: one line per event, to stderr, never document text or secrets.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace rag {

// Sets the process-wide logger: "info" by default, RAG_LOG_LEVEL (trace, debug, info, warn, error, off)
// overrides. Call once from main; tests may skip it and get spdlog's default logger.
void init_logging();

// Leaves warnings and errors on stderr only (`--quiet`: a cron job prints nothing when all is well).
void quiet_stderr_log();

// Also appends every log line to `path` (`--log FILE`), whatever quiet_stderr_log() did. kIo if it cannot.
void add_log_file(const std::string& path);

}  // namespace rag
