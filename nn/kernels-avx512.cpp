// The AVX-512 kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mfma -mf16c; see
// nn/CMakeLists.txt): the shared x86 body of kernels-x86.h, whose int8 dot product becomes vpdpbusd here,
// plus a VNNI tile kernel for the int8 matmul.
//
// Tile kernel. A thread takes 16 weight rows at a time and repacks them (into its scratch) so that one
// 64-byte load holds the same 4 consecutive weights of all 16 rows:
//
//   packed[b][g][r][0..3]  unsigned bytes of row r, elements 32b + 4g .. 32b + 4g + 3  (b block, g = 0..7)
//                          Q8_0: q + 128 (o = 128);  Q4_0: the nibble, 0..15 (o = 8)
//   scales[b][r]           row r's block-b scale as f32; rows past the matrix are 0
//
// Then vpdpbusd of packed[b][g] with 4 bytes of one token broadcast to every lane adds 4 products to each
// row's lane, and 8 of them give 16 rows' complete block sums at once, without any horizontal reduction.
// The zero offset o leaves through the activations' ds (kernels-impl.h):
//   y[t][r] = Σ_b d_w[r][b] · (d_x[t][b] · Σ u_w q_x  −  o · ds[t][b])
// Eight tokens share each load of packed weights. Two things keep vpdpbusd, which shares its pipes with the
// FMAs, busy (bench/kernels BM_Matmul Q4_0 and Q8_0 4864×896, 512 tokens: 595-610 -> 660-670 GFLOP/s):
//   - a block's 8 products per token run as 4 chains of 2, added at the end (integer adds take other
//     pipes): one chain of 8 waited 8 latencies, and the waiting vpdpbusd filled the scheduler;
//   - o · ds comes from the scratch, computed for a step's tokens in one vector loop; in the inner loop its
//     scalar multiply and broadcast took the FMA pipes once per token and block.
#include "nn/kernels-x86.h"

