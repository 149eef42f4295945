// Private to nn/kernels*.cpp: the table of kernels one SIMD level provides. kernels.cpp owns dispatch,
// threading and argument checks; the variants only compute, over the ranges they are given.
//
// This header is included by files compiled with -mavx2 or -mavx512*: it must declare only (no inline
// functions, no templates), so that no ISA-specific copy of a shared inline function can reach the linker.
#pragma once

#include <cstdint>

#include "nn/tensor.h"

namespace rag::nn {

// Activations in int8 form, one vector of n values (n a multiple of 32), blocks b = i / 32:
//   qs[i]  int8, x[i] ≈ d[b] * qs[i]; d[b] = max|x| over the block / 127 (0 for an all-zero block),
//          qs[i] = x[i] / d[b] rounded half to even, so qs is in [-127, 127]
//   ds[b]  d[b] * Σ qs over block b. It folds a weight zero offset o out of the inner loop:
//          Σ d_w (q_w - o) d_x q_x = d_w d_x Σ q_w q_x - o d_w ds, so Q4_0 nibbles (o = 8) and Q8_0 values
//          shifted to unsigned (o = 128, for vpdpbusd) multiply as they are.
struct Q8Vector {
  const int8_t* qs;
  const float* d;
  const float* ds;
};

// n activation vectors of k values, vector t at qs + t * k and d, ds + t * (k / 32).
struct Q8Matrix {
  const int8_t* qs;
  const float* d;
  const float* ds;
  int64_t k;
};

struct KernelTable {
  const char* name;

  // One weight row of n elements against x (float or int8 form).
  float (*dot_f32)(const float* w, const float* x, int64_t n);
  float (*dot_f16)(const uint16_t* w, const float* x, int64_t n);
  float (*dot_bf16)(const uint16_t* w, const float* x, int64_t n);
  float (*dot_q8_0)(const BlockQ8_0* w, Q8Vector x, int64_t n);
  float (*dot_q4_0)(const BlockQ4_0* w, Q8Vector x, int64_t n);

  // x (n values) to int8 form: qs n values, d and ds n / 32 each.
  void (*quantize_q8)(const float* x, int64_t n, int8_t* qs, float* d, float* ds);
  // One row of n elements of a weight type to float (F16, BF16, Q8_0, Q4_0; F32 is copied).
  void (*row_to_f32)(TensorType type, const void* row, float* y, int64_t n);
  // nn::f32_to_f16_row (kernels.h).
  void (*f32_to_f16)(const float* x, uint16_t* y, int64_t n);

  // Int8 product of weight rows [r0, r1) (Q8_0 or Q4_0, `cols` = x.k) with n quantized activation
  // vectors: y[t * ldy + r] for t in [0, n). `scratch` holds matmul_q8_scratch_bytes(cols) bytes, 64-byte
  // aligned, private to the calling thread.
  void (*matmul_q8)(TensorType type, const void* w, int64_t r0, int64_t r1, Q8Matrix x, int64_t n,
                    float* y, int64_t ldy, void* scratch);
  int64_t (*matmul_q8_scratch_bytes)(int64_t cols);
  // Whether matmul_q8 beats converting to F32 for sgemm, so that matmul should take it.
  bool matmul_q8_preferred;
  // The same product as n matvecs: y[t * ldy + r] for rows [r0, r1) and t in [0, n), each bit for bit what
  // dot_q8_0 / dot_q4_0 give for that row and token, but each weight row is loaded once for all n tokens
  // (batched decode: a few tokens, memory-bound like one).
  void (*matvec_q8)(TensorType type, const void* w, int64_t r0, int64_t r1, Q8Matrix x, int64_t n, float* y,
                    int64_t ldy);

  void (*rms_norm)(const float* x, const float* weight, float* y, int64_t n, float eps);
  void (*layer_norm)(const float* x, const float* weight, const float* bias, float* y, int64_t n, float eps);
  void (*softmax)(float* x, int64_t n);
  void (*silu)(const float* x, float* y, int64_t n);
  void (*swiglu)(const float* gate, const float* up, float* y, int64_t n);
  void (*gelu)(const float* x, float* y, int64_t n);
  void (*gelu_tanh)(const float* x, float* y, int64_t n);
  void (*add)(const float* a, const float* b, float* y, int64_t n);
  void (*mul)(const float* a, const float* b, float* y, int64_t n);
  void (*scale)(const float* x, float s, float* y, int64_t n);
  void (*axpy)(float alpha, const float* x, float* y, int64_t n);

  // nn::attention_block (kernels.h) with its fields as arguments; keys ≤ kAttentionBlockKeys (16).
  void (*attention_block)(int64_t rows, int64_t head_dim, int64_t ld, const float* q_t, const float* k,
                          const float* v, int64_t kv_stride, int64_t keys, const int32_t* visible, float* max,
                          float* sum, float* out_t);
  // The same with BF16 products, queries as q_pairs (kernels.h); null where the level has none. kernels.cpp
  // calls it only when the CPU has AVX512_BF16 and head_dim is even and at most kAttentionBf16MaxHeadDim.
  void (*attention_block_bf16)(int64_t rows, int64_t head_dim, int64_t ld, const uint32_t* q_pairs,
                               const float* k, const float* v, int64_t kv_stride, int64_t keys,
                               const int32_t* visible, float* max, float* sum, float* out_t);

  // nn::scan_u4 (kernels.h), over whole groups of kScanRows rows.
  void (*scan_u4)(const uint8_t* codes, int64_t groups, const int8_t* q, int64_t dim, int32_t* sums);
};

// kernels.h's kScanGroupRows (which this header cannot include: see the top).
constexpr int64_t kScanRows = 16;

// The BF16 attention kernel converts a block's K and V into buffers on its stack sized for this head_dim.
constexpr int64_t kAttentionBf16MaxHeadDim = 256;

extern const KernelTable kPortableKernels;
extern const KernelTable kAvx2Kernels;     // AVX2, FMA, F16C
extern const KernelTable kAvx512Kernels;   // AVX-512 F, BW, VL, VNNI (plus FMA, F16C)

}  // namespace rag::nn
