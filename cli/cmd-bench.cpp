// `rag bench SUBCOMMAND`: whole-job benchmarks. Each subcommand prints its figures (or one JSON object with
// --json); microbenchmarks live in bench/.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "common/log.h"
#include "generate/engine.h"
#include "generate/generate.h"
#include "index/index.h"
#include "nn/kernels.h"

namespace rag::cli {
namespace {

struct BenchCommand {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

int bench_ingest(int argc, char** argv);
int bench_gen(int argc, char** argv);

// Add a subcommand here (and declare it in commands.h when it lives in another file).
const std::vector<BenchCommand>& bench_commands() {
  static const std::vector<BenchCommand> commands = {
      {"gen", bench_gen, "generator speed: prefill and decode tokens/s, time to first token, concurrent streams"},
      {"ingest", bench_ingest, "ingest a folder into a fresh temporary data dir and report files/s, MB/s"},
  };
  return commands;
}

void print_help() {
  std::printf("usage: rag bench SUBCOMMAND [options]   (rag bench SUBCOMMAND --help for details)\n\nsubcommands:\n");
  for (const auto& c : bench_commands()) std::printf("  %-16s %s\n", c.name, c.summary);
}

// A data dir under $TMPDIR removed on destruction, so a benchmark never touches the user's index.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/rag-bench-XXXXXX";
    if (!::mkdtemp(pattern.data())) fail(Errc::kIo, "{}: cannot create a scratch folder", pattern);
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

int bench_ingest(int argc, char** argv) {
  CommandSpec spec{"bench ingest",
                   "DIR...",
                   "Ingests DIR into a fresh temporary data dir (deleted afterwards) and prints throughput:\n"
                   "files/s, pages/s, MB/s and chunks/s, with totals and seconds.",
                   {{"threads", "N", "parser threads (default: one per core)"},
                    {"batch-mb", "N", "chunk text per writer batch, MiB (one catalog transaction and one Xapian commit)"},
                    {"json", "", "print one JSON object on stdout"}}};
  ParsedArgs args = parse_args(spec, argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec).c_str());
    return kExitOk;
  }
  if (args.positional.empty()) fail(Errc::kInvalidArgument, "rag bench ingest: give a folder (see --help)");
  index::IngestOptions options;
  options.roots = args.positional;
  options.threads = static_cast<int>(args.get_int("threads", 0, 0, 1024));
  if (args.has("batch-mb")) options.batch_bytes = args.get_int("batch-mb", 32, 1, int64_t{1} << 20) << 20;
  ScratchDir scratch;
  index::IngestSummary s = index::ingest(scratch.path() + "/data", options);
  double seconds = s.seconds > 0 ? s.seconds : 1e-9;
  double files_s = static_cast<double>(s.files) / seconds;
  double pages_s = static_cast<double>(s.pages) / seconds;
  double mb_s = static_cast<double>(s.bytes) / 1e6 / seconds;
  double chunks_s = static_cast<double>(s.chunks) / seconds;
  if (args.has("json")) {
    nlohmann::json out = {{"files", s.files},   {"failed", s.failed}, {"pages", s.pages},     {"bytes", s.bytes},
                          {"chunks", s.chunks}, {"seconds", s.seconds}, {"files_per_s", files_s},
                          {"pages_per_s", pages_s}, {"mb_per_s", mb_s}, {"chunks_per_s", chunks_s}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("ingest: %lld files (%lld failed), %lld pages, %.1f MB, %lld chunks in %.2f s\n",
                static_cast<long long>(s.files), static_cast<long long>(s.failed), static_cast<long long>(s.pages),
                static_cast<double>(s.bytes) / 1e6, static_cast<long long>(s.chunks), s.seconds);
    std::printf("ingest: %.1f files/s, %.1f pages/s, %.2f MB/s, %.1f chunks/s\n", files_s, pages_s, mb_s, chunks_s);
  }
  return kExitOk;
}

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// The machine's read bandwidth in the same run, so decode figures can be read as a fraction of it: threads
// each sum their part of a buffer far larger than the caches; the best of a few passes.
double memory_read_gb_s(int threads) {
  constexpr size_t kBytes = size_t{512} << 20;
  const size_t words = kBytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buffer(new uint64_t[words]);
  for (size_t i = 0; i < words; ++i) buffer[i] = i;
  double best = 0;
  for (int pass = 0; pass < 4; ++pass) {
    std::atomic<uint64_t> total{0};
    const auto start = Clock::now();
    std::vector<std::thread> team;
    for (int t = 0; t < threads; ++t) {
      team.emplace_back([&, t] {
        const size_t per = words / static_cast<size_t>(threads);
        const uint64_t* p = buffer.get() + per * static_cast<size_t>(t);
        uint64_t a[8] = {};
        for (size_t i = 0; i + 8 <= per; i += 8)
          for (int j = 0; j < 8; ++j) a[j] += p[i + j];
        total += a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
      });
    }
    for (auto& t : team) t.join();
    const double seconds = seconds_between(start, Clock::now());
    if (total.load() == 1) std::fprintf(stderr, "\n");  // keeps the sums alive
    best = std::max(best, static_cast<double>(kBytes) / seconds / 1e9);
  }
  return best;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

std::vector<int32_t> random_tokens(std::mt19937& rng, int64_t vocab, int64_t n) {
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int32_t& t : out) t = dist(rng);
  return out;
}

// Options that make a generation run exactly max_tokens tokens, whatever the random weights produce.
generate::GenerateOptions fixed_length(int64_t max_tokens) {
  generate::GenerateOptions o;
  o.max_tokens = max_tokens;
  o.stop_at_eos = false;
  o.repetition_window = 0;
  return o;
}

int bench_gen(int argc, char** argv) {
  CommandSpec spec{"bench gen",
                   "",
                   "Measures the generator on --model with random token prompts (greedy, no stop):\n"
                   "  prefill    tokens/s of one --prompt-tokens prompt run in one pass (time to its first token)\n"
                   "  decode     tokens/s of one sequence generating --decode-tokens tokens from a 1-token prompt\n"
                   "  ttft       time to first token of a --ttft-tokens prompt through the engine, cold and again\n"
                   "             with its first --cached-tokens tokens in the prefix cache; the cold run then goes on\n"
                   "             for --decode-tokens tokens, timed as one stream's decode after a long prompt\n"
                   "  aggregate  tokens/s of 1, 2, 4, 8, 16 concurrent streams (engine, continuous batching), each\n"
                   "             generating --stream-tokens tokens, counted from the first token to the last\n"
                   "and KV bytes per token, the machine's memory read rate in the same run and the model bytes per\n"
                   "second a decode step streams (the decode rate is bound by it). Each figure is the median of\n"
                   "--repetitions runs; weights and the prefill's buffers are touched once first.",
                   {{"model", "FILE", "the decoder model (GGUF; required)"},
                    {"threads", "N", "OpenMP threads (default: OMP_NUM_THREADS or one per core)"},
                    {"kv-mem", "MIB", fmt::format(kKvMemHelp, 1024)},
                    {"kv-type", "TYPE", kKvTypeHelp},
                    {"prompt-tokens", "N", "prefill prompt length (default 512)"},
                    {"decode-tokens", "N", "tokens timed for decode (default 128)"},
                    {"ttft-tokens", "N", "prompt length for time to first token (default 2000)"},
                    {"cached-tokens", "N", "of those, the prefix cached on the second run (default 1900)"},
                    {"streams", "N,N,...", "concurrent stream counts (default 1,2,4,8,16)"},
                    {"stream-tokens", "N", "tokens each concurrent stream generates (default 64)"},
                    {"repetitions", "N", "runs of each measurement, the median reported (default 3)"},
                    {"json", "", "print one JSON object on stdout"}}};
  ParsedArgs args = parse_args(spec, argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec).c_str());
    return kExitOk;
  }
  if (!args.has("model")) fail(Errc::kInvalidArgument, "rag bench gen: give --model FILE (see --help)");
  if (args.has("threads")) {
    // OpenMP reads OMP_NUM_THREADS once at start-up and omp_set_num_threads() only affects the calling
    // thread, not the engine's: run again with the variable set so every thread starts with it.
    const std::string want = std::to_string(args.get_int("threads", 0, 1, 1024));
    const char* have = std::getenv("OMP_NUM_THREADS");
    if (!have || want != have) {
      ::setenv("OMP_NUM_THREADS", want.c_str(), 1);
      std::vector<char*> again(argv - 3, argv + argc);  // from "rag": rag bench gen ...
      again.push_back(nullptr);
      ::execv("/proc/self/exe", again.data());
      fail(Errc::kIo, "rag bench gen: cannot re-run itself with OMP_NUM_THREADS={}", want);
    }
  }
  const std::string path = args.get("model");
  const int64_t prompt_tokens = args.get_int("prompt-tokens", 512, 1, int64_t{1} << 20);
  const int64_t decode_tokens = args.get_int("decode-tokens", 128, 2, int64_t{1} << 20);
  const int64_t ttft_tokens = args.get_int("ttft-tokens", 2000, 2, int64_t{1} << 20);
  const int64_t cached_tokens = args.get_int("cached-tokens", 1900, 0, ttft_tokens - 1);
  const int64_t stream_tokens = args.get_int("stream-tokens", 64, 2, int64_t{1} << 20);
  const int64_t repetitions = args.get_int("repetitions", 3, 1, 100);
  // The median of `repetitions` runs of a measurement: a shared machine's neighbours come and go.
  auto median_of = [&](auto&& measure) {
    std::vector<double> runs;
    for (int64_t i = 0; i < repetitions; ++i) runs.push_back(measure());
    return median(std::move(runs));
  };
  std::vector<int64_t> streams;
  {
    const std::string list = args.get("streams", "1,2,4,8,16");
    size_t at = 0;
    while (at <= list.size()) {
      const size_t comma = std::min(list.find(',', at), list.size());
      const std::string item = list.substr(at, comma - at);
      char* end = nullptr;
      const long long v = std::strtoll(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || v < 1 || v > 1024)
        fail(Errc::kInvalidArgument, "rag bench gen: --streams '{}' is not a list of counts in [1, 1024]", list);
      streams.push_back(v);
      at = comma + 1;
    }
  }
  generate::EngineOptions engine_options;
  if (args.has("kv-mem")) engine_options.kv_memory_bytes = args.get_int("kv-mem", 1024, 1, 1 << 20) << 20;