// GCC 12 warns inside its own intrinsics (_mm512_cvtepi32_ps and others pass _mm512_undefined_*() through).
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace rag::nn {
namespace {

constexpr int kTileRows = 16;
constexpr int kTileTokens = 8;
constexpr int64_t kPackedBlockBytes = kQuantBlock * kTileRows;  // 8 groups × 16 rows × 4 bytes

// Tiles packed together: a group of 8 tokens then meets all of them while its activations sit in L1, so
// the activations stream from L2/L3 once per 64 rows rather than once per 16.
constexpr int64_t kGroupTiles = 4;

int64_t packed_tile_bytes(int64_t cols) {
  const int64_t blocks = cols / kQuantBlock;
  return blocks * (kPackedBlockBytes + kTileRows * static_cast<int64_t>(sizeof(float)));
}

// The packed tiles, then o · ds for one step's tokens (kTileTokens × blocks floats).
int64_t tile_scratch_bytes(int64_t cols) {
  return kGroupTiles * packed_tile_bytes(cols) + kTileTokens * (cols / kQuantBlock) * static_cast<int64_t>(sizeof(float));
}

// A token count as a type, to pick tile_tokens<T> from a generic lambda (no <type_traits> in ISA files).
template <int T>
struct Tokens {
  static constexpr int kCount = T;
};

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

// Repacks rows [r0, r0 + rows) (rows ≤ 16) into the layout above: per block a 16 × 8 dword transpose done
// with in-lane unpacks (a gather per group cost more than an 8-token product). Rows past `rows` read a
// zero block instead of memory and pack as zeros with scale 0; their outputs are masked off. The 16 scales
// of a block do come in one gather (the dword at each row's block start, its low half the scale): as 16
// two-byte stores read back as one vector, each block waited for the stores to land (no store forwarding
// from narrow stores to a wide load), half of a Q4_0 pack. bench/kernels BM_DecodeBatch tiles, n = 2,
// 4864×896, nearly all packing: Q4_0 280 -> 145 µs, Q8_0 210-225 -> 183 µs.
alignas(64) constexpr uint8_t kZeroBlock[64] = {};

void pack_tile(TensorType type, const uint8_t* w, int64_t stride, int64_t r0, int64_t rows, int64_t blocks,
               uint8_t* packed, float* scales) {
  const bool q8 = type == TensorType::kQ8_0;
  const int64_t block_bytes = q8 ? static_cast<int64_t>(sizeof(BlockQ8_0)) : static_cast<int64_t>(sizeof(BlockQ4_0));
  const uint8_t* row[kTileRows];
  int64_t step[kTileRows];
  for (int r = 0; r < kTileRows; ++r) {
    row[r] = r < rows ? w + (r0 + r) * stride : kZeroBlock;
    step[r] = r < rows ? block_bytes : 0;
  }
  // Byte offsets of the 16 rows as int32: 15 strides fit while a row is under 143 MB.
  const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(static_cast<int>(stride)));
  const auto valid = static_cast<__mmask16>((1u << rows) - 1);
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* at[kTileRows];
    for (int r = 0; r < kTileRows; ++r) at[r] = row[r] + b * step[r];
    const __m512i d = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, index, w + r0 * stride + b * block_bytes, 1);
    _mm512_store_ps(scales + b * kTileRows, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d)));
    auto* out = reinterpret_cast<__m512i*>(packed + b * kPackedBlockBytes);
    if (q8) {
      // z[i] = [row a_i | row b_i], a = 0..3, 8..11 and b = 4..7, 12..15, so that the lane shuffle at the end
      // leaves rows in natural order.
      __m512i z[8];
      for (int i = 0; i < 8; ++i) {
        const int a = i < 4 ? i : i + 4;
        const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at[a] + 2));
        const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at[a + 4] + 2));
        z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
      }
      __m512i t[8], u[8];
      for (int i = 0; i < 8; i += 4) {
        t[i + 0] = _mm512_unpacklo_epi32(z[i + 0], z[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(z[i + 0], z[i + 1]);
        t[i + 2] = _mm512_unpacklo_epi32(z[i + 2], z[i + 3]);
        t[i + 3] = _mm512_unpackhi_epi32(z[i + 2], z[i + 3]);
        u[i + 0] = _mm512_unpacklo_epi64(t[i + 0], t[i + 2]);  // dwords 0 (lanes 0, 2) and 4 (lanes 1, 3)
        u[i + 1] = _mm512_unpackhi_epi64(t[i + 0], t[i + 2]);  // 1 and 5
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);  // 2 and 6
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);  // 3 and 7
      }
      const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
      for (int g = 0; g < 4; ++g) {
        _mm512_store_si512(out + g, _mm512_xor_si512(_mm512_shuffle_i32x4(u[g], u[g + 4], 0x88), flip));
        _mm512_store_si512(out + g + 4, _mm512_xor_si512(_mm512_shuffle_i32x4(u[g], u[g + 4], 0xDD), flip));
      }
    } else {
      // z[i] = rows i, 4 + i, 8 + i, 12 + i (one per 128-bit lane); after a 4 × 4 transpose in each lane,
      // lane k holds rows 4k .. 4k + 3.
      __m512i z[4];
      for (int i = 0; i < 4; ++i) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(at[i] + 2)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(at[4 + i] + 2)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(at[8 + i] + 2)), 2);
        z[i] = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(at[12 + i] + 2)), 3);
      }
      const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
      const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
      const __m512i q[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                            _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
      const __m512i low = _mm512_set1_epi8(0x0F);
      for (int g = 0; g < 4; ++g) {
        _mm512_store_si512(out + g, _mm512_and_si512(q[g], low));
        _mm512_store_si512(out + g + 4, _mm512_and_si512(_mm512_srli_epi32(q[g], 4), low));
      }
    }
  }
}

// acc + vpdpbusd of w with the 4 bytes at x broadcast to every lane, as one instruction: GCC 12 emits the
// broadcast as a separate load, one more instruction per product for the front end. The tile kernel keeps
// the intrinsics: there it gained 1-2% in bench/kernels BM_Matmul but lost about 1% of bench/decoder's
// prefill over eight alternated pairs.
__attribute__((always_inline)) inline __m512i dpbusd_bcast(__m512i acc, __m512i w, const uint8_t* x) {
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(x)));
  return acc;
}

// Σ_i u[i] q[i] over one block: w[g] the 16 rows' bytes 4g .. 4g + 3 as unsigned, xq the token's 32 int8
// values, for the tile kernel. Four chains of two vpdpbusd rather than one of eight (see the top of the file;
// the matvec kernels, busy transposing, gained nothing from it: Q8_0 8 tokens lost 4%); integer sums are
// exact, so the grouping changes no bit.
__attribute__((always_inline)) inline __m512i block_sum(const __m512i* w, const uint8_t* xq) {
  __m512i s[4];
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g)
    s[g] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[g], _mm512_set1_epi32(static_cast<int>(load_u32(xq + 4 * g))));
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g)
    s[g] = _mm512_dpbusd_epi32(s[g], w[g + 4], _mm512_set1_epi32(static_cast<int>(load_u32(xq + 16 + 4 * g))));
  return _mm512_add_epi32(_mm512_add_epi32(s[0], s[1]), _mm512_add_epi32(s[2], s[3]));
}

