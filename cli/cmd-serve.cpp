// `rag serve`: the HTTP service over a data dir (routes, keys file and limits: README "Service").
// SIGTERM or SIGINT stops accepting connections and returns once the requests in flight are answered.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "common/log.h"
#include "retrieve/retrieve.h"
#include "server/server.h"

namespace rag::cli {
namespace {

const CommandSpec& spec() {
  static const CommandSpec s = {
      "serve",
      "",
      "Serves the indexes over HTTP: /v1/ask, /v1/search, /v1/chat/completions, /v1/embeddings, /v1/documents,\n"
      "/healthz, /readyz, /metrics. With --keys FILE every API request needs 'Authorization: Bearer KEY'\n"
      "(FILE: {\"keys\": [{\"key\": \"...\", \"user\": \"ann\", \"groups\": [\"eng\"], \"admin\": false}]}); without it\n"
      "the server listens on 127.0.0.1 only and answers every request as the local user.",
      {data_option(),
       {"host", "ADDR", "address to listen on (default 127.0.0.1; other addresses need --keys)"},
       {"port", "N", "port; 0 picks a free one (default 8080). The port is printed: 'listening on ADDR:PORT'"},
       {"keys", "FILE", "API keys file (JSON); without it no auth and loopback only"},
       {"embed-model", "FILE", "BERT-family embedder (GGUF) for /v1/embeddings"},
       {"rerank-model", "FILE", "cross-encoder reranker (GGUF)"},
       {"generate-model", "FILE", "Llama/Qwen2 generator (GGUF); without it answers are extractive"},
       {"default-group", "NAME", "group that may read documents without an ACL; the local user holds it (default $RAG_DEFAULT_GROUP, else everyone)"},
       {"user", "NAME", "the local user's name without --keys (default local)"},
       {"workers", "N", "requests served at once (default 2)"},
       {"queue", "N", "requests that may wait for a worker; more get 429 (default 16)"},
       {"timeout", "SECONDS", "per-request time limit, queue wait included; then 504 (default 60)"},
       {"max-body", "BYTES", "largest request body (default 1048576); uploads: --max-upload (default 16 MiB)"},
       {"max-upload", "BYTES", "largest /v1/documents body (default 16777216)"},
       {"max-question", "BYTES", "longest question (default 4096)"},
       {"max-tokens", "N", "most tokens a request may ask to generate (default 1024)"},
       {"sources", "N", "passages given to the generator per question, 1..20 (default 5)"},
       {"kv-mem", "MIB", fmt::format(kKvMemHelp, 256)},
       {"kv-type", "TYPE", kKvTypeHelp}}};
  return s;
}

}  // namespace

server::Config service_config(const ParsedArgs& args) {
  server::Config config;
  config.data_dir = data_dir(args);
  config.embed_model = args.get("embed-model");
  config.rerank_model = args.get("rerank-model");
  config.generate_model = args.get("generate-model");
  config.default_group = args.get("default-group", retrieve::default_group_from_env());
  config.sources = static_cast<int>(args.get_int("sources", 5, 1, 20));
  config.max_tokens = args.get_int("max-tokens", 1024, 1, 1 << 20);
  config.default_max_tokens = std::min<int64_t>(256, config.max_tokens);
  if (args.has("kv-mem")) config.kv_memory_bytes = args.get_int("kv-mem", 256, 1, 1 << 20) << 20;
  config.kv_cache = generate::parse_kv_cache_type(args.get("kv-type", "auto"));
  return config;
}

int cmd_serve(int argc, char** argv) {
  const ParsedArgs args = parse_args(spec(), argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec()).c_str());
    return kExitOk;
  }
  if (!args.positional.empty()) fail(Errc::kInvalidArgument, "rag serve takes no positional arguments (see --help)");
  server::Config config = service_config(args);
  config.workers = static_cast<int>(args.get_int("workers", 2, 1, 256));
  config.queue_depth = static_cast<int>(args.get_int("queue", 16, 0, 4096));
  config.request_timeout = std::chrono::milliseconds(static_cast<int64_t>(args.get_double("timeout", 60, 0.001, 86400) * 1000));
  config.max_body_bytes = static_cast<size_t>(args.get_int("max-body", 1 << 20, 1024, 1ll << 30));
  config.max_upload_bytes = static_cast<size_t>(args.get_int("max-upload", 16 << 20, 1024, 1ll << 32));
  config.max_question_bytes = static_cast<size_t>(args.get_int("max-question", 4096, 1, 1 << 20));

  server::HttpOptions http;
  http.host = args.get("host", "127.0.0.1");
  http.port = static_cast<int>(args.get_int("port", 8080, 0, 65535));
  if (args.has("keys")) {
    http.keys = server::load_keys(args.get("keys"));
  } else if (http.host != "127.0.0.1" && http.host != "localhost" && http.host != "::1") {
    fail(Errc::kInvalidArgument, "rag serve: --host {} without --keys would serve everyone as the local user; pass --keys FILE",
         http.host);
  }
  http.local_principal = {args.get("user", "local"), {config.default_group}, true};

  // A signal may land on any thread (OpenBLAS starts its own before main), so the handler only writes to a
  // pipe; a watcher thread reads it and asks the server to stop.
  static int wake[2] = {-1, -1};
  if (::pipe(wake) != 0) fail(Errc::kIo, "rag serve: pipe: {}", std::strerror(errno));
  struct sigaction action {};
  action.sa_handler = [](int sig) {
    const char c = static_cast<char>(sig);
    [[maybe_unused]] ssize_t n = ::write(wake[1], &c, 1);
  };
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // a client that hangs up is a failed write, not a dead server

  server::Service service(config);
  server::HttpServer server(service, http);
  const int port = server.bind();
  std::printf("listening on %s:%d\n", http.host.c_str(), port);
  std::fflush(stdout);
  spdlog::info("serve: listening on {}:{} ({}; {} workers, queue {}, timeout {} ms)", http.host, port,
               http.keys ? fmt::format("{} keys", http.keys->size()) : std::string("no auth, local user"), config.workers,
               config.queue_depth, config.request_timeout.count());

  std::thread watcher([&] {
    char sig = 0;
    while (::read(wake[0], &sig, 1) < 0 && errno == EINTR) {
    }
    if (sig != 0) spdlog::info("serve: signal {}: draining requests in flight", static_cast<int>(sig));
    server.stop();
  });
  server.run();
  // run() also returns if listening fails: wake the watcher so it can be joined.
  const char none = 0;
  [[maybe_unused]] ssize_t n = ::write(wake[1], &none, 1);
  watcher.join();
  spdlog::info("serve: stopped");
  return kExitOk;
}

}  // namespace rag::cli