  const std::shared_ptr<const generate::Model> model =
      generate::load_model(path, generate::parse_kv_cache_type(args.get("kv-type", "auto")));
  const generate::ModelInfo info = generate::model_info(*model);
  const int64_t longest = std::max({prompt_tokens + 1, decode_tokens + 1, ttft_tokens + decode_tokens + 1});
  if (longest > info.context_length)
    fail(Errc::kInvalidArgument, "rag bench gen: the runs need {} positions but the context of {} holds {}; lower the token counts",
         longest, path, info.context_length);
  const int threads = omp_get_max_threads();
  std::mt19937 rng(1);
  double load[3] = {0, 0, 0};
  if (::getloadavg(load, 3) < 0) load[0] = -1;

  const double read_gb_s = memory_read_gb_s(threads);
  // Touch every weight once (page faults of the mapping, first-use allocations) before timing.
  generate::generate(*model, random_tokens(rng, info.vocab_size, 8), fixed_length(2));

  // Prefill: the prompt's one pass plus one sampling step, timed to the first token. A first, untimed run
  // faults in the pass's buffers (tens of MB for 512 tokens), which every run of generate() allocates anew.
  const auto prefill_prompt = random_tokens(rng, info.vocab_size, prompt_tokens);
  auto prefill_once = [&] {
    double seconds = 0;
    const auto start = Clock::now();
    generate::generate(*model, prefill_prompt, fixed_length(1), [&](int32_t, std::string_view) {
      seconds = seconds_between(start, Clock::now());
      return true;
    });
    return seconds;
  };
  prefill_once();
  const double prefill_seconds = median_of(prefill_once);
  // Decode: the time between the first and the last of decode_tokens + 1 tokens.
  const double decode_seconds = median_of([&] {
    double seconds = 0;
    Clock::time_point first{};
    int64_t seen = 0;
    generate::generate(*model, random_tokens(rng, info.vocab_size, 1), fixed_length(decode_tokens + 1),
                       [&](int32_t, std::string_view) {
                         if (seen++ == 0) first = Clock::now();
                         seconds = seconds_between(first, Clock::now());
                         return true;
                       });
    return seconds;
  });