// y[t][r0 .. r0 + 16) for T tokens from t0, over a packed tile; `rows` masks the store of a partial tile.
// ods[j * blocks + b] is o · ds of token t0 + j's block b.
template <int T>
void tile_tokens(const uint8_t* packed, const float* scales, int64_t blocks, Q8Matrix x, int64_t t0, const float* ods,
                 float* y, int64_t ldy, int64_t r0, __mmask16 rows) {
  __m512 acc[T];
#pragma GCC unroll 8
  for (int j = 0; j < T; ++j) acc[j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const auto* wp = reinterpret_cast<const __m512i*>(packed + b * kPackedBlockBytes);
    __m512i w[8];
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) w[g] = _mm512_load_si512(wp + g);
    const __m512 dw = _mm512_load_ps(scales + b * kTileRows);
#pragma GCC unroll 8
    for (int j = 0; j < T; ++j) {
      const int64_t t = t0 + j;
      const __m512i sum = block_sum(w, reinterpret_cast<const uint8_t*>(x.qs + t * x.k + b * kQuantBlock));
      const __m512 block = _mm512_fmsub_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(x.d[t * blocks + b]),
                                           _mm512_set1_ps(ods[j * blocks + b]));
      acc[j] = _mm512_fmadd_ps(dw, block, acc[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < T; ++j) _mm512_mask_storeu_ps(y + (t0 + j) * ldy + r0, rows, acc[j]);
}

void avx512_matmul_q8(TensorType type, const void* w, int64_t r0, int64_t r1, Q8Matrix x, int64_t n, float* y,
                      int64_t ldy, void* scratch) {
  const int64_t blocks = x.k / kQuantBlock;
  const int64_t stride =
      blocks * static_cast<int64_t>(type == TensorType::kQ8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0));
  const float offset = type == TensorType::kQ8_0 ? 128.0f : 8.0f;
  const int64_t tile_bytes = packed_tile_bytes(x.k);
  float* ods = reinterpret_cast<float*>(static_cast<uint8_t*>(scratch) + kGroupTiles * tile_bytes);
  for (int64_t group = r0; group < r1; group += kGroupTiles * kTileRows) {
    const int64_t group_end = group + kGroupTiles * kTileRows < r1 ? group + kGroupTiles * kTileRows : r1;
    const int64_t tiles = (group_end - group + kTileRows - 1) / kTileRows;
    for (int64_t i = 0; i < tiles; ++i) {
      const int64_t r = group + i * kTileRows;
      auto* packed = static_cast<uint8_t*>(scratch) + i * tile_bytes;
      const int64_t rows = group_end - r < kTileRows ? group_end - r : kTileRows;
      pack_tile(type, static_cast<const uint8_t*>(w), stride, r, rows, blocks, packed,
                reinterpret_cast<float*>(packed + blocks * kPackedBlockBytes));
    }
    auto for_tiles = [&](auto tokens, int64_t t) {
      constexpr int kTokens = decltype(tokens)::kCount;
      for (int64_t i = 0; i < kTokens * blocks; ++i) ods[i] = offset * x.ds[t * blocks + i];
      for (int64_t i = 0; i < tiles; ++i) {
        const int64_t r = group + i * kTileRows;
        const int64_t rows = group_end - r < kTileRows ? group_end - r : kTileRows;
        const auto* packed = static_cast<const uint8_t*>(scratch) + i * tile_bytes;
        tile_tokens<kTokens>(packed, reinterpret_cast<const float*>(packed + blocks * kPackedBlockBytes), blocks, x, t,
                             ods, y, ldy, r, static_cast<__mmask16>((1u << rows) - 1));
      }
    };
    // The next group's weight rows (contiguous bytes) are prefetched into L2 while this group computes,
    // spread evenly over its token steps, so that packing them does not wait on memory: it reads every
    // weight of the matrix once per call, a fixed cost that weighed most in short passes (a prefix-cache
    // hit's 100 tokens).
    const int64_t next_end = group_end + kGroupTiles * kTileRows < r1 ? group_end + kGroupTiles * kTileRows : r1;
    const char* next = static_cast<const char*>(w) + group_end * stride;
    const int64_t next_bytes = (next_end - group_end) * stride;
    const int64_t steps = (n + kTileTokens - 1) / kTileTokens;
    const int64_t step_bytes = (next_bytes / 64 / steps + 1) * 64;
    int64_t fetched = 0;
    auto prefetch_step = [&] {
      const int64_t until = fetched + step_bytes < next_bytes ? fetched + step_bytes : next_bytes;
      for (; fetched < until; fetched += 64) _mm_prefetch(next + fetched, _MM_HINT_T1);
    };
    int64_t t = 0;
    for (; t + kTileTokens <= n; t += kTileTokens) {
      prefetch_step();
      for_tiles(Tokens<kTileTokens>{}, t);
    }
    for (; t + 4 <= n; t += 4) {
      prefetch_step();
      for_tiles(Tokens<4>{}, t);
    }
    for (; t < n; ++t) {
      prefetch_step();
      for_tiles(Tokens<1>{}, t);
    }
  }
}

