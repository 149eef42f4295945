// Kernel microbenchmarks: the machine's memory read bandwidth, measured first in the same run, then matvec
// (decode: bound by streaming the weights, reported as weight bytes/s and as a fraction of that bandwidth)
// and matmul (prefill and encoders: bound by arithmetic, reported as FLOP/s, 2 per multiply-add).
//
//   build/bench/kernels --benchmark_min_time=0.2
//   RAG_SIMD=avx2 build/bench/kernels ...        the same at a capped SIMD level
//
// Shapes are Qwen2.5-0.5B's: 4864×896 (MLP up/gate), 896×4864 (MLP down), 151936×896 (the output head),
// 896×896 (attention projections); matmul runs n = 512 tokens. Attention runs one tile of a prefix-cache
// hit and one decoding token's query heads over 2,000 keys (BM_Attention).
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include "nn/kernels.h"
#include "nn/tensor.h"

namespace rag::nn {
namespace {

// Bytes/s from BM_MemoryRead (registered first, so it runs first): the best rate over its thread counts.
double g_read_bandwidth = 0.0;

// Sums `words` 64-bit words with four independent vector accumulators: far faster than memory, so memory
// is what a streaming pass measures. AVX2 when the CPU has it (target attribute: the bench has no -m flags).
__attribute__((target("avx2"))) uint64_t sum_words_avx2(const uint64_t* p, size_t words) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 16 <= words; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

uint64_t sum_words(const uint64_t* p, size_t words) {
  if (__builtin_cpu_supports("avx2")) return sum_words_avx2(p, words);
  uint64_t a[8] = {};
  for (size_t i = 0; i + 8 <= words; i += 8) {
    for (int j = 0; j < 8; ++j) a[j] += p[i + j];
  }
  return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

// The machine's read bandwidth: a streaming sum over 1 GiB (far larger than the L3 cache), one contiguous
// part per thread.
void BM_MemoryRead(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  constexpr size_t kBytes = size_t{1} << 30;
  static uint64_t* buffer = [] {
    auto* b = static_cast<uint64_t*>(std::aligned_alloc(64, kBytes));
    for (size_t i = 0; i < kBytes / 8; ++i) b[i] = i;
    return b;
  }();
  const size_t words = kBytes / 8;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    uint64_t total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const size_t per = words / static_cast<size_t>(omp_get_num_threads());
      total += sum_words(buffer + per * static_cast<size_t>(omp_get_thread_num()), per);
    }
    benchmark::DoNotOptimize(total);
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kBytes));
  const double rate = static_cast<double>(state.iterations()) * static_cast<double>(kBytes) / elapsed.count();
  if (rate > g_read_bandwidth) g_read_bandwidth = rate;
}

// A weight matrix of `type` with random values: a pool of distinct quantized rows repeated, since the
// values do not change the speed and quantizing 136M values would dominate the run.
const Weights& test_weights(TensorType type, int64_t rows, int64_t cols) {
  static std::map<std::tuple<TensorType, int64_t, int64_t>, std::vector<uint8_t>> cache;
  static std::map<std::tuple<TensorType, int64_t, int64_t>, Weights> views;
  const auto key = std::make_tuple(type, rows, cols);
  auto found = views.find(key);
  if (found != views.end()) return found->second;
  constexpr int64_t kPool = 61;
  const size_t stride = row_bytes(type, cols);
  std::vector<uint8_t> pool(stride * kPool);
  std::mt19937 rng(static_cast<uint32_t>(rows + cols));
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> values(static_cast<size_t>(cols));
  for (int64_t r = 0; r < kPool; ++r) {
    for (float& v : values) v = dist(rng);
    quantize_row(type, values.data(), pool.data() + r * stride, cols);
  }
  std::vector<uint8_t>& bytes = cache[key];
  bytes.resize(stride * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) std::memcpy(bytes.data() + r * stride, pool.data() + (r % kPool) * stride, stride);
  return views[key] = Weights{type, bytes.data(), rows, cols};
}

std::vector<float> random_activations(int64_t count) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(count));
  for (float& v : x) v = dist(rng);
  return x;
}

