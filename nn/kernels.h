// Compute kernels for the encoder and the decoder: matrix-vector and matrix-matrix products over weights
// in their file layout (read in place, never dequantized copies of a model), and the element-wise helpers
// the models need. Each kernel exists in a portable version and in AVX2 and AVX-512 versions chosen once at
// run time from CPUID; RAG_SIMD=portable|avx2|avx512 caps the level.
//
// Layouts, fixed once for the whole library:
//   weights      ggml row-major: a matrix of `rows` rows of `cols` elements, row r starting at
//                data + r * row_bytes(type, cols) bytes (tensor.h gives each type's block layout).
//                A GGUF tensor with ne = {cols, rows} is such a matrix.
//   activations  row-major float: n vectors of k values, x[t * k + i].
//   products     matvec: y[r] = W[r] · x;  matmul: Y[t * rows + r] = W[r] · X[t]  (Y = X · Wᵀ, n × rows).
//
// Quantized weights (Q8_0, Q4_0) are multiplied as ggml does: the activations are quantized once per call to
// int8 blocks of 32 with one scale per block, and each weight block meets each activation block in an
// int8 × int8 dot product scaled by both block scales. F32, F16 and BF16 weights meet float activations.
//
// Threads: matvec and matmul use OpenMP across rows (static, contiguous ranges: each thread streams its own
// part of the weights); inside a caller's parallel region they run on the calling thread. F32, F16 and BF16
// matmul call OpenBLAS, which has its own threads: call matmul from outside parallel regions. No kernel
// throws inside a parallel region: arguments are checked before it starts.
#pragma once

#include <cstdint>
#include <string_view>

#include "nn/tensor.h"

