// The HTTP service in process for tests: a Service over a data dir and an HttpServer on a free loopback
// port, serving on its own thread until destroyed. Header-only, so rag_test_support does not depend on the
// server library: the suite that includes it links rag_server (and cpp-httplib through it).
#pragma once

#include <memory>
#include <thread>
#include <utility>

#include "server/server.h"

namespace rag::test {

class InProcessServer {
 public:
  InProcessServer(server::Config config, server::HttpOptions options)
      : service_(std::make_unique<server::Service>(std::move(config))) {
    start(std::move(options));
  }
  ~InProcessServer() { stop(); }
  InProcessServer(const InProcessServer&) = delete;
  InProcessServer& operator=(const InProcessServer&) = delete;

  int port() const { return port_; }
  server::Service& service() { return *service_; }

  // Replaces the HTTP front end (for new keys or principals) over the same Service, whose models, caches and
  // index readers stay as they were: what a key change must not be able to leak through. The port changes.
  void restart_http(server::HttpOptions options) {
    stop();
    start(std::move(options));
  }

 private:
  void start(server::HttpOptions options) {
    options.port = 0;
    http_ = std::make_unique<server::HttpServer>(*service_, std::move(options));
    port_ = http_->bind();
    thread_ = std::thread([this] { http_->run(); });
  }
  void stop() {
    if (!http_) return;
    http_->stop();
    thread_.join();
    http_.reset();
  }

  std::unique_ptr<server::Service> service_;
  std::unique_ptr<server::HttpServer> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace rag::test
