// Private to index/: file helpers shared by the vector index, its manifest and the ingest job.
#pragma once

#include <string>

namespace rag::index {

// Writes `bytes` to path + ".tmp", fsyncs it, renames it over `path` and fsyncs the folder, so after a crash
// `path` holds either its old or its new content.
void write_file_durably(const std::string& path, const std::string& bytes);

// The last steps of the same for a temp file already written: fsync `tmp`, rename it over `path`, fsync the
// folder.
void commit_temp_file(const std::string& tmp, const std::string& path);

// fsync of a file or (directory = true) a folder; kIo naming the path on failure.
void fsync_path(const std::string& path, bool directory);

}  // namespace rag::index
