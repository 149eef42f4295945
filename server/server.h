// The service: the ask pipeline (retrieve the passages a principal may read, build the prompt, generate or
// extract an answer, check its citations) and the HTTP front end over it. The CLI (`rag ask`, `rag serve`)
// and the HTTP routes call the same Service, so an answer is the same whichever way it is asked.
//
//   ask(question, principal) ──▶ retrieve (permission-filtered) ──▶ sources in canonical order [1]..[n]
//        ──▶ prompt: system prompt, sources, question ──▶ generator (or extractive answer without one)
//        ──▶ CitationFilter: only markers naming a given source survive ──▶ Answer with Citations
//
// Permissions: every retrieval runs with the principal's strings ("user:ann", "group:eng") as a filter,
// never without one; a source the principal may not read never reaches the prompt, a citation or a log line.
// Logs carry the route, status, principal user and timings, never question text, document text or keys.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "generate/generate.h"

namespace rag::server {

// Who asks. Users and groups are bare names ("ann", "eng"); principal_strings() gives the ACL form.
struct Principal {
  std::string user;
  std::vector<std::string> groups;
  bool admin = false;  // may use the document routes (upload, list, delete)
};

struct Config {
  std::string data_dir;
  // GGUF BERT-family embedder for vector retrieval and /v1/embeddings; empty: the one the data dir records
  // (rag ingest --embed-model), else none (BM25 only).
  std::string embed_model;
  std::string rerank_model;    // GGUF cross-encoder reranker; empty: fused order
  std::string generate_model;  // GGUF Llama/Qwen2 decoder; empty: extractive answers
  // Documents without an ACL are readable by holders of this group; the local principal (no keys file) holds it.
  std::string default_group = "everyone";
  // Limits (HTTP answers each with a JSON error; see README "Service").
  size_t max_body_bytes = 1 << 20;         // request bodies; larger is 413
  size_t max_upload_bytes = 16 << 20;      // /v1/documents bodies
  size_t max_question_bytes = 4096;        // question or last chat message; longer is 400
  int64_t max_tokens = 1024;               // the most tokens a request may ask for; more is 400
  int64_t default_max_tokens = 256;        // when the request does not say
  int workers = 2;                         // requests retrieving or generating at once
  int queue_depth = 16;                    // requests waiting for a worker; beyond it 429
  std::chrono::milliseconds request_timeout{60000};  // queue wait + work; beyond it 504 (generation cancelled)
  int sources = 5;                         // passages given to the generator, 1..20
  size_t source_bytes = 1500;              // text of each passage in the prompt, at most
  int64_t kv_memory_bytes = int64_t{256} << 20;  // the generator engine's KV pool
  generate::KvCacheType kv_cache = generate::KvCacheType::kAuto;  // what that pool holds (--kv-type)
};

struct AskRequest {
  std::string question;
  int sources = 0;              // passages to use; 0 = Config::sources
  int64_t max_tokens = 0;       // 0 = Config::default_max_tokens
  float temperature = 0.0f;     // 0: greedy
  uint64_t seed = 0;
};

// A passage given to the generator as source [n].
struct Citation {
  int n = 0;                    // the marker number, 1-based, as the answer writes it: [n]
  int64_t doc_id = 0;
  int64_t chunk_id = 0;
  std::string path;
  std::string title;
  int page = 0;                 // 1-based PDF page; 0 where the format has none
  std::string heading;
  std::string snippet;          // plain text, at most ~240 bytes
  double score = 0;             // what the order is by: rerank score when reranked, else the fused score
  std::optional<double> bm25_score;    // set when the keyword side found it
  std::optional<double> vector_score;  // set when the vector side found it (cosine)
  std::optional<double> rerank_score;  // set when the reranker scored it
};

// Milliseconds spent in each stage of one request; 0 for a stage that did not run.
struct Timings {
  double queue_ms = 0;
  double retrieve_ms = 0;
  double rerank_ms = 0;
  double prefill_ms = 0;        // prompt processing (up to the first token's logits)
  double first_token_ms = 0;    // from the start of the request to the first answer text
  double generate_ms = 0;       // from the first token to the last
  double total_ms = 0;
};

struct Models {
  std::string embedder = "none";
  std::string reranker = "none";
  std::string generator = "none";
};

struct Answer {
  std::string text;                 // with [n] markers; markers naming no given source removed
  std::vector<Citation> citations;  // the sources the text cites, by n
  std::vector<Citation> sources;    // every source given, by n (the candidates the answer could cite)
  bool supported = true;            // false: the fixed "do not answer this" text, nothing generated
  std::string finish_reason = "stop";  // generate::finish_reason(), or "stop" for extractive answers
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  bool prefix_cache_hit = false;    // some prompt tokens came from the generator's prefix cache
  int64_t cached_tokens = 0;        // how many
  Timings timings;
  Models models;
  int64_t generation = 0;           // the index generation the sources came from
};

// The answer when nothing the principal may read matches.
inline constexpr std::string_view kNotSupported = "The indexed documents I can read do not answer this.";

// Streaming: called with each piece of answer text as it is released (citation-checked). Return false
// to cancel (the client went away): generation stops and ask() returns what it has, finish "cancelled".
using TextCallback = std::function<bool(std::string_view text)>;

struct SearchResult {
  std::vector<Citation> hits;   // best first; n = rank
  Timings timings;
  Models models;
  int64_t generation = 0;
};

struct ChatMessage {
  std::string role;             // "system", "user", "assistant"
  std::string content;
};

struct ChatRequest {
  std::vector<ChatMessage> messages;
  int64_t max_tokens = 0;       // 0 = Config::default_max_tokens
  float temperature = 0.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
  std::vector<std::string> stop;
};

struct ChatResult {
  std::string text;
  std::string finish_reason;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  Timings timings;
};

struct DocumentUpload {
  std::string name;                  // file name: letters, digits, '.', '-', '_'; its extension picks the parser
  std::string content;               // the file's bytes
  std::vector<std::string> acl;      // principals allowed to read it; empty: the default group's
};

struct DocumentInfo {
  int64_t id = 0;
  std::string path, title, type, status, error;
  int chunks = 0;
  std::vector<std::string> acl;
};

// What /metrics and /readyz need from the service.
struct ServiceStats {
  int64_t generation = 0;            // live index generation (0: none)
  int64_t prefix_hit_tokens = 0;     // prompt tokens served by the generator's prefix cache
  int64_t prefix_miss_tokens = 0;    // prompt tokens that had to be computed
  int64_t tokens_generated = 0;
  // The generator's KV pool (all 0 without a generator): its bytes and its blocks by state.
  int64_t kv_bytes = 0;
  int64_t kv_blocks_used = 0;        // held by requests (shared ones counted once)
  int64_t kv_blocks_cached = 0;      // held only by the prefix cache: reusable, evicted when needed
  int64_t kv_blocks_free = 0;
  bool ready = false;                // index present and models loaded
};

// Deadlines and cancellation for one request: the HTTP layer sets them; the pipeline checks between stages
// and between generated tokens.
struct RequestControl {
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  const std::atomic<bool>* cancelled = nullptr;
  bool expired() const;             // deadline passed or cancelled
};

class Service {
 public:
  // Loads the models named in `config` (Error naming the file when one cannot be loaded). The data dir may
  // have no index yet: requests then fail with kNotFound ("run rag ingest") and /readyz says not ready.
  explicit Service(Config config);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  const Config& config() const;
  Models models() const;

