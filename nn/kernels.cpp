// Dispatch, argument checks and threading for the kernels of kernels.h; the arithmetic lives in
// kernels-portable.cpp, kernels-avx2.cpp and kernels-avx512.cpp behind one KernelTable each.
//
// Threading: OpenMP regions split rows as parallel_rows does (nn/parallel.h): contiguous shares, taken in
// chunks, the last ones by whichever thread is free; called from inside a parallel region, a kernel runs on
// the calling thread alone. OpenBLAS (the pthread build on Debian) keeps its own thread pool; our
// sgemm calls come between OpenMP regions, never inside one, so the two pools take turns instead of
// oversubscribing the cores. (A caller's own parallel region around matmul would still oversubscribe with
// F32/F16/BF16 weights: the pthread build cannot be pinned to one thread per call.)
//
// Which product for which weights (bench/kernels, n = 512 tokens, one core, CPU time, AVX-512 level, on
// the 2-core AMD EPYC with AVX-512 VNNI we develop on):
//                         896×896        4864×896
//   F32   sgemm           113 GFLOP/s    115 GFLOP/s
//   F16   dequant+sgemm   120            116
//   Q8_0  int8 tiles      507            506      dequant+sgemm: 109, 109
//   Q4_0  int8 tiles      517            536      dequant+sgemm: 111, 112
// so Q8_0 and Q4_0 take the int8 kernel (4.6× faster), F16 and BF16 the dequantizing route (sgemm's
// speed for the price of converting each weight once per call). The AVX2 level (no VNNI, no tile kernel)
// takes the int8 route too since its quad kernel (kernels-x86.h): on an AVX2-only Zen 3, two threads, real
// time, n = 512, Q8_0 (Q4_0) 896×896 took 7.2-9.7 (5.8-6.9) ms against 13.0-16.7 (13.5-14.6) for
// dequant+sgemm, 4864×896 44-53 (40-43) against 41-61 (41-48), and bench/decoder's prefill rose by half;
// its one-row-at-a-time dot products before it ran at 67 GFLOP/s, below sgemm. Batched decode, n = 8 at
// 4864×896: int8 tiles 0.45 ms (Q8_0) / 0.36 ms (Q4_0) against 8 matvecs 0.74 ms and F32 sgemm 1.9 ms. The
// tile kernel repacks every weight it reads, a cost a few tokens do not repay: matvec_batch (each weight row
// loaded once, shared by up to 4 tokens in registers) took, one core, CPU time, Q8_0 4864×896 (bench/kernels
// BM_DecodeBatch), n = 2: 0.21 ms against tiles 0.51; n = 4: 0.33 against 0.54; n = 8: 0.63 against 0.62;
// n = 16: 1.35 against 0.99 (Q4_0 alike). Those matvec_batch figures are the dot-product kernel's; the
// AVX-512 16-row group kernel that replaced it (kernels-avx512.cpp) halved
// the CPU time of an 8-token decode pass and rounds as the tiles do, and moved the crossing: two threads,
// real time, 4864×896, matvec_batch against tiles, Q4_0 (Q8_0): n = 16: 0.29 (0.30) against 0.45 (0.38) ms;
// n = 24: 0.44 (0.47) against 0.56 (0.49); n = 32: 0.62 (0.59) against 0.68 (0.59); n = 64: 1.28 (1.17)
// against 1.22 (1.02). At the AVX2 level, n = 32 took 2.6 ms against 9.1 for dequant+sgemm. So matmul takes
// matvec_batch up to kMatvecBatchTokens = 32 tokens, and a decode batch of up to 32 sequences rounds as
// single decodes do.
//
// Scratch: quantized activations and dequantized weight tiles live in thread-local buffers that grow to the
// largest call and are reused, so a call allocates nothing once warmed up.
#include "nn/kernels.h"

#include <cblas.h>
#include <cpuid.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "common/error.h"
#include "common/log.h"
#include "nn/kernels-impl.h"
#include "nn/parallel.h"

