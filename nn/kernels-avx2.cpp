// The AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; see nn/CMakeLists.txt): the shared
// x86 body of kernels-x86.h with the vpmaddubsw int8 dot product, whose quad and octet kernels serve matvec
// and matmul alike.
#include "nn/kernels-x86.h"

namespace rag::nn {

const KernelTable kAvx2Kernels = {
    "avx2",          x86_dot_f32,        x86_dot_f16,        x86_dot_bf16,
    x86_dot_q8_0,    x86_dot_q4_0,       x86_quantize_q8,    x86_row_to_f32,     x86_f32_to_f16,
    x86_matmul_q8_rows, x86_matmul_q8_rows_scratch, true, x86_matvec_q8, x86_rms_norm, x86_layer_norm,
    x86_softmax,     x86_silu,           x86_swiglu,         x86_gelu,
    x86_gelu_tanh,   x86_add,            x86_mul,            x86_scale,
    x86_axpy,        x86_attention_block, nullptr, x86_scan_u4,
};

}  // namespace rag::nn