  // The direct runs above left an OpenMP pool on this thread; the engine thread's team must be the only one.
  if (!nn::release_openmp_threads()) spdlog::warn("bench gen: OpenMP kept its threads");
  generate::Engine engine(model, engine_options);
  const double kv_bytes_per_token =
      static_cast<double>(engine.block_bytes()) / static_cast<double>(engine.stats().block_tokens);
  // Time to first token through the engine: cold, then a prompt sharing its first cached_tokens tokens. The
  // cold run goes on for `decode` more tokens, timed from its first token to its last: one stream decoding
  // after a long prompt, as answers over retrieved passages do.
  struct EngineRun {
    double first_token_ms = 0, decode_seconds = 0;
  };
  auto engine_run = [&](const std::vector<int32_t>& prompt, int64_t decode) {
    generate::Request r;
    r.prompt = prompt;
    r.options = fixed_length(1 + decode);
    Clock::time_point first{}, last{};
    int64_t seen = 0;
    r.on_token = [&](int32_t, std::string_view) {
      (seen++ == 0 ? first : last) = Clock::now();
      return true;
    };
    const generate::Completion done = engine.run(std::move(r));
    return EngineRun{done.first_token_seconds * 1e3, decode > 0 ? seconds_between(first, last) : 0.0};
  };
  const auto ttft_prompt = random_tokens(rng, info.vocab_size, ttft_tokens);
  auto second = ttft_prompt;
  const auto tail = random_tokens(rng, info.vocab_size, ttft_tokens - cached_tokens);
  std::copy(tail.begin(), tail.end(), second.begin() + cached_tokens);
  std::vector<double> cold_runs, cached_runs, long_decode_runs;
  for (int64_t i = 0; i < repetitions; ++i) {
    engine.clear_prefix_cache();
    const EngineRun cold = engine_run(ttft_prompt, decode_tokens);
    cold_runs.push_back(cold.first_token_ms);
    long_decode_runs.push_back(cold.decode_seconds);
    cached_runs.push_back(engine_run(second, 0).first_token_ms);
  }
  const double ttft_cold_ms = median(std::move(cold_runs));
  const double ttft_cached_ms = median(std::move(cached_runs));
  const double long_decode_seconds = median(std::move(long_decode_runs));
  engine.clear_prefix_cache();