namespace rag::nn {
namespace {

// Bytes of F32 weights dequantized per sgemm call in matmul_dequantized: sgemm needs big calls to reach
// its speed (tiles of 256 rows ran at a fifth of one whole-matrix call), yet the output head must not
// become a 545 MB copy.
constexpr int64_t kDequantTileBytes = int64_t{32} << 20;

SimdLevel detect_level() {
  __builtin_cpu_init();
  // F16C through CPUID: clang 14's __builtin_cpu_supports does not know "f16c" (g++ does).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return avx512 ? SimdLevel::kAvx512 : avx2 ? SimdLevel::kAvx2 : SimdLevel::kPortable;
}

SimdLevel initial_level() {
  const SimdLevel supported = simd_level_supported();
  SimdLevel level = supported;
  if (const char* cap = std::getenv("RAG_SIMD")) {
    const std::string_view name(cap);
    if (name == "portable") {
      level = SimdLevel::kPortable;
    } else if (name == "avx2") {
      level = std::min(supported, SimdLevel::kAvx2);
    } else if (name == "avx512") {
      level = std::min(supported, SimdLevel::kAvx512);
    } else {
      spdlog::warn("kernels: RAG_SIMD={} is not one of portable, avx2, avx512; ignored", name);
    }
  }
  spdlog::info("kernels: using {} (CPU supports {})", simd_level_name(level), simd_level_name(supported));
  return level;
}

std::atomic<SimdLevel>& current_level() {
  static std::atomic<SimdLevel> level{initial_level()};
  return level;
}

const KernelTable& table_for(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAvx512: return kAvx512Kernels;
    case SimdLevel::kAvx2: return kAvx2Kernels;
    case SimdLevel::kPortable: break;
  }
  return kPortableKernels;
}

const KernelTable& kernels() { return table_for(current_level().load(std::memory_order_relaxed)); }

// A growable 64-byte aligned buffer.
class Scratch {
 public:
  void* get(size_t bytes) {
    if (bytes > capacity_) {
      storage_.reset(new uint8_t[bytes + 64]);
      capacity_ = bytes;
    }
    const auto address = reinterpret_cast<uintptr_t>(storage_.get());
    return reinterpret_cast<void*>((address + 63) & ~uintptr_t{63});
  }

 private:
  std::unique_ptr<uint8_t[]> storage_;
  size_t capacity_ = 0;
};

// Activations of one call in int8 form (kernels-impl.h), n vectors of k values, in one thread-local buffer.
struct QuantizedActivations {
  int8_t* qs;
  float* d;
  float* ds;
};

QuantizedActivations activation_scratch(int64_t n, int64_t k) {
  thread_local Scratch scratch;
  const auto values = static_cast<size_t>(n * k);
  const auto blocks = static_cast<size_t>(n * (k / kQuantBlock));
  const size_t qs_bytes = (values + 63) & ~size_t{63};
  auto* base = static_cast<uint8_t*>(scratch.get(qs_bytes + 2 * blocks * sizeof(float)));
  auto* d = reinterpret_cast<float*>(base + qs_bytes);
  return {reinterpret_cast<int8_t*>(base), d, d + blocks};
}

bool quantized(TensorType type) { return type == TensorType::kQ8_0 || type == TensorType::kQ4_0; }

void check_weights(const Weights& w, const char* what) {
  if (!tensor_type_known(static_cast<uint32_t>(w.type))) {
    fail(Errc::kUnsupported, "{}: unknown weight type {}", what, static_cast<uint32_t>(w.type));
  }
  if (w.rows < 0 || w.cols < 0) fail(Errc::kInvalidArgument, "{}: negative shape {}×{}", what, w.rows, w.cols);
  if (w.cols % static_cast<int64_t>(block_size(w.type)) != 0) {
    fail(Errc::kInvalidArgument, "{}: {} rows of {} values are not whole blocks of {}", what,
         tensor_type_name(w.type), w.cols, block_size(w.type));
  }
  if (w.data == nullptr && w.rows * w.cols != 0) fail(Errc::kInvalidArgument, "{}: no weight data", what);
}

void quantize_rows(const KernelTable& k, const float* x, int64_t n, int64_t cols, QuantizedActivations q) {
  const int64_t blocks = cols / kQuantBlock;
  parallel_rows(n, n * cols, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      k.quantize_q8(x + t * cols, cols, q.qs + t * cols, q.d + t * blocks, q.ds + t * blocks);
    }
  });
}

