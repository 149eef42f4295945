// Service: the ask pipeline, search, direct chat, embeddings and uploads over one data dir.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/error.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/text.h"
#include "index/index.h"
#include "nn/kernels.h"
#include "rerank/rerank.h"
#include "retrieve/retrieve.h"
#include "server/generator.h"
#include "server/retrieval.h"
#include "server/server.h"

namespace rag::server {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

bool valid_name_part(std::string_view s) {
  if (s.empty() || s.size() > 100) return false;
  for (unsigned char c : s)
    if (!(std::isalnum(c) || c == '.' || c == '-' || c == '_' || c == '@')) return false;
  return true;
}

bool valid_acl_entry(std::string_view p) {
  for (std::string_view prefix : {"user:", "group:"})
    if (p.substr(0, prefix.size()) == prefix) return valid_name_part(p.substr(prefix.size()));
  return false;
}

std::string snippet_of(std::string_view text, size_t bytes) {
  std::string s = collapse_whitespace(text.substr(0, bytes * 2));
  if (s.size() <= bytes) return s;
  size_t cut = bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut) + "…";
}

// The salt under which a prefix cache may reuse the private (document) part of a prompt: principals
// holding the same ACL strings over the same generation read the same documents.
std::string cache_salt(const std::vector<std::string>& principals, int64_t generation) {
  std::string joined = std::to_string(generation);
  for (const auto& p : principals) joined += "\n" + p;
  return hash_bytes(joined).hex();
}

// Request threads live as long as the server and run the reranker, the embedder and uploads' ingestion on
// OpenMP, so each call that may compute hands its thread's OpenMP pool back when it returns
// (nn::release_openmp_threads). Without it every HTTP worker kept an idle thread; the engine's decode rate
// in rag serve after reranked searches measured the same either way (82-86 tok/s, tiny reranker).
struct ReleaseOpenMpPool {
  ~ReleaseOpenMpPool() { nn::release_openmp_threads(); }
};

}  // namespace

bool RequestControl::expired() const {
  return Clock::now() >= deadline || (cancelled != nullptr && cancelled->load());
}

struct Service::Impl {
  Config config;
  std::shared_ptr<const index::Embedder> embedder;
  std::shared_ptr<const rerank::Reranker> reranker;
  std::unique_ptr<Retrieval> retrieval;
  std::unique_ptr<Generator> generator;
  std::mutex upload_mutex;  // uploads and deletes ingest one at a time (and take the data dir's write lock)

  explicit Impl(Config c) : config(std::move(c)) {}

  void check_deadline(const RequestControl& control, const char* stage) {
    if (control.cancelled != nullptr && control.cancelled->load())
      fail(Errc::kBusy, "request cancelled before {}", stage);
    if (Clock::now() >= control.deadline)
      fail(Errc::kBusy, "request timed out before {} ({} ms allowed)", stage, config.request_timeout.count());
  }
};