// Flash attention with BF16 products (nn::attention_block with q_pairs set), for CPUs with AVX512_BF16:
// vdpbf16ps multiplies two pairs of bfloat16 per float lane and adds both products to the lane, twice the
// multiply-adds of an FMA per instruction. The lanes are 16 query rows, as in x86_attention_block:
//   scores  S_j = Σ_i q_pairs[i] · (k_j[2i], k_j[2i + 1]) broadcast: a pair of one key's head values;
//   output  Oᵀ[c] = α Oᵀ[c] + Σ_i (p_2i, p_2i+1) · (v_2i[c], v_2i+1[c]) broadcast: a pair of keys.
// So the call first rounds the block's K rows to BF16 (their natural order is already pairs along
// head_dim) and V to pairs along keys (a 16-bit interleave of two rows), once for all its rows; the
// probabilities are rounded after the softmax, which stays in float. GCC 12's -mavx512* flags of this file
// lack BF16, so these functions alone carry the target; kernels.cpp calls them only when CPUID has it.
#define RAG_TARGET_BF16 __attribute__((target("avx512bf16")))

// Lane i: bf16(lo[i]) in the low half, bf16(hi[i]) in the high half (rounded to nearest even).
RAG_TARGET_BF16 inline __m512i bf16_pairs(__m512 lo, __m512 hi) {
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                              22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(interleave, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
}

inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}

// exp(x) for the probabilities of the BF16 kernel, which rounds them to 8 significant bits: a degree-4
// polynomial on x - n ln 2 (relative error below 1e-4, far under BF16's 2^-9) and vscalefps for the 2^n.
// Below -87.3 the result is 0 exactly (masked scores are -inf), as exp_ps.
inline __m512 exp_ps512(__m512 x) {
  const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 24.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(keep, p, n);
}

// acc + vdpbf16ps of a with the pair at p broadcast to every lane, as one instruction (see dpbusd_bcast).
RAG_TARGET_BF16 __attribute__((always_inline)) inline __m512 dpbf16_bcast(__m512 acc, __m512bh a, const uint32_t* p) {
  asm("vdpbf16ps %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "m"(*p));
  return acc;
}

// Scores of keys [j0, j0 + 8) for the 16 lanes of q (rows r0.. of q_pairs), into s.
RAG_TARGET_BF16 inline void bf16_scores8(const uint32_t* q, int64_t ld, __mmask16 lanes, const uint32_t* kp,
                                         int64_t kp_stride, int64_t pairs, __m512* s) {
  __m512 acc[8];
#pragma GCC unroll 8
  for (int g = 0; g < 8; ++g) acc[g] = _mm512_setzero_ps();
  for (int64_t i = 0; i < pairs; ++i) {
    const __m512bh qv = reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi32(lanes, q + i * ld));
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g)
      acc[g] = dpbf16_bcast(acc[g], qv, kp + g * kp_stride + i);
  }
#pragma GCC unroll 8
  for (int g = 0; g < 8; ++g) s[g] = acc[g];
}