// y[r] = W[r] · x for r in [r0, r1); xq holds x in int8 form for quantized types.
void dot_rows(const KernelTable& k, const Weights& w, const float* x, Q8Vector xq, float* y, int64_t r0,
              int64_t r1) {
  const size_t stride = row_bytes(w.type, w.cols);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const int64_t n = w.cols;
  switch (w.type) {
    case TensorType::kF32:
      for (int64_t r = r0; r < r1; ++r) y[r] = k.dot_f32(reinterpret_cast<const float*>(base + r * stride), x, n);
      break;
    case TensorType::kF16:
      for (int64_t r = r0; r < r1; ++r) y[r] = k.dot_f16(reinterpret_cast<const uint16_t*>(base + r * stride), x, n);
      break;
    case TensorType::kBF16:
      for (int64_t r = r0; r < r1; ++r) y[r] = k.dot_bf16(reinterpret_cast<const uint16_t*>(base + r * stride), x, n);
      break;
    case TensorType::kQ8_0:
      for (int64_t r = r0; r < r1; ++r) y[r] = k.dot_q8_0(reinterpret_cast<const BlockQ8_0*>(base + r * stride), xq, n);
      break;
    case TensorType::kQ4_0:
      for (int64_t r = r0; r < r1; ++r) y[r] = k.dot_q4_0(reinterpret_cast<const BlockQ4_0*>(base + r * stride), xq, n);
      break;
  }
}

void matmul_q8(const KernelTable& k, const Weights& w, const float* x, int64_t n, float* y) {
  const QuantizedActivations q = activation_scratch(n, w.cols);
  quantize_rows(k, x, n, w.cols, q);
  const Q8Matrix xq{q.qs, q.d, q.ds, w.cols};
  const auto scratch_bytes = static_cast<size_t>(k.matmul_q8_scratch_bytes(w.cols));
  parallel_rows(w.rows, w.rows * w.cols * n, [&](int64_t r0, int64_t r1) {
    thread_local Scratch scratch;
    k.matmul_q8(w.type, w.data, r0, r1, xq, n, y, w.rows, scratch.get(scratch_bytes));
  });
}

}  // namespace

SimdLevel simd_level_supported() {
  static const SimdLevel level = detect_level();
  return level;
}

SimdLevel simd_level() { return current_level().load(std::memory_order_relaxed); }

std::string_view simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAvx512: return "avx512";
    case SimdLevel::kAvx2: return "avx2";
    case SimdLevel::kPortable: break;
  }
  return "portable";
}

bool release_openmp_threads() {
  return !omp_in_parallel() && omp_pause_resource_all(omp_pause_soft) == 0;
}

void set_simd_level(SimdLevel level) {
  if (level > simd_level_supported()) {
    fail(Errc::kUnsupported, "kernels: this CPU does not support {} (best: {})", simd_level_name(level),
         simd_level_name(simd_level_supported()));
  }
  current_level().store(level, std::memory_order_relaxed);
}