Service::Service(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {
  Config& c = impl_->config;
  if (c.data_dir.empty()) fail(Errc::kInvalidArgument, "service: no data dir");
  if (c.sources < 1 || c.sources > 20) fail(Errc::kInvalidArgument, "service: sources {} is outside 1..20", c.sources);
  if (!c.embed_model.empty()) impl_->embedder = index::open_embedder(c.embed_model);
  else if (fs::exists(index::catalog_path(c.data_dir))) impl_->embedder = retrieve::open_recorded_embedder(c.data_dir);
  if (!c.rerank_model.empty()) impl_->reranker = rerank::open_reranker(c.rerank_model);
  impl_->retrieval = std::make_unique<Retrieval>(c.data_dir, impl_->embedder, impl_->reranker, c.default_group);
  if (!c.generate_model.empty()) impl_->generator = std::make_unique<Generator>(c.generate_model, c.kv_memory_bytes, c.kv_cache);
  const Models m = models();
  spdlog::info("service: data {}, embedder {}, reranker {}, generator {}", c.data_dir, m.embedder, m.reranker, m.generator);
  if (!impl_->generator) spdlog::info("service: no generator model: answers are extractive (quoted sentences)");
}

Service::~Service() = default;

const Config& Service::config() const { return impl_->config; }

Models Service::models() const {
  Models m;
  if (impl_->embedder) m.embedder = impl_->embedder->identity();
  if (impl_->reranker) m.reranker = impl_->reranker->name();
  if (impl_->generator) m.generator = impl_->generator->name();
  return m;
}

std::string Service::embedder_name() const { return impl_->embedder ? impl_->embedder->identity() : "none"; }

Answer Service::ask(const AskRequest& request, const Principal& principal, const TextCallback& on_text,
                    const RequestControl& control) {
  const ReleaseOpenMpPool release;
  const Config& config = impl_->config;
  const auto start = Clock::now();
  const std::string question = collapse_whitespace(request.question);
  if (question.empty()) fail(Errc::kInvalidArgument, "ask: the question is empty");
  if (request.question.size() > config.max_question_bytes)
    fail(Errc::kInvalidArgument, "ask: the question is {} bytes; the limit is {}", request.question.size(),
         config.max_question_bytes);
  if (!utf8_valid(request.question)) fail(Errc::kInvalidArgument, "ask: the question is not valid UTF-8");
  const int k = request.sources == 0 ? config.sources : request.sources;
  if (k < 1 || k > 20) fail(Errc::kInvalidArgument, "ask: sources {} is outside 1..20", k);
  const int64_t max_tokens = request.max_tokens == 0 ? config.default_max_tokens : request.max_tokens;
  if (max_tokens < 1 || max_tokens > config.max_tokens)
    fail(Errc::kLimit, "ask: max_tokens {} is outside 1..{}", max_tokens, config.max_tokens);
  if (!(request.temperature >= 0.0f && request.temperature <= 2.0f))
    fail(Errc::kInvalidArgument, "ask: temperature {} is outside 0..2", request.temperature);
  impl_->check_deadline(control, "retrieval");

  Answer answer;
  answer.models = models();
  const std::vector<std::string> principals = impl_->retrieval->principal_strings(principal);
  Retrieved found = impl_->retrieval->retrieve(question, principal, k, true);
  answer.timings.retrieve_ms = found.retrieve_ms;
  answer.timings.rerank_ms = found.rerank_ms;
  answer.generation = found.generation;
  answer.models.embedder = found.models.embedder;
  answer.models.reranker = found.models.reranker;

  auto finish_unsupported = [&]() {
    answer.text = std::string(kNotSupported);
    answer.supported = false;
    answer.citations.clear();
    if (on_text) on_text(answer.text);
    answer.timings.first_token_ms = ms_since(start);
    answer.timings.total_ms = ms_since(start);
    return answer;
  };
  if (found.hits.empty()) return finish_unsupported();

  // Canonical order: by chunk id, so the same passages give the same prompt prefix whatever their scores.
  std::vector<size_t> order(found.hits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return found.hits[a].chunk_id < found.hits[b].chunk_id; });
  std::vector<Source> sources;
  for (size_t i = 0; i < order.size(); ++i) {
    Citation c = found.hits[order[i]];
    const std::string& text = found.texts[order[i]];
    c.n = static_cast<int>(i + 1);
    if (c.snippet.empty()) c.snippet = snippet_of(text, 240);
    std::string quoted = text.size() > config.source_bytes ? snippet_of(text, config.source_bytes) : text;
    sources.push_back({c.chunk_id, c.title, c.page, std::move(quoted)});
    answer.sources.push_back(std::move(c));
  }
  impl_->check_deadline(control, "generation");

  if (!impl_->generator) {
    std::string text = extractive_answer(sources, question);
    if (text.empty()) return finish_unsupported();
    CitationFilter filter(static_cast<int>(sources.size()));
    answer.text = filter.feed(text) + filter.finish();
    for (int n : filter.cited()) answer.citations.push_back(answer.sources[static_cast<size_t>(n - 1)]);
    std::sort(answer.citations.begin(), answer.citations.end(), [](const Citation& a, const Citation& b) { return a.n < b.n; });
    answer.timings.first_token_ms = ms_since(start);
    if (on_text && !on_text(answer.text)) answer.finish_reason = "cancelled";
    answer.timings.total_ms = ms_since(start);
    return answer;
  }

  Generator& generator = *impl_->generator;
  GenerateCall call;
  call.options.max_tokens = max_tokens;
  call.options.sampling.temperature = request.temperature;
  call.options.sampling.seed = request.seed;
  call.options.stop_strings = {"<source"};
  call.cache_salt = cache_salt(principals, answer.generation);
  call.public_messages = 1;
  // Drop the weakest sources until prompt and answer fit the model's context.
  for (;;) {
    call.messages = {{"system", kSystemPrompt}, {"user", build_question(sources, question)}};
    const int64_t prompt_tokens = static_cast<int64_t>(generator.tokens(call.messages).size());
    if (prompt_tokens + max_tokens <= generator.context_length()) break;
    if (sources.size() <= 1)
      fail(Errc::kLimit, "ask: the prompt ({} tokens with one source) and max_tokens {} exceed the generator's context of {} tokens",
           prompt_tokens, max_tokens, generator.context_length());
    size_t weakest = 0;
    for (size_t i = 1; i < sources.size(); ++i)
      if (answer.sources[i].score < answer.sources[weakest].score) weakest = i;
    sources.erase(sources.begin() + static_cast<std::ptrdiff_t>(weakest));
    answer.sources.erase(answer.sources.begin() + static_cast<std::ptrdiff_t>(weakest));
    for (size_t i = 0; i < answer.sources.size(); ++i) answer.sources[i].n = static_cast<int>(i + 1);
  }

  CitationFilter filter(static_cast<int>(sources.size()));
  Clock::time_point first_token;
  bool have_first = false, caller_gone = false;
  GenerateOutcome outcome = generator.run(call, [&](std::string_view piece) {
    if (!have_first) {
      have_first = true;
      first_token = Clock::now();
      answer.timings.first_token_ms = ms_since(start);
    }
    std::string out = filter.feed(piece);
    answer.text += out;
    if (!out.empty() && on_text && !on_text(out)) {
      caller_gone = true;
      return false;
    }
    return true;
  }, control);
  std::string rest = filter.finish();
  answer.text += rest;
  if (!rest.empty() && on_text && !caller_gone && !outcome.cancelled && !outcome.timed_out) on_text(rest);
  answer.prompt_tokens = outcome.prompt_tokens;
  answer.completion_tokens = static_cast<int64_t>(outcome.generation.tokens.size());
  answer.prefix_cache_hit = outcome.cached_tokens > 0;
  answer.cached_tokens = outcome.cached_tokens;
  answer.finish_reason = generate::finish_reason(outcome.generation.stop);
  answer.timings.prefill_ms = outcome.prefill_ms;
  if (have_first) answer.timings.generate_ms = std::chrono::duration<double, std::milli>(Clock::now() - first_token).count();
  if (outcome.timed_out)
    fail(Errc::kBusy, "request timed out during generation ({} ms allowed)", config.request_timeout.count());
  for (int n : filter.cited()) answer.citations.push_back(answer.sources[static_cast<size_t>(n - 1)]);
  std::sort(answer.citations.begin(), answer.citations.end(), [](const Citation& a, const Citation& b) { return a.n < b.n; });
  answer.timings.total_ms = ms_since(start);
  return answer;
}