RAG_TARGET_BF16 void avx512_attention_block_bf16(int64_t rows, int64_t hd, int64_t ld, const uint32_t* q_pairs,
                                                 const float* k, const float* v, int64_t kv_stride, int64_t keys,
                                                 const int32_t* visible, float* max, float* sum, float* out_t) {
  constexpr int64_t kKeys = 16, kMaxDim = kAttentionBf16MaxHeadDim;
  const int64_t pairs = hd / 2, key_pairs = (keys + 1) / 2;
  // kp[j][i]: key j's values 2i, 2i + 1; keys past `keys` (up to the next 8) are zero, so that the scores
  // of a partial group of 8 stay finite before the mask removes them.
  alignas(64) uint32_t kp[kKeys][kMaxDim / 2];
  // vp[i][c]: column c of keys 2i and 2i + 1 (a missing odd key is zero).
  alignas(64) uint32_t vp[kKeys / 2][kMaxDim];
  for (int64_t j = 0; j < (keys + 7) / 8 * 8; ++j) {
    for (int64_t d = 0; d < hd; d += 32) {
      __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
      if (j < keys) {
        lo = _mm512_maskz_loadu_ps(first_lanes(hd - d), k + j * kv_stride + d);
        hi = _mm512_maskz_loadu_ps(first_lanes(hd - d - 16 > 0 ? hd - d - 16 : 0), k + j * kv_stride + d + 16);
      }
      _mm512_store_si512(kp[j] + d / 2, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
    }
  }
  for (int64_t i = 0; i < key_pairs; ++i) {
    for (int64_t c = 0; c < hd; c += 16) {
      const __mmask16 m = first_lanes(hd - c);
      const __m512 even = _mm512_maskz_loadu_ps(m, v + 2 * i * kv_stride + c);
      const __m512 odd = 2 * i + 1 < keys ? _mm512_maskz_loadu_ps(m, v + (2 * i + 1) * kv_stride + c) : _mm512_setzero_ps();
      _mm512_store_si512(vp[i] + c, bf16_pairs(even, odd));
    }
  }

  const __m512 minus_inf = _mm512_set1_ps(-__builtin_inff());
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const __mmask16 lanes = first_lanes(rows - r0);
    const __m512i vis = _mm512_maskz_loadu_epi32(lanes, visible + r0);
    if (_mm512_cmpgt_epi32_mask(vis, _mm512_setzero_si512()) == 0) continue;  // no row here sees a key

    __m512 s[kKeys];
    for (int64_t j = 0; j < keys; j += 8) bf16_scores8(q_pairs + r0, ld, lanes, kp[j], kMaxDim / 2, pairs, s + j);

    const __m512 old_max = _mm512_maskz_loadu_ps(lanes, max + r0);
    __m512 new_max = old_max;
    for (int64_t j = 0; j < keys; ++j) {
      const __mmask16 seen = _mm512_cmpgt_epi32_mask(vis, _mm512_set1_epi32(static_cast<int>(j)));
      s[j] = _mm512_mask_blend_ps(seen, minus_inf, s[j]);
      new_max = _mm512_max_ps(new_max, s[j]);
    }
    // Where no row's maximum moved, α is exactly 1 (exp_ps512(0) is 1.0f) and the rescale of O and l is
    // skipped, bits unchanged: past a sequence's first blocks most blocks raise no maximum (bench/kernels
    // BM_Attention bf16, 224 rows × 2000 keys: 0.753-0.763 -> 0.739-0.747 ms on random scores).
    const bool moved = _mm512_mask_cmp_ps_mask(lanes, new_max, old_max, _CMP_NEQ_UQ) != 0;
    const __m512 alpha = moved ? exp_ps512(_mm512_sub_ps(old_max, new_max)) : _mm512_set1_ps(1.0f);
    __m512 l = _mm512_maskz_loadu_ps(lanes, sum + r0);
    if (moved) l = _mm512_mul_ps(l, alpha);
    for (int64_t j = 0; j < keys; ++j) {
      s[j] = exp_ps512(_mm512_sub_ps(s[j], new_max));
      l = _mm512_add_ps(l, s[j]);
    }
    _mm512_mask_storeu_ps(max + r0, lanes, new_max);
    _mm512_mask_storeu_ps(sum + r0, lanes, l);
    __m512i p[kKeys / 2];
    for (int64_t i = 0; i < key_pairs; ++i)
      p[i] = bf16_pairs(s[2 * i], 2 * i + 1 < keys ? s[2 * i + 1] : _mm512_setzero_ps());

    int64_t c = 0;
    for (; c + 8 <= hd; c += 8) {
      __m512 acc[8];
#pragma GCC unroll 8
      for (int u = 0; u < 8; ++u) {
        acc[u] = _mm512_maskz_loadu_ps(lanes, out_t + (c + u) * ld + r0);
        if (moved) acc[u] = _mm512_mul_ps(acc[u], alpha);
      }
      for (int64_t i = 0; i < key_pairs; ++i) {
        const __m512bh pi = reinterpret_cast<__m512bh>(p[i]);
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u)
          acc[u] = dpbf16_bcast(acc[u], pi, &vp[i][c + u]);
      }
#pragma GCC unroll 8
      for (int u = 0; u < 8; ++u) _mm512_mask_storeu_ps(out_t + (c + u) * ld + r0, lanes, acc[u]);
    }
    for (; c < hd; ++c) {
      __m512 acc = _mm512_maskz_loadu_ps(lanes, out_t + c * ld + r0);
      if (moved) acc = _mm512_mul_ps(acc, alpha);
      for (int64_t i = 0; i < key_pairs; ++i)
        acc = _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(p[i]),
                               reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(vp[i][c]))));
      _mm512_mask_storeu_ps(out_t + c * ld + r0, lanes, acc);
    }
  }
}

