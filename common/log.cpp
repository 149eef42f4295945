#include "common/log.h"

#include <cstdlib>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include "common/error.h"

namespace rag {

namespace {
constexpr const char* kPattern = "%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v";
}

void init_logging() {
  auto logger = spdlog::stderr_color_mt("rag");
  logger->set_pattern(kPattern);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::info);
  if (const char* level = std::getenv("RAG_LOG_LEVEL")) spdlog::set_level(spdlog::level::from_str(level));
}

void quiet_stderr_log() {
  for (auto& sink : spdlog::default_logger()->sinks()) sink->set_level(spdlog::level::warn);
}

void add_log_file(const std::string& path) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  try {
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
  } catch (const spdlog::spdlog_ex& e) {
    fail(Errc::kIo, "{}: cannot open the log file: {}", path, e.what());
  }
  sink->set_pattern(kPattern);
  spdlog::default_logger()->sinks().push_back(std::move(sink));
}

}  // namespace rag