SearchResult Service::search(const std::string& query, int k, const Principal& principal) {
  const ReleaseOpenMpPool release;
  const Config& config = impl_->config;
  if (collapse_whitespace(query).empty()) fail(Errc::kInvalidArgument, "search: the query is empty");
  if (query.size() > config.max_question_bytes)
    fail(Errc::kInvalidArgument, "search: the query is {} bytes; the limit is {}", query.size(), config.max_question_bytes);
  if (k < 1 || k > 100) fail(Errc::kInvalidArgument, "search: k {} is outside 1..100", k);
  const auto start = Clock::now();
  Retrieved found = impl_->retrieval->retrieve(query, principal, k, false);
  SearchResult out;
  out.hits = std::move(found.hits);
  out.timings.retrieve_ms = found.retrieve_ms;
  out.timings.rerank_ms = found.rerank_ms;
  out.models = models();
  out.models.embedder = found.models.embedder;
  out.models.reranker = found.models.reranker;
  out.generation = found.generation;
  out.timings.total_ms = ms_since(start);
  return out;
}

ChatResult Service::chat(const ChatRequest& request, const TextCallback& on_text, const RequestControl& control) {
  const Config& config = impl_->config;
  if (!impl_->generator)
    fail(Errc::kUnsupported, "chat: no generator model is loaded (start the server with --generate-model), or ask model \"rag\"");
  if (request.messages.empty()) fail(Errc::kInvalidArgument, "chat: messages is empty");
  size_t bytes = 0;
  for (const auto& m : request.messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant")
      fail(Errc::kInvalidArgument, "chat: message role '{}' is not system, user or assistant", m.role);
    if (!utf8_valid(m.content)) fail(Errc::kInvalidArgument, "chat: a message is not valid UTF-8");
    bytes += m.content.size();
  }
  if (bytes > config.max_body_bytes) fail(Errc::kInvalidArgument, "chat: messages hold {} bytes; the limit is {}", bytes, config.max_body_bytes);
  const int64_t max_tokens = request.max_tokens == 0 ? config.default_max_tokens : request.max_tokens;
  if (max_tokens < 1 || max_tokens > config.max_tokens)
    fail(Errc::kLimit, "chat: max_tokens {} is outside 1..{}", max_tokens, config.max_tokens);
  const auto start = Clock::now();
  impl_->check_deadline(control, "generation");
  GenerateCall call;
  for (const auto& m : request.messages) call.messages.push_back({m.role, m.content});
  call.options.max_tokens = max_tokens;
  call.options.sampling.temperature = request.temperature;
  call.options.sampling.top_p = request.top_p;
  call.options.sampling.seed = request.seed;
  for (const auto& s : request.stop)
    if (!s.empty()) call.options.stop_strings.push_back(s);
  // Direct chat reads no documents: one salt for all, the system message (if first) public.
  call.public_messages = !call.messages.empty() && call.messages.front().role == "system" ? 1 : 0;
  Generator& generator = *impl_->generator;
  const int64_t prompt_tokens = static_cast<int64_t>(generator.tokens(call.messages).size());
  if (prompt_tokens + max_tokens > generator.context_length())
    fail(Errc::kLimit, "chat: the messages ({} tokens) and max_tokens {} exceed the generator's context of {} tokens",
         prompt_tokens, max_tokens, generator.context_length());
  ChatResult out;
  bool have_first = false;
  GenerateOutcome outcome = generator.run(call, [&](std::string_view piece) {
    if (!have_first) {
      have_first = true;
      out.timings.first_token_ms = ms_since(start);
    }
    return on_text ? on_text(piece) : true;
  }, control);
  if (outcome.timed_out) fail(Errc::kBusy, "request timed out during generation ({} ms allowed)", config.request_timeout.count());
  out.text = outcome.generation.text;
  out.finish_reason = generate::finish_reason(outcome.generation.stop);
  out.prompt_tokens = outcome.prompt_tokens;
  out.completion_tokens = static_cast<int64_t>(outcome.generation.tokens.size());
  out.timings.prefill_ms = outcome.prefill_ms;
  out.timings.total_ms = ms_since(start);
  return out;
}