namespace rag::nn {

// A weight matrix in place (not owned). For Q8_0 and Q4_0 `cols` is a multiple of 32.
struct Weights {
  TensorType type = TensorType::kF32;
  const void* data = nullptr;  // rows * row_bytes(type, cols) bytes
  int64_t rows = 0;            // output features
  int64_t cols = 0;            // input features (the length of the dot products)
};

// y[r] = W[r] · x for r in [0, rows): x has w.cols floats, y has w.rows. Throws Error(kInvalidArgument)
// when cols does not fit the type's blocks.
void matvec(const Weights& w, const float* x, float* y);

// Y = X · Wᵀ for n activation rows: X is n × w.cols, Y is n × w.rows (both row-major). Equals n calls of
// matvec within rounding (for Q8_0 and Q4_0 on the sgemm route, within the int8 rounding matvec gives the
// activations); faster for n > 1 (prefill, encoders, batched decode) because each weight block is loaded
// once per tile of tokens. n = 1 is a matvec.
void matmul(const Weights& w, const float* x, int64_t n, float* y);
// The two routes matmul chooses between for Q8_0 and Q4_0, public for tests and benchmarks:
//   matmul_int8         X quantized to int8 blocks once, int8 dot products with the weight blocks, as
//                       matvec does (a VNNI tile kernel at the AVX-512 level); Q8_0 and Q4_0 only.
//   matmul_dequantized  tiles of W converted to F32, then sgemm; what F16 and BF16 always take.
// matmul takes matmul_int8 at the AVX-512 level (a VNNI tile kernel, 4.6× faster than sgemm) and at the
// AVX2 level (row quads, and octets of Q4_0 rows transposed once for many tokens; kernels.cpp and
// kernels-x86.h have the figures),
// matmul_dequantized on the portable level.
void matmul_int8(const Weights& w, const float* x, int64_t n, float* y);
void matmul_dequantized(const Weights& w, const float* x, int64_t n, float* y);
// n matvecs at once (Q8_0 and Q4_0; other types loop over matvec): Y as matmul, and every value bit for bit
// what matvec gives for its row of X, while each weight row is read from memory once for all n. matmul
// takes it for up to kMatvecBatchTokens rows of X (batched decode: a few tokens stay memory-bound like one,
// where the tile kernel would repack every weight), so a decode batch rounds exactly as single decodes do.
void matvec_batch(const Weights& w, const float* x, int64_t n, float* y);
inline constexpr int64_t kMatvecBatchTokens = 32;

// Several products of the same activations, as a layer's Q, K and V or its MLP gate and up: Y_i = X · W_iᵀ
// for each product i (X is n × cols, all W_i have `cols` columns; Y_i is n × W_i.rows). Equals separate
// matmul calls (bit for bit, routes included), but the activations are quantized once and, for one token,
// a matvec batch or the int8 route, all rows of all matrices share one parallel region (a decode step
// otherwise pays a fork and join per matrix).
struct Product {
  Weights w;
  float* y = nullptr;
};
void matmul_multi(const Product* products, int64_t count, const float* x, int64_t n);

// Dot product of one weight row (`n` elements of `type`, in its block layout) with n floats. Quantized
// types quantize x to int8 blocks first, exactly as matvec does. For loops over few rows; use matvec for
// whole matrices.
float dot_row(TensorType type, const void* row, const float* x, int64_t n);

// n floats to IEEE half and back: the rows of an F16 KV cache. To half rounds to nearest even as
// f32_to_f16 does, except that values beyond the half range saturate to ±65504 instead of becoming ±Inf,
// so that one outlying key cannot turn a whole row of attention scores into NaN; NaN stays NaN.
void f32_to_f16_row(const float* x, uint16_t* y, int64_t n);
void f16_to_f32_row(const uint16_t* x, float* y, int64_t n);

// Float vectors, for attention: Σ a[i] b[i], and y += alpha * x.
float dot_f32(const float* a, const float* b, int64_t n);
void axpy(float alpha, const float* x, float* y, int64_t n);

// The vector index's quantized scan (index/vector-index.cpp): exact int32 sums of 4-bit codes (0-15)
// against int8 weights, rows in groups of kScanGroupRows laid out so that a 32-byte load holds four
// dimensions of eight rows, one row per 4-byte lane (a vpdpbusd then adds four products to each row):
//   group g is 8 * dim bytes; for dimensions [8m, 8m + 8) it holds 64 bytes whose byte 4j + b (j < 16)
//   carries dimension 8m + b of row j in its low nibble and dimension 8m + 4 + b in its high nibble.
//   sums[16g + j] = Σ_i q[i] * code(g, j, i)  for g < groups; dim is a multiple of 8.
inline constexpr int64_t kScanGroupRows = 16;
void scan_u4(const uint8_t* codes, int64_t groups, const int8_t* q, int64_t dim, int32_t* sums);
// Places one row's codes (dim values, 0-15) as row `row_in_group` of `group` (8 * dim bytes, that layout).
void pack_u4_row(const uint8_t* row_codes, int64_t dim, int64_t row_in_group, uint8_t* group);

// One step of attention with an online softmax (flash attention): `rows` query rows against up to
// kAttentionBlockKeys key and value rows, updating per row a running maximum score m, a running sum l of
// exp(score - m) and a running output O = Σ exp(score - m) v, so that a tile of queries meets each K and V
// row once and never holds more scores than one block's. For each row r seeing keys j < visible[r]:
//   s_j = q_r · k_j;  m' = max(m, max_j s_j);  α = exp(m - m');  l = α l + Σ_j exp(s_j - m');
//   O_r = α O_r + Σ_j exp(s_j - m') v_j;  m = m'
// Start every row with m = lowest float, l = 0, O = 0, call once per block in key order, then divide O_r
// by l. A row with visible 0 is left unchanged. Each row's result depends only on its own q, visible and
// state (never on which other rows share the call), so batching query rows does not change any of them.
// Queries and outputs are transposed (head_dim × rows, column r is row r, `ld` floats between the rows of
// the transposed matrix), so that the kernels run across query rows in their vector lanes.
struct AttentionBlock {
  int64_t rows = 0;
  int64_t head_dim = 0;
  int64_t ld = 0;                  // ≥ rows
  const float* q_t = nullptr;      // head_dim × ld; q_t[d * ld + r], already scaled by 1/√head_dim
  const float* k = nullptr;        // keys × head_dim, row j at k + j * kv_stride
  const float* v = nullptr;        // keys × head_dim, row j at v + j * kv_stride
  int64_t kv_stride = 0;
  int64_t keys = 0;                // 1 ≤ keys ≤ kAttentionBlockKeys
  const int32_t* visible = nullptr;   // per row, in [0, keys]: the causal mask within this block
  float* max = nullptr;            // per row: m
  float* sum = nullptr;            // per row: l
  float* out_t = nullptr;          // head_dim × ld: O transposed, out_t[d * ld + r]
  // Set (only where attention_bf16_available(head_dim)): the queries as pairs of bfloat16, q_t is unused,
  // and the kernel rounds K, V and the probabilities to bfloat16 too, multiplying pairs in one instruction
  // (vdpbf16ps) with float sums: twice the products per instruction, at BF16 precision (8 significant bits)
  // for every factor. Rounding is per element, so rows stay independent of their neighbours.
  //   q_pairs[i * ld + r] = bf16(q_t[2i][r]) | bf16(q_t[2i + 1][r]) << 16, i < head_dim / 2
  const uint32_t* q_pairs = nullptr;
};
inline constexpr int64_t kAttentionBlockKeys = 16;
// Query rows the x86 kernels take per pass through a block: a call with a multiple of it leaves no lane idle.
inline constexpr int64_t kAttentionRowLanes = 16;
// Query rows of one vector of the AVX2 kernel: a call whose rows are a multiple of it runs without masked
// loads and stores, which are slow on AMD (Zen 3, one core, bench/kernels BM_Attention over 2,000 keys:
// 7 rows 154-167 us, 8 rows 96-103). Callers pad a tile with rows whose visible is 0, which the kernels
// leave unchanged.
inline constexpr int64_t kAttentionRowVector = 8;
void attention_block(const AttentionBlock& block);
// Whether attention_block takes q_pairs for this head_dim at the current SIMD level: AVX-512 with
// AVX512_BF16 and an even head_dim of at most 256.
bool attention_bf16_available(int64_t head_dim);

// Element-wise helpers on float vectors of n values. Outputs may alias inputs.
//   rms_norm:   y = x / sqrt(mean(x²) + eps) * weight                      (Llama, Qwen2)
//   layer_norm: y = (x - mean) / sqrt(var + eps) * weight + bias          (BERT; var is the biased one)
void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps);
void layer_norm(const float* x, const float* weight, const float* bias, float* y, int64_t n, float eps);
void softmax(float* x, int64_t n);                           // in place, stable (subtracts the maximum)
void silu(const float* x, float* y, int64_t n);              // x * sigmoid(x)
void swiglu(const float* gate, const float* up, float* y, int64_t n);   // silu(gate) * up (Llama MLP)
void gelu(const float* x, float* y, int64_t n);              // x/2 * (1 + erf(x/√2)), as BERT
void gelu_tanh(const float* x, float* y, int64_t n);         // x/2 * (1 + tanh(√(2/π)(x + 0.044715x³)))
void add(const float* a, const float* b, float* y, int64_t n);
void mul(const float* a, const float* b, float* y, int64_t n);
void scale(const float* x, float s, float* y, int64_t n);