void matvec(const Weights& w, const float* x, float* y) {
  check_weights(w, "matvec");
  const KernelTable& k = kernels();
  if (quantized(w.type)) {
    // The batch kernel with one token: matvec_batch then rounds each token exactly as this does.
    const QuantizedActivations q = activation_scratch(1, w.cols);
    k.quantize_q8(x, w.cols, q.qs, q.d, q.ds);
    const Q8Matrix xq{q.qs, q.d, q.ds, w.cols};
    parallel_rows(w.rows, w.rows * w.cols, [&](int64_t r0, int64_t r1) {
      k.matvec_q8(w.type, w.data, r0, r1, xq, 1, y, w.rows);
    });
    return;
  }
  parallel_rows(w.rows, w.rows * w.cols, [&](int64_t r0, int64_t r1) { dot_rows(k, w, x, Q8Vector{}, y, r0, r1); });
}

void matmul_dequantized(const Weights& w, const float* x, int64_t n, float* y) {
  check_weights(w, "matmul");
  if (n <= 0 || w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(y, y + n * w.rows, 0.0f);
    return;
  }
  const KernelTable& k = kernels();
  const int64_t tile_rows = std::min(w.rows, std::max(kRowAlign, kDequantTileBytes / (w.cols * 4)));
  thread_local Scratch scratch;
  auto* tile = static_cast<float*>(scratch.get(static_cast<size_t>(tile_rows * w.cols) * sizeof(float)));
  const size_t stride = row_bytes(w.type, w.cols);
  const auto* base = static_cast<const uint8_t*>(w.data);
  for (int64_t r0 = 0; r0 < w.rows; r0 += tile_rows) {
    const int64_t rows = std::min(tile_rows, w.rows - r0);
    parallel_rows(rows, rows * w.cols, [&](int64_t a, int64_t b) {
      for (int64_t r = a; r < b; ++r) k.row_to_f32(w.type, base + (r0 + r) * stride, tile + r * w.cols, w.cols);
    });
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(rows),
                static_cast<int>(w.cols), 1.0f, x, static_cast<int>(w.cols), tile, static_cast<int>(w.cols),
                0.0f, y + r0, static_cast<int>(w.rows));
  }
}

void matvec_batch(const Weights& w, const float* x, int64_t n, float* y) {
  check_weights(w, "matvec_batch");
  if (n <= 0 || w.rows == 0) return;
  if (!quantized(w.type)) {
    for (int64_t t = 0; t < n; ++t) matvec(w, x + t * w.cols, y + t * w.rows);
    return;
  }
  const KernelTable& k = kernels();
  const QuantizedActivations q = activation_scratch(n, w.cols);
  quantize_rows(k, x, n, w.cols, q);
  const Q8Matrix xq{q.qs, q.d, q.ds, w.cols};
  parallel_rows(w.rows, w.rows * w.cols * n, [&](int64_t r0, int64_t r1) {
    k.matvec_q8(w.type, w.data, r0, r1, xq, n, y, w.rows);
  });
}

void matmul(const Weights& w, const float* x, int64_t n, float* y) {
  check_weights(w, "matmul");
  if (n <= 0 || w.rows == 0) return;
  // One token gains nothing from sgemm or packed weight tiles; the matvec kernels read weights in place.
  if (n == 1) {
    matvec(w, x, y);
    return;
  }
  if (quantized(w.type) && n <= kMatvecBatchTokens) {
    matvec_batch(w, x, n, y);
    return;
  }
  switch (w.type) {
    case TensorType::kF32:
      if (w.cols == 0) {
        std::fill(y, y + n * w.rows, 0.0f);
        return;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(w.rows),
                  static_cast<int>(w.cols), 1.0f, x, static_cast<int>(w.cols), static_cast<const float*>(w.data),
                  static_cast<int>(w.cols), 0.0f, y, static_cast<int>(w.rows));
      return;
    case TensorType::kF16:
    case TensorType::kBF16:
      matmul_dequantized(w, x, n, y);
      return;
    case TensorType::kQ8_0:
    case TensorType::kQ4_0:
      if (kernels().matmul_q8_preferred) {
        matmul_int8(w, x, n, y);
      } else {
        matmul_dequantized(w, x, n, y);
      }
      return;
  }
}