// Matvec products (matvec, matvec_batch, dot_row): the tile kernel's arithmetic without its scratch. A group
// of 16 rows is transposed block by block straight into registers, w[g] lane r = elements 4g .. 4g + 3 of
// row r as unsigned bytes (the packed layout at the top of this file), and up to 8 tokens meet it there:
// 8 vpdpbusd give 16 rows' block sums per token, then a conversion and two FMAs. The dot-product form this
// replaced (one row against a token, two blocks per 512-bit step) spent a conversion, a permute and an FMA
// on every 64 products; one core, CPU time per decode pass of Qwen2.5-0.5B Q8_0 (bench/decoder), 8 tokens
// went from 69 to 34 ms, one token stayed at 17-18 ms.
//
// Reading 16 rows at once defeats the hardware prefetcher (34-byte steps in 16 places): one token ran at a
// third of the dot form's speed until each block also prefetched its share of the next group (a contiguous
// stretch) into L2. Into L1 it evicted the current group's lines before their use.
//
// A token's arithmetic, y[t][r] = Σ_b fma(d_w, cvt(Σ u q) · d_x − o · ds, acc), is the same instruction
// sequence whatever the group's token count and whichever lane its row has (integer sums are exact in any
// order), and equals the tile kernel's: matvec_batch and matmul_int8 give the bits of single matvecs, so the
// engine's batched greedy decode equals one stream's.
constexpr int kMatvecRows = 16;
constexpr int kMatvecTokens = 8;

// Block b of a row group (`cur` = row 0's block b, `off` = the rows' byte offsets from row 0) as w[0..7];
// returns the rows' scales. The scales come in 16 two-byte loads: a vpgatherdd of them made 8-token
// groups 12% slower (bench/kernels BM_DecodeBatch, Q4_0 4864×896: 168 → 148 µs without it).
template <typename Block>
__attribute__((always_inline)) inline __m512 transposed_block(const uint8_t* cur, const int64_t* off, __m512i* w) {
  alignas(32) uint16_t d[kMatvecRows];
#pragma GCC unroll 16
  for (int r = 0; r < kMatvecRows; ++r) __builtin_memcpy(&d[r], cur + off[r], sizeof(uint16_t));
  const __m256i dh = _mm256_load_si256(reinterpret_cast<const __m256i*>(d));
  if constexpr (sizeof(Block) == sizeof(BlockQ8_0)) {
    __m512i z[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const int a = i < 4 ? i : i + 4;
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cur + off[a] + 2));
      const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cur + off[a + 4] + 2));
      z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    __m512i u[8];
#pragma GCC unroll 2
    for (int i = 0; i < 8; i += 4) {
      const __m512i t0 = _mm512_unpacklo_epi32(z[i + 0], z[i + 1]), t1 = _mm512_unpackhi_epi32(z[i + 0], z[i + 1]);
      const __m512i t2 = _mm512_unpacklo_epi32(z[i + 2], z[i + 3]), t3 = _mm512_unpackhi_epi32(z[i + 2], z[i + 3]);
      u[i + 0] = _mm512_unpacklo_epi64(t0, t2);
      u[i + 1] = _mm512_unpackhi_epi64(t0, t2);
      u[i + 2] = _mm512_unpacklo_epi64(t1, t3);
      u[i + 3] = _mm512_unpackhi_epi64(t1, t3);
    }
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      w[g] = _mm512_xor_si512(_mm512_shuffle_i32x4(u[g], u[g + 4], 0x88), flip);
      w[g + 4] = _mm512_xor_si512(_mm512_shuffle_i32x4(u[g], u[g + 4], 0xDD), flip);
    }
  } else {
    __m512i z[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + off[i] + 2)));
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + off[4 + i] + 2)), 1);
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + off[8 + i] + 2)), 2);
      z[i] = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(cur + off[12 + i] + 2)), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    const __m512i q[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                          _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
    const __m512i low = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      w[g] = _mm512_and_si512(q[g], low);
      w[g + 4] = _mm512_and_si512(_mm512_srli_epi32(q[g], 4), low);
    }
  }
  return _mm512_cvtph_ps(dh);
}

