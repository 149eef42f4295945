#include "common/log.h"

#include <cstdlib>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace rag {

void init_logging() {
  auto logger = spdlog::stderr_color_mt("rag");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::info);
  if (const char* level = std::getenv("RAG_LOG_LEVEL")) spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace rag