void matmul_int8(const Weights& w, const float* x, int64_t n, float* y) {
  check_weights(w, "matmul_int8");
  if (!quantized(w.type)) {
    fail(Errc::kInvalidArgument, "matmul_int8: {} weights are not int8 blocks", tensor_type_name(w.type));
  }
  if (n <= 0 || w.rows == 0) return;
  if (n == 1) {
    matvec(w, x, y);
  } else {
    matmul_q8(kernels(), w, x, n, y);
  }
}

void matmul_multi(const Product* products, int64_t count, const float* x, int64_t n) {
  if (count <= 0 || n <= 0) return;
  const int64_t cols = products[0].w.cols;
  bool any_quantized = false, all_quantized = true;
  int64_t rows = 0;
  for (int64_t i = 0; i < count; ++i) {
    const Weights& w = products[i].w;
    check_weights(w, "matmul_multi");
    if (w.cols != cols)
      fail(Errc::kInvalidArgument, "matmul_multi: product {} has {} columns, product 0 has {}", i, w.cols, cols);
    any_quantized |= quantized(w.type);
    all_quantized &= quantized(w.type);
    rows += w.rows;
  }
  const KernelTable& k = kernels();
  // Several tokens of float weights go through sgemm, which has its own threads: one call per matrix.
  // The routes are matmul's, so that the products round as separate matmul calls would.
  const bool batch_route = n == 1 || (all_quantized && n <= kMatvecBatchTokens);
  const bool int8_route = batch_route || (all_quantized && k.matmul_q8_preferred);
  if (!int8_route) {
    for (int64_t i = 0; i < count; ++i) matmul(products[i].w, x, n, products[i].y);
    return;
  }
  QuantizedActivations q{};
  if (any_quantized) {
    q = activation_scratch(n, cols);
    quantize_rows(k, x, n, cols, q);
  }
  const Q8Matrix xq{q.qs, q.d, q.ds, cols};
  const auto scratch_bytes = batch_route ? size_t{0} : static_cast<size_t>(k.matmul_q8_scratch_bytes(cols));
  // Rows [r0, r1) of the matrices laid end to end.
  parallel_rows(rows, rows * cols * n, [&](int64_t r0, int64_t r1) {
    int64_t base = 0;
    for (int64_t i = 0; i < count && base < r1; ++i) {
      const Weights& w = products[i].w;
      const int64_t a = std::max(r0, base) - base, b = std::min(r1, base + w.rows) - base;
      base += w.rows;
      if (a >= b) continue;
      if (batch_route && quantized(w.type)) {
        k.matvec_q8(w.type, w.data, a, b, xq, n, products[i].y, w.rows);
      } else if (batch_route) {  // one token of float weights
        dot_rows(k, w, x, Q8Vector{q.qs, q.d, q.ds}, products[i].y, a, b);
      } else {
        thread_local Scratch scratch;
        k.matmul_q8(w.type, w.data, a, b, xq, n, products[i].y, w.rows, scratch.get(scratch_bytes));
      }
    }
  });
}

float dot_row(TensorType type, const void* row, const float* x, int64_t n) {
  check_weights(Weights{type, row, 1, n}, "dot_row");
  const KernelTable& k = kernels();
  switch (type) {
    case TensorType::kF32: return k.dot_f32(static_cast<const float*>(row), x, n);
    case TensorType::kF16: return k.dot_f16(static_cast<const uint16_t*>(row), x, n);
    case TensorType::kBF16: return k.dot_bf16(static_cast<const uint16_t*>(row), x, n);
    case TensorType::kQ8_0:
    case TensorType::kQ4_0: break;
  }
  const QuantizedActivations q = activation_scratch(1, n);
  k.quantize_q8(x, n, q.qs, q.d, q.ds);
  const Q8Vector xq{q.qs, q.d, q.ds};
  return type == TensorType::kQ8_0 ? k.dot_q8_0(static_cast<const BlockQ8_0*>(row), xq, n)
                                   : k.dot_q4_0(static_cast<const BlockQ4_0*>(row), xq, n);
}

