// Scalar kernels: the fallback for CPUs without AVX2 and the reference the SIMD variants are tested
// against. Written for clarity; the compiler may vectorize them with the baseline ISA (SSE2).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "nn/kernels-impl.h"

namespace rag::nn {
namespace {

float dot_f32(const float* w, const float* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += w[i] * x[i];
  return sum;
}

float dot_f16(const uint16_t* w, const float* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += f16_to_f32(w[i]) * x[i];
  return sum;
}

float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += bf16_to_f32(w[i]) * x[i];
  return sum;
}

float dot_q8_0(const BlockQ8_0* w, Q8Vector x, int64_t n) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < kQuantBlock; ++j) isum += w[b].qs[j] * x.qs[b * kQuantBlock + j];
    sum += f16_to_f32(w[b].d) * x.d[b] * static_cast<float>(isum);
  }
  return sum;
}

float dot_q4_0(const BlockQ4_0* w, Q8Vector x, int64_t n) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const int8_t* xq = x.qs + b * kQuantBlock;
    int32_t isum = 0;
    for (int j = 0; j < kQuantBlock / 2; ++j) {
      isum += ((w[b].qs[j] & 0x0F) - 8) * xq[j];
      isum += ((w[b].qs[j] >> 4) - 8) * xq[j + kQuantBlock / 2];
    }
    sum += f16_to_f32(w[b].d) * x.d[b] * static_cast<float>(isum);
  }
  return sum;
}

void quantize_q8(const float* x, int64_t n, int8_t* qs, float* d, float* ds) {
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float* xb = x + b * kQuantBlock;
    float amax = 0.0f;
    for (int j = 0; j < kQuantBlock; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float scale = amax / 127.0f;
    const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < kQuantBlock; ++j) {
      // nearbyint rounds half to even in the default mode, like cvtps2dq in the SIMD variants.
      const int32_t q = static_cast<int32_t>(std::nearbyint(xb[j] * inverse));
      qs[b * kQuantBlock + j] = static_cast<int8_t>(q);
      sum += q;
    }
    d[b] = scale;
    ds[b] = scale * static_cast<float>(sum);
  }
}

void row_to_f32(TensorType type, const void* row, float* y, int64_t n) {
  if (type == TensorType::kF32) {
    std::memcpy(y, row, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  dequantize_row(type, row, y, n);
}

void f32_to_f16_saturating(const float* x, uint16_t* y, int64_t n) {
  constexpr float kHalfMax = 65504.0f;
  // std::clamp would turn NaN into a bound; NaN stays NaN.
  for (int64_t i = 0; i < n; ++i)
    y[i] = f32_to_f16(x[i] > kHalfMax ? kHalfMax : x[i] < -kHalfMax ? -kHalfMax : x[i]);
}

void matmul_q8(TensorType type, const void* w, int64_t r0, int64_t r1, Q8Matrix x, int64_t n, float* y,
               int64_t ldy, void* scratch) {
  const int64_t k = x.k;
  const size_t stride = row_bytes(type, k);
  for (int64_t r = r0; r < r1; ++r) {
    const void* row = static_cast<const uint8_t*>(w) + r * stride;
    for (int64_t t = 0; t < n; ++t) {
      const Q8Vector xt{x.qs + t * k, x.d + t * (k / kQuantBlock), x.ds + t * (k / kQuantBlock)};
      y[t * ldy + r] = type == TensorType::kQ8_0 ? dot_q8_0(static_cast<const BlockQ8_0*>(row), xt, k)
                                                 : dot_q4_0(static_cast<const BlockQ4_0*>(row), xt, k);
    }
  }
}

int64_t matmul_q8_scratch_bytes(int64_t cols) { return 0; }

// Row by row, every token: a weight row stays in L1 while the tokens meet it.
void matvec_q8(TensorType type, const void* w, int64_t r0, int64_t r1, Q8Matrix x, int64_t n, float* y, int64_t ldy) {
  matmul_q8(type, w, r0, r1, x, n, y, ldy, nullptr);
}

void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i] * x[i];
  const float inverse = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inverse * weight[i];
}

void layer_norm(const float* x, const float* weight, const float* bias, float* y, int64_t n, float eps) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const float mean = sum / static_cast<float>(n);
  float sum_sq = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum_sq += (x[i] - mean) * (x[i] - mean);
  const float inverse = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * inverse * weight[i] + bias[i];
}

void softmax(float* x, int64_t n) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max = std::fmax(max, x[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inverse = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inverse;
}

void silu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void gelu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * static_cast<float>(M_SQRT1_2)));
}

void gelu_tanh(const float* x, float* y, int64_t n) {
  const float k = std::sqrt(2.0f / static_cast<float>(M_PI));
  for (int64_t i = 0; i < n; ++i) {
    y[i] = 0.5f * x[i] * (1.0f + std::tanh(k * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
  }
}

void add(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void mul(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

void scale(const float* x, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
}

void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// Row by row, in the order the x86 kernels use for each lane (scores as a chain of fused multiply-adds over
// head_dim, then the block's maximum, then the rescaled output), which keeps the oracle in the tests simple.
void attention_block(int64_t rows, int64_t hd, int64_t ld, const float* q_t, const float* k, const float* v,
                     int64_t kv_stride, int64_t keys, const int32_t* visible, float* max, float* sum, float* out_t) {
  float s[16], p[16];
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t seen = visible[r];
    if (seen <= 0) continue;
    float m = max[r];
    for (int64_t j = 0; j < seen; ++j) {
      float acc = 0.0f;
      for (int64_t d = 0; d < hd; ++d) acc = std::fma(k[j * kv_stride + d], q_t[d * ld + r], acc);
      s[j] = acc;
      m = std::max(m, acc);
    }
    const float alpha = std::exp(max[r] - m);
    float l = sum[r] * alpha;
    for (int64_t j = 0; j < seen; ++j) {
      p[j] = std::exp(s[j] - m);
      l += p[j];
    }
    for (int64_t d = 0; d < hd; ++d) {
      float o = out_t[d * ld + r] * alpha;
      for (int64_t j = 0; j < seen; ++j) o = std::fma(v[j * kv_stride + d], p[j], o);
      out_t[d * ld + r] = o;
    }
    max[r] = m;
    sum[r] = l;
  }
}

void scan_u4(const uint8_t* codes, int64_t groups, const int8_t* q, int64_t dim, int32_t* sums) {
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* group = codes + g * 8 * dim;
    for (int64_t j = 0; j < kScanRows; ++j) {
      int32_t sum = 0;
      for (int64_t m = 0; m < dim / 8; ++m)
        for (int64_t b = 0; b < 4; ++b) {
          const uint8_t byte = group[m * 64 + 4 * j + b];
          sum += q[8 * m + b] * (byte & 0x0F) + q[8 * m + 4 + b] * (byte >> 4);
        }
      sums[g * kScanRows + j] = sum;
    }
  }
}

}  // namespace

const KernelTable kPortableKernels = {
    "portable", dot_f32,   dot_f16, dot_bf16, dot_q8_0, dot_q4_0,  quantize_q8, row_to_f32, f32_to_f16_saturating,
    matmul_q8,  matmul_q8_scratch_bytes, false, matvec_q8, rms_norm, layer_norm, softmax, silu, swiglu, gelu,
    gelu_tanh,  add,       mul,     scale,    axpy,     attention_block, nullptr, scan_u4,
};

}  // namespace rag::nn