std::vector<std::vector<float>> Service::embed(const std::vector<std::string>& texts) {
  const ReleaseOpenMpPool release;
  if (!impl_->embedder) fail(Errc::kUnsupported, "embeddings: no embedder model is loaded (start the server with --embed-model)");
  if (texts.empty()) fail(Errc::kInvalidArgument, "embeddings: input is empty");
  if (texts.size() > 256) fail(Errc::kInvalidArgument, "embeddings: {} inputs; at most 256 per request", texts.size());
  for (const auto& t : texts)
    if (!utf8_valid(t)) fail(Errc::kInvalidArgument, "embeddings: an input is not valid UTF-8");
  std::vector<float> flat = impl_->embedder->embed(texts);  // thread-safe (index::Embedder)
  const size_t dim = static_cast<size_t>(impl_->embedder->dim());
  std::vector<std::vector<float>> out(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) out[i].assign(flat.begin() + i * dim, flat.begin() + (i + 1) * dim);
  return out;
}

// ---- documents ---------------------------------------------------------------------------------------

namespace {

DocumentInfo info_of(const index::DocumentRecord& d) {
  DocumentInfo info;
  info.id = d.id;
  info.path = d.path;
  info.title = d.title;
  info.type = d.type;
  info.status = d.status;
  info.error = d.error;
  info.chunks = d.chunk_count;
  info.acl = d.acl;
  return info;
}

std::string uploads_dir(const std::string& data_dir) { return (fs::absolute(data_dir) / "uploads").lexically_normal().string(); }

}  // namespace