void f32_to_f16_row(const float* x, uint16_t* y, int64_t n) { kernels().f32_to_f16(x, y, n); }
void f16_to_f32_row(const uint16_t* x, float* y, int64_t n) { kernels().row_to_f32(TensorType::kF16, x, y, n); }
float dot_f32(const float* a, const float* b, int64_t n) { return kernels().dot_f32(a, b, n); }

static_assert(kScanRows == kScanGroupRows);

void scan_u4(const uint8_t* codes, int64_t groups, const int8_t* q, int64_t dim, int32_t* sums) {
  RAG_ASSERT(groups >= 0 && dim > 0 && dim % 8 == 0);
  kernels().scan_u4(codes, groups, q, dim, sums);
}

void pack_u4_row(const uint8_t* row_codes, int64_t dim, int64_t row_in_group, uint8_t* group) {
  RAG_ASSERT(dim % 8 == 0 && row_in_group >= 0 && row_in_group < kScanGroupRows);
  for (int64_t m = 0; m < dim / 8; ++m)
    for (int64_t b = 0; b < 4; ++b)
      group[m * 64 + 4 * row_in_group + b] =
          static_cast<uint8_t>((row_codes[8 * m + b] & 0x0F) | (row_codes[8 * m + 4 + b] & 0x0F) << 4);
}
void axpy(float alpha, const float* x, float* y, int64_t n) { kernels().axpy(alpha, x, y, n); }
void attention_block(const AttentionBlock& a) {
  RAG_ASSERT(a.rows >= 0 && a.head_dim > 0 && a.ld >= a.rows && a.keys >= 1 && a.keys <= kAttentionBlockKeys);
  if (a.rows == 0) return;
  if (a.q_pairs) {
    RAG_ASSERT(attention_bf16_available(a.head_dim));
    kernels().attention_block_bf16(a.rows, a.head_dim, a.ld, a.q_pairs, a.k, a.v, a.kv_stride, a.keys, a.visible,
                                   a.max, a.sum, a.out_t);
    return;
  }
  kernels().attention_block(a.rows, a.head_dim, a.ld, a.q_t, a.k, a.v, a.kv_stride, a.keys, a.visible, a.max,
                            a.sum, a.out_t);
}

bool attention_bf16_available(int64_t head_dim) {
  // CPUID leaf 7, sub-leaf 1, EAX bit 5: AVX512_BF16 (some AVX-512 CPUs, e.g. Ice Lake, lack it).
  static const bool cpu_bf16 = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) != 0 && (eax & (1u << 5)) != 0;
  }();
  return cpu_bf16 && kernels().attention_block_bf16 != nullptr && head_dim > 0 && head_dim % 2 == 0 &&
         head_dim <= kAttentionBf16MaxHeadDim;
}

void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps) {
  kernels().rms_norm(x, weight, y, n, eps);
}
void layer_norm(const float* x, const float* weight, const float* bias, float* y, int64_t n, float eps) {
  kernels().layer_norm(x, weight, bias, y, n, eps);
}
void softmax(float* x, int64_t n) { kernels().softmax(x, n); }
void silu(const float* x, float* y, int64_t n) { kernels().silu(x, y, n); }
void swiglu(const float* gate, const float* up, float* y, int64_t n) { kernels().swiglu(gate, up, y, n); }
void gelu(const float* x, float* y, int64_t n) { kernels().gelu(x, y, n); }
void gelu_tanh(const float* x, float* y, int64_t n) { kernels().gelu_tanh(x, y, n); }
void add(const float* a, const float* b, float* y, int64_t n) { kernels().add(a, b, y, n); }
void mul(const float* a, const float* b, float* y, int64_t n) { kernels().mul(a, b, y, n); }
void scale(const float* x, float s, float* y, int64_t n) { kernels().scale(x, s, y, n); }

}  // namespace rag::nn