// Args: type, rows, cols, threads.
void BM_Matvec(benchmark::State& state) {
  const auto type = static_cast<TensorType>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const Weights& w = test_weights(type, rows, cols);
  const std::vector<float> x = random_activations(cols);
  std::vector<float> y(static_cast<size_t>(rows));
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(threads);
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    matvec(w, x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  omp_set_num_threads(saved_threads);
  const double bytes = static_cast<double>(row_bytes(type, cols)) * static_cast<double>(rows);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.SetLabel(std::string(tensor_type_name(type)) + " " + std::string(simd_level_name(simd_level())));
  // Weights streamed per second as a fraction of the measured read bandwidth.
  if (g_read_bandwidth > 0) {
    state.counters["of_read_bw"] = static_cast<double>(state.iterations()) * bytes / elapsed.count() / g_read_bandwidth;
  }
}

// Args: type, rows, cols, n tokens, dequantized. For Q8_0 and Q4_0 both routes matmul chooses between run:
// 0 = matmul_int8, 1 = matmul_dequantized (F32 tiles + sgemm). Other types run matmul.
void BM_Matmul(benchmark::State& state) {
  const auto type = static_cast<TensorType>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n = state.range(3);
  const bool dequantized = state.range(4) != 0;
  const Weights& w = test_weights(type, rows, cols);
  const std::vector<float> x = random_activations(n * cols);
  std::vector<float> y(static_cast<size_t>(n * rows));
  for (auto _ : state) {
    if (dequantized) {
      matmul_dequantized(w, x.data(), n, y.data());
    } else if (type == TensorType::kQ8_0 || type == TensorType::kQ4_0) {
      matmul_int8(w, x.data(), n, y.data());
    } else {
      matmul(w, x.data(), n, y.data());
    }
    benchmark::DoNotOptimize(y.data());
  }
  const bool int8 = !dequantized && (type == TensorType::kQ8_0 || type == TensorType::kQ4_0);
  state.SetLabel(std::string(tensor_type_name(type)) + (dequantized ? " dequantized+sgemm " : int8 ? " int8 " : " ") +
                 std::string(simd_level_name(simd_level())));
  state.counters["FLOPS"] = benchmark::Counter(2.0 * static_cast<double>(n * rows * cols),
                                               benchmark::Counter::kIsIterationInvariantRate);
}

// Args: type, rows, cols, n tokens, route (0 = matvec_batch, 1 = matmul_int8's tile kernel): where matmul
// switches from one to the other for batched decode (kMatvecBatchTokens). Two threads, real time.
void BM_DecodeBatch(benchmark::State& state) {
  const auto type = static_cast<TensorType>(state.range(0));
  const int64_t rows = state.range(1), cols = state.range(2), n = state.range(3);
  const bool tiles = state.range(4) != 0;
  const Weights& w = test_weights(type, rows, cols);
  const std::vector<float> x = random_activations(n * cols);
  std::vector<float> y(static_cast<size_t>(n * rows));
  for (auto _ : state) {
    if (tiles) {
      matmul_int8(w, x.data(), n, y.data());
    } else {
      matvec_batch(w, x.data(), n, y.data());
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(tensor_type_name(type)) + (tiles ? " int8 tiles " : " matvec batch ") +
                 std::string(simd_level_name(simd_level())));
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_RmsNorm(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float> x = random_activations(n), w = random_activations(n);
  std::vector<float> y(static_cast<size_t>(n));
  for (auto _ : state) {
    rms_norm(x.data(), w.data(), y.data(), n, 1e-6f);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_Softmax(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float> x = random_activations(n);
  std::vector<float> y = x;
  for (auto _ : state) {
    std::memcpy(y.data(), x.data(), static_cast<size_t>(n) * sizeof(float));
    softmax(y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_Swiglu(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float> g = random_activations(n), u = random_activations(n);
  std::vector<float> y(static_cast<size_t>(n));
  for (auto _ : state) {
    swiglu(g.data(), u.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_Gelu(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float> x = random_activations(n);
  std::vector<float> y(static_cast<size_t>(n));
  for (auto _ : state) {
    gelu(x.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// One attention task of a prefix-cache hit on Qwen2.5-0.5B: 32 tokens × 7 query heads of one KV head (224
// rows, head_dim 64) against 2000 keys in 16-key blocks (K and V rows 128 floats apart, as a KV row holds
// both KV heads), every row seeing every key. Arg 0 multiplies in float, 1 in BF16 (q_pairs) where the CPU
// has it. FLOP/s counts q·k and p·v: 4 × rows × keys × head_dim.
void BM_Attention(benchmark::State& state) {
  const bool bf16 = state.range(0) == 1;
  const int64_t kRows = state.range(1);
  constexpr int64_t kHeadDim = 64, kKeys = 2000, kStride = 128;
  if (bf16 && !attention_bf16_available(kHeadDim)) {
    state.SkipWithError("no BF16 attention at this SIMD level");
    return;
  }
  const std::vector<float> q_t = random_activations(kHeadDim * kRows), k = random_activations(kKeys * kStride),
                           v = random_activations(kKeys * kStride);
  std::vector<uint32_t> q_pairs(static_cast<size_t>(kHeadDim / 2 * kRows));
  for (int64_t i = 0; i < kHeadDim / 2; ++i)
    for (int64_t r = 0; r < kRows; ++r)
      q_pairs[i * kRows + r] = f32_to_bf16(0.125f * q_t[2 * i * kRows + r]) |
                               static_cast<uint32_t>(f32_to_bf16(0.125f * q_t[(2 * i + 1) * kRows + r])) << 16;
  std::vector<float> out_t(static_cast<size_t>(kHeadDim * kRows)), max(kRows), sum(kRows);
  const std::vector<int32_t> visible(kRows, static_cast<int32_t>(kAttentionBlockKeys));
  for (auto _ : state) {
    std::fill(out_t.begin(), out_t.end(), 0.0f);
    std::fill(max.begin(), max.end(), std::numeric_limits<float>::lowest());
    std::fill(sum.begin(), sum.end(), 0.0f);
    for (int64_t j = 0; j < kKeys; j += kAttentionBlockKeys) {
      AttentionBlock a;
      a.rows = kRows;
      a.head_dim = kHeadDim;
      a.ld = kRows;
      a.q_t = q_t.data();
      a.q_pairs = bf16 ? q_pairs.data() : nullptr;
      a.k = k.data() + j * kStride;
      a.v = v.data() + j * kStride;
      a.kv_stride = kStride;
      a.keys = kAttentionBlockKeys;
      a.visible = visible.data();
      a.max = max.data();
      a.sum = sum.data();
      a.out_t = out_t.data();
      attention_block(a);
    }
    benchmark::DoNotOptimize(out_t.data());
  }
  state.SetLabel(std::string(bf16 ? "bf16 " : "f32 ") + std::string(simd_level_name(simd_level())));
  state.counters["FLOP/s"] = benchmark::Counter(4.0 * kRows * kKeys * kHeadDim, benchmark::Counter::kIsIterationInvariantRate);
}

constexpr int64_t kTypes[] = {static_cast<int64_t>(TensorType::kF32), static_cast<int64_t>(TensorType::kF16),
                              static_cast<int64_t>(TensorType::kQ8_0), static_cast<int64_t>(TensorType::kQ4_0)};

void matvec_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"type", "rows", "cols", "threads"});
  for (int64_t type : kTypes) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{4864, 896}, {896, 4864}, {151936, 896}}) {
      for (int64_t threads : {1, 2}) b->Args({type, rows, cols, threads});
    }
  }
}

void matmul_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"type", "rows", "cols", "n", "dequant"});
  for (int64_t type : kTypes) {
    // n = 8: a decode step of continuous batching, where weights stream once for all sequences.
    b->Args({type, 4864, 896, 8, 0});
    // 896×4864: the FFN's down projection, whose long rows leave the fewest tokens per L2-sized group.
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{896, 896}, {4864, 896}, {896, 4864}}) {
      b->Args({type, rows, cols, 512, 0});
      if (type == static_cast<int64_t>(TensorType::kQ8_0) || type == static_cast<int64_t>(TensorType::kQ4_0)) {
        b->Args({type, rows, cols, 512, 1});
      }
    }
  }
}

void decode_batch_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"type", "rows", "cols", "n", "tiles"});
  for (int64_t type : {static_cast<int64_t>(TensorType::kQ8_0), static_cast<int64_t>(TensorType::kQ4_0)}) {
    for (int64_t n : {1, 2, 4, 8, 16, 32, 64}) {
      for (int64_t tiles : {0, 1}) b->Args({type, 4864, 896, n, tiles});
    }
  }
}

}  // namespace
}  // namespace rag::nn

BENCHMARK(rag::nn::BM_MemoryRead)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(rag::nn::BM_Matvec)->Apply(rag::nn::matvec_args)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(rag::nn::BM_Matmul)->Apply(rag::nn::matmul_args)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(rag::nn::BM_DecodeBatch)->Apply(rag::nn::decode_batch_args)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(rag::nn::BM_RmsNorm)->Arg(896)->Arg(4864);
BENCHMARK(rag::nn::BM_Softmax)->Arg(896)->Arg(32768);
BENCHMARK(rag::nn::BM_Swiglu)->Arg(4864);
BENCHMARK(rag::nn::BM_Gelu)->Arg(1536);
// rows 224: a prefill tile of 32 tokens × 7 query heads per KV head (Qwen2.5-0.5B); 7: one decoding token;
// 8: the same padded to a whole vector of lanes, as the decoder calls it (kAttentionRowVector).
BENCHMARK(rag::nn::BM_Attention)
    ->ArgNames({"bf16", "rows"})
    ->ArgsProduct({{0, 1}, {224, 7, 8}})
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