DocumentInfo Service::upload(const DocumentUpload& upload) {
  const ReleaseOpenMpPool release;
  const Config& config = impl_->config;
  if (!valid_name_part(upload.name) || upload.name.front() == '.')
    fail(Errc::kInvalidArgument, "upload: name '{}' must be 1-100 letters, digits, '.', '-', '_' and not start with '.'",
         upload.name.substr(0, 100));
  if (upload.content.size() > config.max_upload_bytes)
    fail(Errc::kLimit, "upload: {} bytes; the limit is {}", upload.content.size(), config.max_upload_bytes);
  std::vector<std::string> acl = upload.acl;
  for (const auto& p : acl)
    if (!valid_acl_entry(p)) fail(Errc::kInvalidArgument, "upload: ACL entry '{}' is not user:NAME or group:NAME", p.substr(0, 100));
  if (acl.empty()) acl.push_back("group:" + config.default_group);

  std::lock_guard<std::mutex> lock(impl_->upload_mutex);
  std::random_device rd;
  const std::string id = fmt::format("{:016x}", (static_cast<uint64_t>(rd()) << 32) ^ rd());
  const fs::path dir = fs::path(uploads_dir(config.data_dir)) / id;
  fs::create_directories(dir);
  {
    // Each upload is its own folder whose .ragacl carries the upload's ACL (the ingest job reads it).
    std::ofstream acl_file(dir / ".ragacl", std::ios::binary);
    for (const auto& p : acl) acl_file << p << "\n";
    std::ofstream file(dir / upload.name, std::ios::binary);
    file.write(upload.content.data(), static_cast<std::streamsize>(upload.content.size()));
    if (!acl_file || !file) fail(Errc::kIo, "upload: cannot write {}", dir.string());
  }
  index::IngestOptions options;
  options.roots = {dir.string()};
  options.wait_for_lock = true;
  options.threads = 1;
  index::IngestSummary summary = index::ingest(config.data_dir, options);
  index::Catalog catalog(index::catalog_path(config.data_dir), index::Catalog::Mode::kRead);
  std::optional<index::DocumentRecord> doc = catalog.document_by_path((dir / upload.name).string());
  if (!doc) fail(Errc::kInternal, "upload: {} was ingested but is not in the catalog", upload.name);
  if (summary.failed > 0) spdlog::warn("upload: document {} failed to parse: {}", doc->id, doc->error);
  return info_of(*doc);
}

std::vector<DocumentInfo> Service::documents() {
  std::vector<DocumentInfo> out;
  if (index::current_generation(impl_->config.data_dir) == 0 && !fs::exists(index::catalog_path(impl_->config.data_dir)))
    return out;
  index::Catalog catalog(index::catalog_path(impl_->config.data_dir), index::Catalog::Mode::kRead);
  for (const auto& d : catalog.documents_under("/")) out.push_back(info_of(d));
  return out;
}

bool Service::remove_document(int64_t doc_id) {
  const Config& config = impl_->config;
  std::lock_guard<std::mutex> lock(impl_->upload_mutex);
  std::optional<index::DocumentRecord> doc;
  {
    index::Catalog catalog(index::catalog_path(config.data_dir), index::Catalog::Mode::kRead);
    doc = catalog.document(doc_id);
  }
  if (!doc || doc->removed_change != 0) return false;  // a removed row waits for purging: already gone
  const fs::path path(doc->path);
  const std::string uploads = uploads_dir(config.data_dir);
  if (path.parent_path().parent_path().string() != uploads)
    fail(Errc::kUnsupported, "document {} was ingested from a folder, not uploaded: delete the file and run rag ingest again", doc_id);
  std::error_code ec;
  fs::remove(path, ec);
  index::IngestOptions options;
  options.roots = {path.parent_path().string()};
  options.wait_for_lock = true;
  options.prune = true;
  options.threads = 1;
  index::ingest(config.data_dir, options);
  fs::remove_all(path.parent_path(), ec);
  return true;
}

ServiceStats Service::stats() {
  ServiceStats s;
  try {
    s.generation = index::current_generation(impl_->config.data_dir);
  } catch (const Error&) {
    s.generation = 0;
  }
  s.ready = s.generation > 0;
  if (impl_->generator) {
    const generate::EngineStats e = impl_->generator->stats();
    s.tokens_generated = e.tokens_generated;
    s.prefix_hit_tokens = e.prefix_hit_tokens;
    s.prefix_miss_tokens = e.prefix_miss_tokens;
    s.kv_bytes = e.blocks_total * e.block_bytes;
    s.kv_blocks_used = e.blocks_total - e.blocks_free - e.blocks_cached;
    s.kv_blocks_cached = e.blocks_cached;
    s.kv_blocks_free = e.blocks_free;
  }
  return s;
}

}  // namespace rag::server