  // Concurrent streams: distinct 16-token prompts submitted together.
  nlohmann::json aggregate = nlohmann::json::object();
  std::vector<std::pair<int64_t, double>> aggregate_rows;
  for (int64_t count : streams) {
    const double rate = median_of([&] {
      std::mutex mu;
      Clock::time_point first = Clock::time_point::max(), last{};
      int64_t tokens = 0;
      std::vector<generate::Submission> running;
      for (int64_t i = 0; i < count; ++i) {
        generate::Request r;
        r.prompt = random_tokens(rng, info.vocab_size, 16);
        r.options = fixed_length(stream_tokens);
        r.on_token = [&](int32_t, std::string_view) {
          const auto now = Clock::now();
          std::lock_guard<std::mutex> lock(mu);
          first = std::min(first, now);
          last = std::max(last, now);
          ++tokens;
          return true;
        };
        running.push_back(engine.submit(std::move(r)));
      }
      for (auto& s : running) s.completion.get();
      engine.clear_prefix_cache();
      // The first token of every stream comes from its prefill, not from decoding.
      const double seconds = seconds_between(first, last);
      return seconds > 0 ? static_cast<double>(tokens - count) / seconds : 0.0;
    });
    aggregate[std::to_string(count)] = rate;
    aggregate_rows.emplace_back(count, rate);
  }