  // Throws Error: kInvalidArgument (empty or too long question, out-of-range option), kLimit (tokens asked
  // beyond Config::max_tokens), kNotFound (no index), kBusy (timed out: see RequestControl).
  Answer ask(const AskRequest& request, const Principal& principal, const TextCallback& on_text = {},
             const RequestControl& control = {});
  SearchResult search(const std::string& query, int k, const Principal& principal);
  // Chat straight to the generator (no retrieval). kUnsupported without a generator model.
  ChatResult chat(const ChatRequest& request, const TextCallback& on_text = {}, const RequestControl& control = {});
  // Embeddings from the embedder: n × dim, row-major. kUnsupported without an embedder model.
  std::vector<std::vector<float>> embed(const std::vector<std::string>& texts);
  std::string embedder_name() const;

  // Documents (admin): an upload is written under <data>/uploads/<id>/ with its ACL and ingested.
  DocumentInfo upload(const DocumentUpload& upload);
  std::vector<DocumentInfo> documents();
  bool remove_document(int64_t doc_id);  // false when no such uploaded document

  ServiceStats stats();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- the pieces of the ask pipeline (public for tests) ----------------------------------------------

// A source as the prompt shows it.
struct Source {
  int64_t chunk_id = 0;
  std::string title;
  int page = 0;
  std::string text;
};

extern const char* const kSystemPrompt;

// The user turn of an ask prompt (kSystemPrompt is the system turn): the sources numbered [1]..[n] in the order
// given (callers sort them by chunk id so the same sources give the same prompt prefix), each inside <source>
// delimiters that the text cannot close, then the question.
std::string build_question(const std::vector<Source>& sources, std::string_view question);

// Streaming citation check: text goes in as generated; out comes the same text with every marker [n] that
// names no source (n outside 1..source_count) removed. A partial marker ("[1", "[12") is held back until it
// completes or cannot be one.
class CitationFilter {
 public:
  explicit CitationFilter(int source_count) : source_count_(source_count) {}
  std::string feed(std::string_view text);   // text safe to release now
  std::string finish();                      // whatever is still held back, at the end
  const std::vector<int>& cited() const { return cited_; }  // markers kept, in first-use order

 private:
  int source_count_;
  std::string pending_;
  std::vector<int> cited_;
};

// The extractive answer without a generator: the sentences of the passages that best match the question,
// quoted, each followed by its [n] (passage i is [i + 1]). Empty when no sentence shares a word with it.
std::string extractive_answer(const std::vector<Source>& sources, std::string_view question, int max_sentences = 3);

// ---- HTTP -------------------------------------------------------------------------------------------

// The keys file: {"keys": [{"key": "...", "user": "ann", "groups": ["eng"], "admin": false}]}.
struct ApiKey {
  std::string key;
  Principal principal;
};
std::vector<ApiKey> load_keys(const std::string& path);  // kInvalidArgument/kNotFound naming the file and entry

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                  // 0: any free port (see HttpServer::port())
  std::optional<std::vector<ApiKey>> keys;  // unset: no auth, every request is local_principal
  Principal local_principal;        // used without keys
  // A request's headers and body must arrive within this, from its first byte; a slower client is cut
  // (each read also times out after 10 s of silence).
  std::chrono::milliseconds request_read_timeout{30000};
};

class HttpServer {
 public:
  HttpServer(Service& service, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int bind();        // binds host:port; returns the port (kIo when it cannot bind)
  void run();        // serves until stop(); returns after requests in flight are answered
  void stop();       // safe from any thread (a signal-watching thread, a test)
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rag::server