// Hands the calling thread's OpenMP worker threads back. libgomp keeps a pool of them behind every thread
// that ever ran a parallel region, for that thread's life, and once the pools' threads outnumber the cores
// every barrier in the process sleeps on a futex after a few spins instead of spinning: in rag bench gen a
// leftover pool cut the generator engine's one stream from 114 to 77 tok/s (Q4_0). For long-lived threads
// that compute now and then (request threads, a benchmark's main thread) so that the engine's team is the
// one left spinning; the next parallel region starts a new pool. Only the caller's pool goes (libgomp's
// gomp_pause_host); inside a parallel region nothing happens. False when the runtime kept the threads.
bool release_openmp_threads();

// The instruction set the kernels use. Chosen once, on first use: the best the CPU supports, capped by
// RAG_SIMD, logged once.
enum class SimdLevel { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

SimdLevel simd_level();             // the level in use
SimdLevel simd_level_supported();   // the best this CPU (and build) supports, ignoring RAG_SIMD
std::string_view simd_level_name(SimdLevel level);   // "portable", "avx2", "avx512"
// Switches the level for the whole process, for tests and benchmarks comparing levels; call it while no
// kernel runs. Throws Error(kUnsupported) when the CPU lacks `level`.
void set_simd_level(SimdLevel level);

}  // namespace rag::nn