  const double prefill_tok_s = static_cast<double>(prompt_tokens) / std::max(prefill_seconds, 1e-9);
  const double decode_tok_s = static_cast<double>(decode_tokens) / std::max(decode_seconds, 1e-9);
  const double long_decode_tok_s = static_cast<double>(decode_tokens) / std::max(long_decode_seconds, 1e-9);
  // A decode step reads every weight once: the file's bytes are that, within its metadata.
  const double model_gb = static_cast<double>(std::filesystem::file_size(path)) / 1e9;
  const double decode_gb_s = model_gb * decode_tok_s;
  if (args.has("json")) {
    nlohmann::json out = {{"model", path},
                          {"weight_type", info.weight_type},
                          {"threads", threads},
                          {"load_average", load[0]},
                          {"repetitions", repetitions},
                          {"prompt_tokens", prompt_tokens},
                          {"prefill_tok_s", prefill_tok_s},
                          {"decode_tokens", decode_tokens},
                          {"decode_tok_s", decode_tok_s},
                          {"ttft_tokens", ttft_tokens},
                          {"cached_tokens", cached_tokens},
                          {"ttft_cold_ms", ttft_cold_ms},
                          {"ttft_cached_ms", ttft_cached_ms},
                          {"long_decode_tok_s", long_decode_tok_s},
                          {"stream_tokens", stream_tokens},
                          {"aggregate_tok_s", aggregate},
                          {"kv_bytes_per_token", kv_bytes_per_token},
                          {"memory_read_gb_s", read_gb_s},
                          {"decode_model_gb_s", decode_gb_s},
                          {"decode_of_read_bandwidth", decode_gb_s / std::max(read_gb_s, 1e-9)}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("model        %s (%s, %.2f GB), %d threads, load average %.2f, medians of %lld runs\n", path.c_str(),
                info.weight_type.c_str(), model_gb, threads, load[0], static_cast<long long>(repetitions));
    std::printf("prefill      %8.1f tok/s   (%lld-token prompt)\n", prefill_tok_s, static_cast<long long>(prompt_tokens));
    std::printf("decode       %8.1f tok/s   (one stream, %.1f GB/s of model = %.0f%% of the %.1f GB/s memory read)\n",
                decode_tok_s, decode_gb_s, 100.0 * decode_gb_s / std::max(read_gb_s, 1e-9), read_gb_s);
    std::printf("ttft cold    %8.1f ms      (%lld-token prompt)\n", ttft_cold_ms, static_cast<long long>(ttft_tokens));
    std::printf("ttft cached  %8.1f ms      (first %lld tokens cached)\n", ttft_cached_ms,
                static_cast<long long>(cached_tokens));
    std::printf("long decode  %8.1f tok/s   (one stream, after the %lld-token prompt)\n", long_decode_tok_s,
                static_cast<long long>(ttft_tokens));
    for (const auto& [count, rate] : aggregate_rows)
      std::printf("aggregate    %8.1f tok/s   (%lld streams)\n", rate, static_cast<long long>(count));
    std::printf("kv cache     %8.0f bytes per token\n", kv_bytes_per_token);
  }
  return kExitOk;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  if (argc < 1 || std::string_view(argv[0]) == "--help" || std::string_view(argv[0]) == "-h") {
    print_help();
    return argc < 1 ? kExitUsage : kExitOk;
  }
  for (const auto& c : bench_commands())
    if (std::string_view(argv[0]) == c.name) return c.run(argc - 1, argv + 1);
  std::fprintf(stderr, "rag bench: unknown subcommand '%s'\n\n", argv[0]);
  print_help();
  return kExitUsage;
}

}  // namespace rag::cli