// y[t0 + j][r0 .. r0 + 16) for T tokens over one row group; `rows` masks the stores of a partial group,
// whose missing rows repeat row 0. `next` is where the following group starts, for the prefetch.
template <typename Block, int T>
void matvec_group(const uint8_t* const* row, const uint8_t* next, int64_t step, int64_t blocks, Q8Matrix x,
                  int64_t t0, float offset, float* y, int64_t ldy, int64_t r0, __mmask16 rows) {
  __m512 acc[T];
#pragma GCC unroll 8
  for (int j = 0; j < T; ++j) acc[j] = _mm512_setzero_ps();
  int64_t off[kMatvecRows];
#pragma GCC unroll 16
  for (int r = 0; r < kMatvecRows; ++r) off[r] = row[r] - row[0];
  for (int64_t b = 0; b < blocks; ++b) {
    __m512i w[8];
    const __m512 dw = transposed_block<Block>(row[0] + b * step, off, w);
    // The next group's rows are one contiguous stretch: fetch it in order, a block's share per block.
    constexpr int kLines = (kMatvecRows * static_cast<int>(sizeof(Block)) + 63) / 64;
#pragma GCC unroll 16
    for (int i = 0; i < kLines; ++i) _mm_prefetch(reinterpret_cast<const char*>(next) + (b * kLines + i) * 64, _MM_HINT_T1);
#pragma GCC unroll 8
    for (int j = 0; j < T; ++j) {
      const int64_t t = t0 + j;
      const auto* xq = reinterpret_cast<const uint8_t*>(x.qs + t * x.k + b * kQuantBlock);
      __m512i sum0 = _mm512_setzero_si512(), sum1 = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int g = 0; g < 8; ++g) {
        // The broadcast folded into vpdpbusd (dpbusd_bcast) pays from 4 tokens (bench/kernels BM_DecodeBatch
        // 4864×896, three alternated pairs: 4 tokens Q8_0 105 -> 98 us, Q4_0 101 -> 93; 8 tokens 154-165 ->
        // 155-159 and 157-160 -> 147-152); with 2 Q4_0 lost 4%, and 1 token is bound by memory.
        __m512i& sum = T < 4 && g % 2 == 1 ? sum1 : sum0;
        if constexpr (T < 4) {
          sum = _mm512_dpbusd_epi32(sum, w[g], _mm512_set1_epi32(static_cast<int>(load_u32(xq + 4 * g))));
        } else {
          sum = dpbusd_bcast(sum, w[g], xq + 4 * g);
        }
      }
      if (T < 4) sum0 = _mm512_add_epi32(sum0, sum1);
      const int64_t xb = t * blocks + b;
      const __m512 block = _mm512_fmsub_ps(_mm512_cvtepi32_ps(sum0), _mm512_set1_ps(x.d[xb]),
                                           _mm512_set1_ps(offset * x.ds[xb]));
      acc[j] = _mm512_fmadd_ps(dw, block, acc[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < T; ++j) _mm512_mask_storeu_ps(y + (t0 + j) * ldy + r0, rows, acc[j]);
}

template <typename Block>
void avx512_matvec_rows(const Block* w, int64_t r0, int64_t r1, Q8Matrix x, int64_t n, float* y, int64_t ldy,
                        float offset) {
  const int64_t blocks = x.k / kQuantBlock;
  const auto* base = reinterpret_cast<const uint8_t*>(w);
  const int64_t stride = blocks * static_cast<int64_t>(sizeof(Block));
  for (int64_t r = r0; r < r1; r += kMatvecRows) {
    const int64_t rows = r1 - r < kMatvecRows ? r1 - r : kMatvecRows;
    const uint8_t* row[kMatvecRows];
    for (int i = 0; i < kMatvecRows; ++i) row[i] = base + (r + (i < rows ? i : 0)) * stride;
    const auto mask = static_cast<__mmask16>((1u << rows) - 1);
    const int64_t step = static_cast<int64_t>(sizeof(Block));
    const uint8_t* next = base + (r + kMatvecRows) * stride;
    int64_t t = 0;
    for (; t + kMatvecTokens <= n; t += kMatvecTokens)
      matvec_group<Block, kMatvecTokens>(row, next, step, blocks, x, t, offset, y, ldy, r, mask);
    switch (n - t) {
      case 7: matvec_group<Block, 7>(row, next, step, blocks, x, t, offset, y, ldy, r, mask); break;
      case 6: matvec_group<Block, 6>(row, next, step, blocks, x, t, offset, y, ldy, r, mask); break;
      case 5: matvec_group<Block, 5>(row, next, step, blocks, x, t, offset, y, ldy, r, mask); break;
      case 4: matvec_group<Block, 4>(row, next, step, blocks, x, t, offset, y, ldy, r, mask); break;
      case 3: matvec_group<Block, 3>(row, next, step, blocks, x, t, offset, y, ldy, r, mask); break;
      case 2: matvec_group<Block, 2>(row, next, step, blocks, x, t, offset, y, ldy, r, mask); break;
      case 1: matvec_group<Block, 1>(row, next, step, blocks, x, t, offset, y, ldy, r, mask); break;
      default: break;
    }
  }
}

void avx512_matvec_q8(TensorType type, const void* w, int64_t r0, int64_t r1, Q8Matrix x, int64_t n, float* y,
                      int64_t ldy) {
  if (type == TensorType::kQ8_0) {
    avx512_matvec_rows(static_cast<const BlockQ8_0*>(w), r0, r1, x, n, y, ldy, 128.0f);
  } else {
    avx512_matvec_rows(static_cast<const BlockQ4_0*>(w), r0, r1, x, n, y, ldy, 8.0f);
  }
}

// SiLU and SwiGLU in 16 lanes: exp_ps's arithmetic (Cephes' range reduction and degree-5 polynomial, about
// 2 ulp; 0 below -87.3, saturating at exp(88)) with vscalefps for the 2^n, and the division as vrcp14ps plus
// one Newton step (relative error near 2^-28, under float's rounding). The AVX2 body's vdivps alone took
// as long as the rest of it (bench/kernels BM_Swiglu 4864: 2165-2264 -> 1569 ns).
inline __m512 exp_ps512_full(__m512 x) {
  const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.0f));
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_scalef_ps(keep, p, fx);
}

// x * sigmoid(x).
inline __m512 silu_ps512(__m512 x) {
  const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), exp_ps512_full(_mm512_sub_ps(_mm512_setzero_ps(), x)));
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(x, _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f))));
}

void avx512_silu(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, silu_ps512(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = first_lanes(n - i);
    _mm512_mask_storeu_ps(y + i, m, silu_ps512(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void avx512_swiglu(const float* gate, const float* up, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_mul_ps(silu_ps512(_mm512_loadu_ps(gate + i)), _mm512_loadu_ps(up + i)));
  if (i < n) {
    const __mmask16 m = first_lanes(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(silu_ps512(_mm512_maskz_loadu_ps(m, gate + i)), _mm512_maskz_loadu_ps(m, up + i)));
  }
}

float avx512_dot_q8_0(const BlockQ8_0* w, Q8Vector x, int64_t n) {
  float y;
  avx512_matvec_rows(w, 0, 1, Q8Matrix{x.qs, x.d, x.ds, n}, 1, &y, 1, 128.0f);
  return y;
}
float avx512_dot_q4_0(const BlockQ4_0* w, Q8Vector x, int64_t n) {
  float y;
  avx512_matvec_rows(w, 0, 1, Q8Matrix{x.qs, x.d, x.ds, n}, 1, &y, 1, 8.0f);
  return y;
}

}  // namespace

const KernelTable kAvx512Kernels = {
    "avx512",        x86_dot_f32,        x86_dot_f16,        x86_dot_bf16,
    avx512_dot_q8_0, avx512_dot_q4_0,    x86_quantize_q8,    x86_row_to_f32,     x86_f32_to_f16,
    avx512_matmul_q8, tile_scratch_bytes, true, avx512_matvec_q8, x86_rms_norm,      x86_layer_norm,
    x86_softmax,     avx512_silu,        avx512_swiglu,      x86_gelu,
    x86_gelu_tanh,   x86_add,            x86_mul,            x86_scale,
    x86_axpy,        x86_attention_block, avx512_attention_block_bf16, x86_scan_u4,
};

}  // namespace rag::nn
