// Private body of the x86 kernels, included only by kernels-avx2.cpp and kernels-avx512.cpp, each compiled
// with its own -m flags: the same 256-bit code serves both, and where the AVX-512 build has VNNI the int8
// dot product becomes one vpdpbusd instead of vpmaddubsw + vpmaddwd.
//
// Everything here has internal linkage (anonymous namespace) and the file includes only <immintrin.h> and
// declaration-only headers: no inline function of a shared header may be instantiated with AVX code, or the
// linker could hand that copy to code running on a CPU without AVX (an ODR trap). Hence no <cmath> or
// <algorithm> here; tails use masked loads instead of scalar libm calls.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "nn/kernels-impl.h"

namespace rag::nn {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lanes [0, count) set, for the last partial vector of a loop (0 < count < 8).
inline __m256i tail_mask(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline float f16_scalar(uint16_t h) { return _cvtsh_ss(h); }

// Σ over 4-byte groups of u[i] * s[i] (u unsigned, s signed) into 8 int32 lanes added to acc. Without VNNI
// the pairs pass through int16: exact while |u * s| pairs stay below 2^15, true for every caller (u ≤ 128 with
// |s| ≤ 127, or u ≤ 15).
inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

// Q4_0 block nibbles as 32 unsigned bytes in element order (low nibbles are elements 0..15): the 16 bytes
// in both halves, the high half shifted by 4.
inline __m256i unpack_q4(const uint8_t* qs) {
  const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  return _mm256_and_si256(_mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
}

// 8 values of a 16-bit float type starting at p; `count` < 8 reads only that many (zeros after).
inline __m256 load_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256 load_bf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline __m128i load_u16_partial(const uint16_t* p, int64_t count) {
  alignas(16) uint16_t tmp[8] = {};
  for (int64_t i = 0; i < count; ++i) tmp[i] = p[i];
  return _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
}

float x86_dot_f32(const float* w, const float* x, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
         acc3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc0);
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    acc1 = _mm256_fmadd_ps(_mm256_maskload_ps(w + i, m), _mm256_maskload_ps(x + i, m), acc1);
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

template <bool kBf16>
float x86_dot_16bit(const uint16_t* w, const float* x, int64_t n) {
  auto load = [](const uint16_t* p) { return kBf16 ? load_bf16(p) : load_f16(p); };
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
         acc3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(load(w + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(load(w + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(load(w + i + 16), _mm256_loadu_ps(x + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(load(w + i + 24), _mm256_loadu_ps(x + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load(w + i), _mm256_loadu_ps(x + i), acc0);
  if (i < n) {
    const __m128i bits = load_u16_partial(w + i, n - i);
    const __m256 wv = kBf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16))
                            : _mm256_cvtph_ps(bits);
    acc1 = _mm256_fmadd_ps(wv, _mm256_maskload_ps(x + i, tail_mask(n - i)), acc1);
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

float x86_dot_f16(const uint16_t* w, const float* x, int64_t n) { return x86_dot_16bit<false>(w, x, n); }
float x86_dot_bf16(const uint16_t* w, const float* x, int64_t n) { return x86_dot_16bit<true>(w, x, n); }

// nn::scan_u4: rows 0-7 of a group in the first 32 bytes of each 64, rows 8-15 in the second; low nibbles
// meet q[8m .. 8m + 3] and high nibbles q[8m + 4 .. 8m + 7], broadcast to every lane. Sums of two
// products stay far inside int16 for dot_u8s8's AVX2 path (15 * 127 * 2).
void x86_scan_u4(const uint8_t* codes, int64_t groups, const int8_t* q, int64_t dim, int32_t* sums) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const int64_t steps = dim / 8;
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* p = codes + g * 8 * dim;
    __m256i lo0 = _mm256_setzero_si256(), hi0 = _mm256_setzero_si256();
    __m256i lo1 = _mm256_setzero_si256(), hi1 = _mm256_setzero_si256();
    for (int64_t m = 0; m < steps; ++m, p += 64) {
      const __m256i q_lo = _mm256_broadcastd_epi32(_mm_loadu_si32(q + 8 * m));
      const __m256i q_hi = _mm256_broadcastd_epi32(_mm_loadu_si32(q + 8 * m + 4));
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
      lo0 = dot_u8s8(lo0, _mm256_and_si256(v0, nibble), q_lo);
      hi0 = dot_u8s8(hi0, _mm256_and_si256(_mm256_srli_epi16(v0, 4), nibble), q_hi);
      lo1 = dot_u8s8(lo1, _mm256_and_si256(v1, nibble), q_lo);
      hi1 = dot_u8s8(hi1, _mm256_and_si256(_mm256_srli_epi16(v1, 4), nibble), q_hi);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + g * kScanRows), _mm256_add_epi32(lo0, hi0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + g * kScanRows + 8), _mm256_add_epi32(lo1, hi1));
  }
}

// Int8 matvec products (matvec_q8, dot_q8_0, dot_q4_0, and matmul_q8 below) in quads: 4 rows against one
// token share a vector. A block's 32 products of each (row, token) pair are summed by vpmaddubsw and
// vpmaddwd (Q8_0: |w| times x with w's sign by vpsignb; Q4_0: the nibbles, 0..15, times x) into 8 int32
// lanes, and the 4 pairs' lanes are folded by unpacks and adds into one vector: lane i holds row i's sum over
// the block's first 16 elements, lane i + 4 over its last 16. One conversion and two float operations then
// scale all four: lane l adds d_w d_x p_l for Q8_0. On an AVX2-only Zen 3 (register-only microbenchmarks),
// vpmaddubsw, vpmaddwd and FMAs share two pipes at 2 per cycle while unpacks and adds run beside them, so the
// fold is nearly free and saves three conversions and six float operations per quad and block. Tiles are a
// row quad against up to kQuadTokens tokens, each row's block prepared once for all of them; a pair's
// arithmetic is the same whatever the tile and whichever rows share its quad, so dot, matvec, matvec_batch
// and matmul_q8 give the same bits.
//
// Q4_0 products are small enough to stay in int16 longer: a nibble pair is at most 2 * 15 * 127 = 3,810,
// so a lane can hold 8 pairs, half a row's block (a row keeps two lanes until vpmaddwd). The quads fold vpmaddubsw's int16 pairs, add the two halves, and widen
// once: 4 lanes of whole-block sums p, each adding d_w (d_x p - 8 ds). Several tokens take octets instead
// (below), which reach the same sums without a fold and scale them the same way, so the bits agree, for
// Q8_0 as for Q4_0.
//
// bench/decoder on the Qwen2.5-0.5B-shaped bench models, two threads, against the row-by-row dot products
// and dequant + sgemm prefill this replaced (two alternated rounds): prefill 512 Q4_0 120 -> 185 tok/s,
// Q8_0 115-117 -> 181-192; one stream Q4_0 84 -> 92-97, Q8_0 71 -> 73-94; 8 sequences Q4_0 86-87 -> 133-137,
// Q8_0 88-89 -> 153-154. The form tried first, each (row, token) pair in a vector of its own, converted and
// scaled on its own, reached 142-174 tok/s of prefill: about 3 cycles per pair and block.
constexpr int kQuadTokens = 4;

// The f16 scales of block b of the quad's rows as [d0, d1, d2, d3].
template <class Block>
inline __m128 quad_scales(const Block* const* rows, int64_t b) {
  const uint64_t h = uint64_t{rows[0][b].d} | uint64_t{rows[1][b].d} << 16 | uint64_t{rows[2][b].d} << 32 |
                     uint64_t{rows[3][b].d} << 48;
  return _mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<long long>(h)));
}

// Lane i: the sum of p_i's lanes 0-3; lane i + 4: of its lanes 4-7.
inline __m256i fold_quad(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
  const __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
  const __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
}

// The same fold on int16 sums: in each 128-bit half, 32-bit lane i holds two int16 sums of p_i's lanes in
// that half (4 lanes each). The callers keep the lanes small enough not to wrap.
inline __m256i fold_quad_i16(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
  const __m256i ab = _mm256_add_epi16(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
  const __m256i cd = _mm256_add_epi16(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
  return _mm256_add_epi16(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
}

// Running sums per token: Q4_0 adds a row's two halves per block (4 rows in a quad's __m128); Q8_0 keeps
// them apart to the end (a quad's row i in lanes i and i + 4; an octet's in two vectors), where vpmaddubsw's
// pairs reach 2 * 128 * 127 and an int32 add per block would cost the quads more than it saves.
template <class Block>
struct BlockSums {
  using Quad = __m128;
  static constexpr int kHalves = 1;
};
template <>
struct BlockSums<BlockQ8_0> {
  using Quad = __m256;
  static constexpr int kHalves = 2;
};

// Block sums q (whole or half) scaled into acc, the same operations in quads and octets: d_w (d_x q - 8 ds)
// for Q4_0's whole blocks (the nibbles' offset 8 taken out), d_w (d_x q) for Q8_0.
template <class Block, class V>
inline V accumulate_block(V q, V dw, float dx, float ds, V acc) {
  constexpr bool kQ4 = sizeof(Block) == sizeof(BlockQ4_0);
  if constexpr (sizeof(V) == sizeof(__m128)) {
    const __m128 scaled = kQ4 ? _mm_fmsub_ps(q, _mm_set1_ps(dx), _mm_set1_ps(8.0f * ds)) : _mm_mul_ps(q, _mm_set1_ps(dx));
    return _mm_fmadd_ps(scaled, dw, acc);
  } else {
    const __m256 scaled =
        kQ4 ? _mm256_fmsub_ps(q, _mm256_set1_ps(dx), _mm256_set1_ps(8.0f * ds)) : _mm256_mul_ps(q, _mm256_set1_ps(dx));
    return _mm256_fmadd_ps(scaled, dw, acc);
  }
}

// Fetches bytes [b * kShare, (b + 1) * kShare) from `next` into L2: a fixed run of prefetches, the last one at
// the final byte, so that the lines are covered whatever the offset, without a loop.
template <int64_t kShare, class Block>
inline void prefetch_share(const Block* next, int64_t b) {
  const char* p = reinterpret_cast<const char*>(next) + b * kShare;
  for (int64_t o = 0; o < kShare; o += 64) _mm_prefetch(p + o, _MM_HINT_T1);
  _mm_prefetch(p + kShare - 1, _MM_HINT_T1);
}

// Rows rows[0..3] against T tokens of x: y[t * ldy + i] for rows i < count. `next` is where the
// quad after the following one starts: reading 4 rows in step hides them from the hardware prefetcher, so
// each block fetches its share of that contiguous stretch into L2. bench/kernels BM_Matvec, 151936 × 896
// (an output head streamed from memory), two threads: Q8_0 11-14 ms without the prefetch, 7 fetching the next
// quad, 4.1 two quads ahead, against 4.8-5.9 for row-by-row dot products.
template <class Block, int T>
void x86_matvec_tile(const Block* const* rows, int count, const Block* next, int64_t blocks, Q8Matrix x, float* y,
                     int64_t ldy) {
  constexpr bool kQ4 = sizeof(Block) == sizeof(BlockQ4_0);
  constexpr int64_t kShare = 4 * static_cast<int64_t>(sizeof(Block));
  typename BlockSums<Block>::Quad acc[T] = {};
  for (int64_t b = 0; b < blocks; ++b) {
    prefetch_share<kShare>(next, b);
    const __m128 dw = quad_scales(rows, b);
    __m256i u[4];
    for (int i = 0; i < 4; ++i) {
      if constexpr (kQ4) {
        u[i] = unpack_q4(rows[i][b].qs);
      } else {
        const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[i][b].qs));
        u[i] = _mm256_sign_epi8(wq, wq);
      }
    }
    for (int t = 0; t < T; ++t) {
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + t * x.k + b * kQuantBlock));
      const float dx = x.d[t * blocks + b], ds = x.ds[t * blocks + b];
      if constexpr (kQ4) {
        // Unpacks keep a row's int16 neighbours together; 4 pairs of a row per lane after the fold, 8 once
        // the halves are added.
        const __m256i p0 = _mm256_maddubs_epi16(u[0], xq), p1 = _mm256_maddubs_epi16(u[1], xq);
        const __m256i p2 = _mm256_maddubs_epi16(u[2], xq), p3 = _mm256_maddubs_epi16(u[3], xq);
        const __m256i abcd = fold_quad_i16(p0, p1, p2, p3);
        const __m128i whole = _mm_madd_epi16(
            _mm_add_epi16(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1)), _mm_set1_epi16(1));
        acc[t] = accumulate_block<Block>(_mm_cvtepi32_ps(whole), dw, dx, ds, acc[t]);
      } else {
        __m256i p[4];
        for (int i = 0; i < 4; ++i) {
          const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[i][b].qs));
          p[i] = dot_u8s8(_mm256_setzero_si256(), u[i], _mm256_sign_epi8(xq, wq));
        }
        const __m256 q = _mm256_cvtepi32_ps(fold_quad(p[0], p[1], p[2], p[3]));
        acc[t] = accumulate_block<Block>(q, _mm256_set_m128(dw, dw), dx, ds, acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) {
    alignas(32) float lanes[8];
    if constexpr (kQ4) {
      _mm_store_ps(lanes, acc[t]);
      for (int i = 0; i < count; ++i) y[t * ldy + i] = lanes[i];
    } else {
      _mm256_store_ps(lanes, acc[t]);
      for (int i = 0; i < count; ++i) y[t * ldy + i] = lanes[i] + lanes[i + 4];
    }
  }
}

// A row quad against tokens [0, n) of x: tiles of T tokens and a last tile of fewer.
template <class Block, int T>
void x86_quad_tokens(const Block* const* rows, int count, const Block* next, int64_t blocks, Q8Matrix x, int64_t n,
                     float* y, int64_t ldy) {
  auto from = [&](int64_t t) { return Q8Matrix{x.qs + t * x.k, x.d + t * blocks, x.ds + t * blocks, x.k}; };
  int64_t t = 0;
  for (; t + T <= n; t += T) x86_matvec_tile<Block, T>(rows, count, next, blocks, from(t), y + t * ldy, ldy);
  if constexpr (T > 1) {
    if (t < n) x86_quad_tokens<Block, T - 1>(rows, count, next, blocks, from(t), n - t, y + t * ldy, ldy);
  }
}

// Rows in octets, for several tokens. Each block of 8 rows is transposed once into vectors of one 4-element
// group of all 8 rows (rows 0-3 in the low half, 4-7 in the high), so that a token meets it through
// broadcasts of its own 4-byte groups. For Q4_0, 8 vpmaddubsw and 7 int16 adds leave each row's whole-block
// sum in a lane of its own, with no fold, and one widening, conversion and scaling serve 8 rows. The quads
// spend 9 shuffles and adds and two conversions and scalings per token on those 8 rows, which made them
// bound by the count of vector operations once the transposition is shared by many tokens. Zen 3, two
// threads, bench/kernels (median of 3, best of 3 alternated rounds) against the quads with the int16 fold:
// BM_Matmul Q4_0 4864×896 by 512 tokens 26.8 -> 15.1 ms, 896×896 4.84 -> 2.68; BM_DecodeBatch 4864×896,
// 8 tokens 425 -> 278 us, 16 tokens 841 -> 478, 2 tokens 132 -> 131 (one token stays with the quads,
// which the octets' stores and reloads of the transposed chunk would slow: 95 -> 108).
template <class Block>
struct alignas(32) OctetBlock {
  __m256i w[8];  // w[k]: elements 4k..4k+3 of rows 0-3, then of rows 4-7 (Q4_0: nibbles, 0..15)
  __m256 d;      // the rows' scales
};
// Q8_0 keeps the magnitudes too: vpmaddubsw takes |w| and the token's bytes with w's signs.
template <>
struct alignas(32) OctetBlock<BlockQ8_0> {
  __m256i w[8];
  __m256i magnitude[8];
  __m256 d;
};

// Blocks per transposed chunk: 32 of 288 (Q4_0) or 544 bytes (Q8_0) stay in L1 while every token tile
// reads them.
constexpr int64_t kOctetChunk = 32;
// Tokens whose running sums a chunked octet keeps on the stack between chunks.
constexpr int64_t kOctetTokens = 64;
// Tokens per tile: 4 sums, 4 products and the operands fill the 16 registers.
constexpr int kOctetTileTokens = 4;
// Fewest tokens for which octets beat quads. Q8_0 gains less: each product needs the token's bytes with
// the weights' signs (vpsignb, on the multiply pipes) and a widening, and its halves stay apart (BlockSums).
// bench/kernels, quads against Q8_0 octets (median of 3, best of 4 alternated rounds): BM_DecodeBatch
// 4864×896, one thread, 4 tokens 277 against 294 us, 8 503 against 526, 16 960 against 938, 32 1925
// against 1854; BM_Matmul by 512 tokens, two threads, 32.2 against 28.0 ms.
constexpr int64_t kOctetMinTokensQ4 = 2;
constexpr int64_t kOctetMinTokensQ8 = 16;

// v[i] = [bytes of row i | of row i + 4] to w[k] = [group k of rows 0-3 | of rows 4-7], groups of 4 bytes.
inline void transpose_groups(const __m256i* v, __m256i* w) {
  const __m256i a = _mm256_unpacklo_epi32(v[0], v[1]), c = _mm256_unpackhi_epi32(v[0], v[1]);
  const __m256i b = _mm256_unpacklo_epi32(v[2], v[3]), d = _mm256_unpackhi_epi32(v[2], v[3]);
  w[0] = _mm256_unpacklo_epi64(a, b);
  w[1] = _mm256_unpackhi_epi64(a, b);
  w[2] = _mm256_unpacklo_epi64(c, d);
  w[3] = _mm256_unpackhi_epi64(c, d);
}

// 16 bytes at offset `at` of block b of rows i and i + 4, in the low and high half.
template <class Block>
inline __m256i row_pair(const Block* const* rows, int i, int64_t b, int at) {
  return _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i][b].qs + at))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i + 4][b].qs + at)), 1);
}

template <class Block>
inline void transpose_octet(const Block* const* rows, int64_t b, OctetBlock<Block>* out) {
  __m256i lo[4], hi[4];  // elements 0-15 and 16-31
  for (int i = 0; i < 4; ++i) {
    if constexpr (sizeof(Block) == sizeof(BlockQ4_0)) {
      const __m256i nibble = _mm256_set1_epi8(0x0F);
      const __m256i v = row_pair(rows, i, b, 0);
      lo[i] = _mm256_and_si256(v, nibble);
      hi[i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
    } else {
      lo[i] = row_pair(rows, i, b, 0);
      hi[i] = row_pair(rows, i, b, 16);
    }
  }
  transpose_groups(lo, out->w);
  transpose_groups(hi, out->w + 4);
  if constexpr (sizeof(Block) == sizeof(BlockQ8_0)) {
    for (int k = 0; k < 8; ++k) out->magnitude[k] = _mm256_sign_epi8(out->w[k], out->w[k]);
  }
  out->d = _mm256_set_m128(quad_scales(rows + 4, b), quad_scales(rows, b));
}

// T tokens of x (blocks [b0, b0 + count) of each) against a transposed chunk, into token t's sums: Q4_0's
// whole blocks in sums[t], Q8_0's halves in sums[2t] and sums[2t + 1], one pass over the chunk per half so
// that T sums, T products and the operands stay in the 16 registers.
template <class Block, int T>
void octet_tile(const OctetBlock<Block>* chunk, int64_t b0, int64_t count, Q8Matrix x, __m256* sums) {
  constexpr bool kQ4 = sizeof(Block) == sizeof(BlockQ4_0);
  constexpr int kHalves = BlockSums<Block>::kHalves;
  const int64_t blocks = x.k / kQuantBlock;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int h = 0; h < kHalves; ++h) {
    __m256 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = sums[t * kHalves + h];
    for (int64_t j = 0; j < count; ++j) {
      const int64_t b = b0 + j;
      __m256i p[T];
      // GCC 12 keeps this loop rolled (its body is T tokens' worth): a counter, a branch for `first` and
      // computed addresses beside the 4-5 vector operations per token. Unrolled, bench/kernels on the Zen 4
      // (AVX2 only), two threads, two alternated rounds, ms: BM_Matmul 4864×896 by 512 tokens Q4_0
      // 16.4, 15.9 -> 14.5, 14.5; Q8_0 32.4, 34.0 -> 28.4, 28.1; BM_DecodeBatch Q4_0 64 tokens
      // 2.10, 1.91 -> 1.75, 1.71.
#pragma GCC unroll 8
      for (int g = 0; g < 8 / kHalves; ++g) {
        const int k = h * 8 / kHalves + g;
        const __m256i w = _mm256_load_si256(&chunk[j].w[k]);
        for (int t = 0; t < T; ++t) {
          const __m256i xg = _mm256_broadcastd_epi32(_mm_loadu_si32(x.qs + t * x.k + b * kQuantBlock + 4 * k));
          const bool first = g == 0;
          if constexpr (kQ4) {
            // Nibble pairs add up in int16 (8 per lane, at most 8 * 2 * 15 * 127), widened once below.
            const __m256i product = _mm256_maddubs_epi16(w, xg);
            p[t] = first ? product : _mm256_add_epi16(p[t], product);
          } else {
            // A pair reaches 2 * 128 * 127: each widens at once.
            const __m256i product = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_load_si256(&chunk[j].magnitude[k]), _mm256_sign_epi8(xg, w)), ones);
            p[t] = first ? product : _mm256_add_epi32(p[t], product);
          }
          // Left alone, GCC 12 computes all the products first (reassociating the adds) and spills them.
          __asm__("" : "+x"(p[t]));
        }
      }
      for (int t = 0; t < T; ++t) {
        const __m256 q = _mm256_cvtepi32_ps(kQ4 ? _mm256_madd_epi16(p[t], ones) : p[t]);
        acc[t] = accumulate_block<Block>(q, chunk[j].d, x.d[t * blocks + b], x.ds[t * blocks + b], acc[t]);
      }
    }
    for (int t = 0; t < T; ++t) sums[t * kHalves + h] = acc[t];
  }
}

// Tokens [0, n) against a chunk, in tiles of T and a last tile of fewer.
template <class Block, int T>
void octet_tokens(const OctetBlock<Block>* chunk, int64_t b0, int64_t count, Q8Matrix x, int64_t n, __m256* sums) {
  const int64_t blocks = x.k / kQuantBlock;
  auto from = [&](int64_t t) { return Q8Matrix{x.qs + t * x.k, x.d + t * blocks, x.ds + t * blocks, x.k}; };
  int64_t t = 0;
  constexpr int kHalves = BlockSums<Block>::kHalves;
  for (; t + T <= n; t += T) octet_tile<Block, T>(chunk, b0, count, from(t), sums + t * kHalves);
  if constexpr (T > 1) {
    if (t < n) octet_tokens<Block, T - 1>(chunk, b0, count, from(t), n - t, sums + t * kHalves);
  }
}

// Rows [r, r + 8) of w against tokens [0, n) of x. `next` is where the rows two octets on start,
// fetched into L2 while this octet is transposed, as the quads do.
template <class Block>
void x86_octet_rows(const Block* w, int64_t r, const Block* next, Q8Matrix x, int64_t n, float* y, int64_t ldy) {
  const int64_t blocks = x.k / kQuantBlock;
  const Block* rows[8];
  for (int i = 0; i < 8; ++i) rows[i] = w + (r + i) * blocks;
  constexpr int64_t kShare = 8 * static_cast<int64_t>(sizeof(Block));
  constexpr int kHalves = BlockSums<Block>::kHalves;
  OctetBlock<Block> chunk[kOctetChunk];
  __m256 sums[kOctetTokens * kHalves];
  for (int64_t t0 = 0; t0 < n; t0 += kOctetTokens) {
    const int64_t tokens = n - t0 < kOctetTokens ? n - t0 : kOctetTokens;
    const Q8Matrix xt{x.qs + t0 * x.k, x.d + t0 * blocks, x.ds + t0 * blocks, x.k};
    for (int64_t t = 0; t < tokens * kHalves; ++t) sums[t] = _mm256_setzero_ps();
    for (int64_t b0 = 0; b0 < blocks; b0 += kOctetChunk) {
      const int64_t count = blocks - b0 < kOctetChunk ? blocks - b0 : kOctetChunk;
      for (int64_t j = 0; j < count; ++j) {
        const int64_t b = b0 + j;
        if (t0 == 0) prefetch_share<kShare>(next, b);
        transpose_octet(rows, b, &chunk[j]);
      }
      octet_tokens<Block, kOctetTileTokens>(chunk, b0, count, xt, tokens, sums);
    }
    for (int64_t t = 0; t < tokens; ++t) {
      alignas(32) float lanes[2][8];
      for (int h = 0; h < kHalves; ++h) _mm256_store_ps(lanes[h], sums[t * kHalves + h]);
      for (int i = 0; i < 8; ++i) y[(t0 + t) * ldy + i] = kHalves == 1 ? lanes[0][i] : lanes[0][i] + lanes[1][i];
    }
  }
}

// Q4_0 rows [r, r + 8) against one token (a decoding stream), without the octets' transposition: rows i and
// i + 4 share a vector, their 16 bytes of nibbles side by side, so that the low nibbles (elements 0-15) and the
// high ones (16-31) each meet the token's matching 16 bytes in one vpmaddubsw for both rows. The fold of the
// quads then leaves the 8 rows' whole-block sums in int16 pairs of one vector, and one vpmaddwd, conversion and
// scaling serve all 8. The sums are exact integers and the float steps per row are those of the quads, so the
// bits agree. Fewer vector operations per row than the quads' (6 against 8 per block), which bound one token's
// Q4_0 rows on the Zen 4 with AVX2 only: the quads took as long per block with the matrix in L1 as in L3, and
// read 20-22 GB/s where Q8_0 read 37-43. There, two threads, three alternated rounds: bench/kernels BM_Matvec
// Q4_0 4864×896 91-99 -> 59-65 us, 151936×896 3.58-3.79 -> 2.40-2.56 ms; bench/decoder decode 128 (four
// rounds) 84-114 -> 130-134 tok/s, 30 GB/s of weights. Q8_0's decode reads about 40, so this is still bound
// by vector operations rather than memory.
inline void x86_q4_pairs_one_token(const BlockQ4_0* w, int64_t r, const BlockQ4_0* next, Q8Matrix x, float* y) {
  const int64_t blocks = x.k / kQuantBlock;
  const BlockQ4_0* rows[8];
  for (int i = 0; i < 8; ++i) rows[i] = w + (r + i) * blocks;
  constexpr int64_t kShare = 8 * static_cast<int64_t>(sizeof(BlockQ4_0));
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    prefetch_share<kShare>(next, b);
    const int8_t* xb = x.qs + b * kQuantBlock;
    const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xb)));
    const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xb + 16)));
    // p[i]: 8 int16 sums of row i, then 8 of row i + 4, each of 4 products (at most 4 * 15 * 127 = 7,620;
    // the fold adds 4 of them, 30,480 < 2^15).
    __m256i p[4];
    for (int i = 0; i < 4; ++i) {
      const __m256i v = row_pair(rows, i, b, 0);
      const __m256i lo = _mm256_and_si256(v, nibble), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
      p[i] = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
    }
    const __m256i abcd = fold_quad_i16(p[0], p[1], p[2], p[3]);
    const __m256 q = _mm256_cvtepi32_ps(_mm256_madd_epi16(abcd, _mm256_set1_epi16(1)));
    const __m256 dw = _mm256_set_m128(quad_scales(rows + 4, b), quad_scales(rows, b));
    acc = accumulate_block<BlockQ4_0>(q, dw, x.d[b], x.ds[b], acc);
  }
  _mm256_storeu_ps(y, acc);
}

// Rows [r0, r1) against tokens [0, n) of x, in quads of rows (the last one filled up with its first row);
// octets where there are enough tokens to share their transposition, and paired quads for one Q4_0 token.
// The prefetch runs on past r1 (a prefetch never faults): parallel_rows's next chunk for this thread mostly
// starts there. Stopping at r1, chunks made one decoding stream slower than equal static shares
// (bench/decoder, Zen 3, Q4_0, 7 alternated rounds: 81-118 tok/s against 65-106), each chunk's first rows
// waiting on memory.
template <class Block>
void x86_matvec_quads(const Block* w, int64_t r0, int64_t r1, Q8Matrix x, int64_t n, float* y, int64_t ldy) {
  const int64_t blocks = x.k / kQuantBlock;
  if (n >= (sizeof(Block) == sizeof(BlockQ4_0) ? kOctetMinTokensQ4 : kOctetMinTokensQ8)) {
    for (; r0 + 8 <= r1; r0 += 8) {
      const Block* next = w + (r0 + 16) * blocks;
      x86_octet_rows(w, r0, next, x, n, y + r0, ldy);
    }
  } else if constexpr (sizeof(Block) == sizeof(BlockQ4_0)) {
    if (n == 1) {
      for (; r0 + 8 <= r1; r0 += 8) x86_q4_pairs_one_token(w, r0, w + (r0 + 16) * blocks, x, y + r0);
    }
  }
  for (int64_t r = r0; r < r1; r += 4) {
    const int count = r1 - r < 4 ? static_cast<int>(r1 - r) : 4;
    const Block* rows[4];
    for (int i = 0; i < 4; ++i) rows[i] = w + (r + (i < count ? i : 0)) * blocks;
    const Block* next = w + (r + 8) * blocks;
    x86_quad_tokens<Block, kQuadTokens>(rows, count, next, blocks, x, n, y + r, ldy);
  }
}

[[maybe_unused]] void x86_matvec_q8(TensorType type, const void* w, int64_t r0, int64_t r1, Q8Matrix x, int64_t n,
                                    float* y, int64_t ldy) {
  if (type == TensorType::kQ8_0) {
    x86_matvec_quads<BlockQ8_0>(static_cast<const BlockQ8_0*>(w), r0, r1, x, n, y, ldy);
  } else {
    x86_matvec_quads<BlockQ4_0>(static_cast<const BlockQ4_0*>(w), r0, r1, x, n, y, ldy);
  }
}

[[maybe_unused]] float x86_dot_q8_0(const BlockQ8_0* w, Q8Vector x, int64_t n) {
  float y;
  x86_matvec_quads<BlockQ8_0>(w, 0, 1, Q8Matrix{x.qs, x.d, x.ds, n}, 1, &y, 1);
  return y;
}

[[maybe_unused]] float x86_dot_q4_0(const BlockQ4_0* w, Q8Vector x, int64_t n) {
  float y;
  x86_matvec_quads<BlockQ4_0>(w, 0, 1, Q8Matrix{x.qs, x.d, x.ds, n}, 1, &y, 1);
  return y;
}

// Same arithmetic as the portable quantize_q8 (amax / 127, x * (1 / d), round half to even), so both give
// identical bytes.
void x86_quantize_q8(const float* x, int64_t n, int8_t* qs, float* d, float* ds) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float* xb = x + b * kQuantBlock;
    __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8), v2 = _mm256_loadu_ps(xb + 16),
           v3 = _mm256_loadu_ps(xb + 24);
    const __m256 amax = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                      _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    const float scale = hmax(amax) / 127.0f;
    const __m256 inverse = _mm256_set1_ps(scale != 0.0f ? 1.0f / scale : 0.0f);
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, inverse));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, inverse));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, inverse));
    const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, inverse));
    const int32_t sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    // packs works within 128-bit lanes; the permute restores element order.
    const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    const __m256i ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + b * kQuantBlock), ordered);
    d[b] = scale;
    ds[b] = scale * static_cast<float>(sum);
  }
}

void x86_row_to_f32(TensorType type, const void* row, float* y, int64_t n) {
  if (type == TensorType::kF16 && n % 8 == 0) {
    const auto* h = static_cast<const uint16_t*>(row);
    for (int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(y + i, load_f16(h + i));
    return;
  }
  kPortableKernels.row_to_f32(type, row, y, n);
}

void x86_f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  const __m256 lo = _mm256_set1_ps(-65504.0f), hi = _mm256_set1_ps(65504.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    // max and min return their second operand when either is NaN: x goes second, so NaN stays NaN.
    const __m256 v = _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_loadu_ps(x + i)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  kPortableKernels.f32_to_f16(x + i, y + i, n - i);
}

// Int8 product of many tokens: the matvec quads, the tokens in groups that stay in L2 while every row of the
// range meets them. 256 KB of activations (half a Zen 3's L2, a quarter of a Zen 4's): with 128 KB, the FFN's
// down projection (4,864 columns) met 26 tokens per pass over its rows, and each octet re-transposed its
// weights for them. Zen 4 (AVX2 only), two threads, six alternated rounds, ms: BM_Matmul 896×4864 by 512
// tokens Q8_0 28.8-32.8 -> 26.4-30.6, Q4_0 14.9-21.1 -> 14.8-19.6; bench/decoder prefill 512, five rounds,
// median tok/s: Q4_0 315 -> 366, Q8_0 198 -> 210.
template <class Block>
void x86_matmul_rows(const Block* w, int64_t r0, int64_t r1, Q8Matrix x, int64_t n, float* y, int64_t ldy) {
  const int64_t blocks = x.k / kQuantBlock;
  const int64_t group = x.k >= (1 << 18) ? 1 : (1 << 18) / x.k;
  for (int64_t t0 = 0; t0 < n; t0 += group) {
    const Q8Matrix xt{x.qs + t0 * x.k, x.d + t0 * blocks, x.ds + t0 * blocks, x.k};
    x86_matvec_quads<Block>(w, r0, r1, xt, n - t0 < group ? n - t0 : group, y + t0 * ldy, ldy);
  }
}

[[maybe_unused]] void x86_matmul_q8_rows(TensorType type, const void* w, int64_t r0, int64_t r1, Q8Matrix x, int64_t n,
                                         float* y, int64_t ldy, void* /*scratch*/) {
  if (type == TensorType::kQ8_0) {
    x86_matmul_rows(static_cast<const BlockQ8_0*>(w), r0, r1, x, n, y, ldy);
  } else {
    x86_matmul_rows(static_cast<const BlockQ4_0*>(w), r0, r1, x, n, y, ldy);
  }
}

[[maybe_unused]] int64_t x86_matmul_q8_rows_scratch(int64_t /*cols*/) { return 0; }

// exp(x) for float lanes: Cephes' range reduction and degree-5 polynomial (about 2 ulp). Below -87.3 the
// result is 0 (exactly, so masked attention scores vanish) instead of a denormal; above 88 it saturates at
// exp(88) rather than inf.
inline __m256 exp_ps(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.0f));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(exponent)));
}

// x * sigmoid(a * x).
inline __m256 x_sigmoid(__m256 x, __m256 ax) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(x, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), ax))));
}

// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), odd extension for x < 0.
inline __m256 erf_ps(__m256 x) {
  const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
  const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a, one));
  __m256 p = _mm256_set1_ps(1.061405429f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
  p = _mm256_mul_ps(p, t);
  const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
  return _mm256_or_ps(sign, _mm256_fnmadd_ps(p, e, one));
}

// y = f(x) over n floats, the last partial vector through masked loads and stores.
template <typename F>
inline void map1(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(y + i, m, f(_mm256_maskload_ps(x + i, m)));
  }
}

template <typename F>
inline void map2(const float* a, const float* b, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(y + i, m, f(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m)));
  }
}

// Σ f(x[i]) over n floats; masked-off lanes of the tail contribute f(0) masked back to 0.
template <typename F>
inline float reduce_sum(const float* x, int64_t n, F f) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_add_ps(acc0, f(_mm256_loadu_ps(x + i)));
    acc1 = _mm256_add_ps(acc1, f(_mm256_loadu_ps(x + i + 8)));
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_add_ps(acc0, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = tail_mask(n - i);
    acc1 = _mm256_add_ps(acc1, _mm256_and_ps(_mm256_castsi256_ps(m), f(_mm256_maskload_ps(x + i, m))));
  }
  return hsum(_mm256_add_ps(acc0, acc1));
}

void x86_rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps) {
  const float sum = reduce_sum(x, n, [](__m256 v) { return _mm256_mul_ps(v, v); });
  const __m128 mean = _mm_set_ss(sum / static_cast<float>(n) + eps);
  const __m256 inverse = _mm256_set1_ps(1.0f / _mm_cvtss_f32(_mm_sqrt_ss(mean)));
  map2(x, weight, y, n, [&](__m256 v, __m256 w) { return _mm256_mul_ps(_mm256_mul_ps(v, inverse), w); });
}

void x86_layer_norm(const float* x, const float* weight, const float* bias, float* y, int64_t n, float eps) {
  const float mean = reduce_sum(x, n, [](__m256 v) { return v; }) / static_cast<float>(n);
  const __m256 mean_v = _mm256_set1_ps(mean);
  const float sum_sq = reduce_sum(x, n, [&](__m256 v) {
    const __m256 c = _mm256_sub_ps(v, mean_v);
    return _mm256_mul_ps(c, c);
  });
  const __m128 var = _mm_set_ss(sum_sq / static_cast<float>(n) + eps);
  const __m256 inverse = _mm256_set1_ps(1.0f / _mm_cvtss_f32(_mm_sqrt_ss(var)));
  map2(x, weight, y, n, [&](__m256 v, __m256 w) { return _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(v, mean_v), inverse), w); });
  map2(y, bias, y, n, [](__m256 v, __m256 b) { return _mm256_add_ps(v, b); });
}

void x86_softmax(float* x, int64_t n) {
  if (n <= 0) return;
  __m256 maxv = _mm256_set1_ps(x[0]);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) maxv = _mm256_max_ps(maxv, _mm256_loadu_ps(x + i));
  for (; i < n; ++i) maxv = _mm256_max_ps(maxv, _mm256_set1_ps(x[i]));
  const __m256 max = _mm256_set1_ps(hmax(maxv));
  map1(x, x, n, [&](__m256 v) { return exp_ps(_mm256_sub_ps(v, max)); });
  const __m256 inverse = _mm256_set1_ps(1.0f / reduce_sum(x, n, [](__m256 v) { return v; }));
  map1(x, x, n, [&](__m256 v) { return _mm256_mul_ps(v, inverse); });
}

[[maybe_unused]] void x86_silu(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](__m256 v) { return x_sigmoid(v, v); });
}

[[maybe_unused]] void x86_swiglu(const float* gate, const float* up, float* y, int64_t n) {
  map2(gate, up, y, n, [](__m256 g, __m256 u) { return _mm256_mul_ps(x_sigmoid(g, g), u); });
}

void x86_gelu(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](__m256 v) {
    const __m256 e = erf_ps(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f)));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  });
}

// 0.5 x (1 + tanh(u)) = x * sigmoid(2u).
void x86_gelu_tanh(const float* x, float* y, int64_t n) {
  map1(x, y, n, [](__m256 v) {
    const __m256 cube = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
    const __m256 u = _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), cube, v);
    return x_sigmoid(v, _mm256_mul_ps(_mm256_set1_ps(2.0f * 0.79788456080286536f), u));
  });
}

void x86_add(const float* a, const float* b, float* y, int64_t n) {
  map2(a, b, y, n, [](__m256 u, __m256 v) { return _mm256_add_ps(u, v); });
}

void x86_mul(const float* a, const float* b, float* y, int64_t n) {
  map2(a, b, y, n, [](__m256 u, __m256 v) { return _mm256_mul_ps(u, v); });
}

void x86_scale(const float* x, float s, float* y, int64_t n) {
  const __m256 sv = _mm256_set1_ps(s);
  map1(x, y, n, [&](__m256 v) { return _mm256_mul_ps(v, sv); });
}

void x86_axpy(float alpha, const float* x, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(alpha);
  map2(x, y, y, n, [&](__m256 u, __m256 v) { return _mm256_fmadd_ps(av, u, v); });
}

// Flash attention over one KV block (nn::attention_block), up to 16 query rows at a time in the lanes of
// V = 2 vectors (V = 1 for a pass of at most 8 rows: a decoding token's query heads of one KV head, where
// a second vector would double the work for empty lanes): queries and outputs are stored transposed, so
// every step is vertical (no horizontal sums, the causal mask a per-lane compare) and each key or value
// element is one broadcast shared by the pass's rows.
//   scores  S (keys × 8V lanes) = K · Qᵀ, kAttentionKeys keys at a time held in registers over head_dim;
//   softmax running maximum, rescale factor α and probabilities, lane by lane;
//   output  Oᵀ = α Oᵀ + Vᵀ · P, kAttentionColumns columns of head_dim at a time held in registers.
// The AVX-512 build has 32 vector registers, so it keeps twice the accumulators in flight.
#if defined(__AVX512F__)
constexpr int kAttentionKeys = 8;
constexpr int kAttentionColumns = 8;
#else
constexpr int kAttentionKeys = 4;
constexpr int kAttentionColumns = 4;
#endif

// Masks of a pass's lanes: all of them for a full pass, else the first `left` of them.
template <int V>
struct LaneMasks {
  __m256i m[V];
};

template <bool kFull>
inline __m256 load_lanes(const float* p, __m256i m) {
  return kFull ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}
template <bool kFull>
inline void store_lanes(float* p, __m256i m, __m256 v) {
  if (kFull) {
    _mm256_storeu_ps(p, v);
  } else {
    _mm256_maskstore_ps(p, m, v);
  }
}

// Scores of keys [j0, j0 + G) for the 8V lanes of q (column r0 of Qᵀ), into s[j][lane].
template <int V, int G, bool kFull>
inline void attention_scores(const float* q, int64_t ld, const LaneMasks<V>& lanes, const float* k,
                             int64_t kv_stride, int64_t hd, int64_t j0, float (*s)[16]) {
  __m256 a[G][V];
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < V; ++u) a[g][u] = _mm256_setzero_ps();
  const float* kj = k + j0 * kv_stride;
  for (int64_t d = 0; d < hd; ++d) {
    __m256 qd[V];
    for (int u = 0; u < V; ++u) qd[u] = load_lanes<kFull>(q + d * ld + 8 * u, lanes.m[u]);
#pragma GCC unroll 16
    for (int g = 0; g < G; ++g) {
      const __m256 kv = _mm256_broadcast_ss(kj + g * kv_stride + d);
      for (int u = 0; u < V; ++u) a[g][u] = _mm256_fmadd_ps(kv, qd[u], a[g][u]);
    }
  }
#pragma GCC unroll 16
  for (int g = 0; g < G; ++g)
    for (int u = 0; u < V; ++u) _mm256_store_ps(s[j0 + g] + 8 * u, a[g][u]);
}

// Columns [c0, c0 + C) of Oᵀ for the 8V lanes at o: rescaled by α, plus Σ_j p_j v_j[c].
template <int V, int C, bool kFull>
inline void attention_output(float* o, int64_t ld, const LaneMasks<V>& lanes, const __m256 alpha[V],
                             const float* v, int64_t kv_stride, int64_t keys, int64_t c0, const float (*p)[16]) {
  __m256 a[C][V];
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c)
    for (int u = 0; u < V; ++u)
      a[c][u] = _mm256_mul_ps(load_lanes<kFull>(o + (c0 + c) * ld + 8 * u, lanes.m[u]), alpha[u]);
  for (int64_t j = 0; j < keys; ++j) {
    __m256 pj[V];
    for (int u = 0; u < V; ++u) pj[u] = _mm256_load_ps(p[j] + 8 * u);
    const float* vj = v + j * kv_stride + c0;
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) {
      const __m256 vv = _mm256_broadcast_ss(vj + c);
      for (int u = 0; u < V; ++u) a[c][u] = _mm256_fmadd_ps(vv, pj[u], a[c][u]);
    }
  }
#pragma GCC unroll 16
  for (int c = 0; c < C; ++c)
    for (int u = 0; u < V; ++u) store_lanes<kFull>(o + (c0 + c) * ld + 8 * u, lanes.m[u], a[c][u]);
}

template <int V, bool kFull>
inline void attention_lanes(int64_t r0, int64_t hd, int64_t ld, const float* q_t, const float* k, const float* v,
                            int64_t kv_stride, int64_t keys, const __m256i vis[V], const LaneMasks<V>& lanes,
                            float* max, float* sum, float* out_t) {
  // One vector of lanes keeps as many accumulators in flight as two, with twice the keys or columns.
  constexpr int kKeys = kAttentionKeys * 2 / V, kColumns = kAttentionColumns * 2 / V;
  alignas(32) float s[16][16];  // key j, lane: scores, then probabilities
  int64_t j = 0;
  for (; j + kKeys <= keys; j += kKeys)
    attention_scores<V, kKeys, kFull>(q_t + r0, ld, lanes, k, kv_stride, hd, j, s);
  for (; j < keys; ++j) attention_scores<V, 1, kFull>(q_t + r0, ld, lanes, k, kv_stride, hd, j, s);

  __m256 alpha[V];
  const __m256 minus_inf = _mm256_set1_ps(-__builtin_inff());
  for (int u = 0; u < V; ++u) {
    const __m256i m = lanes.m[u];
    const __m256 old_max = load_lanes<kFull>(max + r0 + 8 * u, m);
    __m256 new_max = old_max;
    for (j = 0; j < keys; ++j) {
      const __m256 seen = _mm256_castsi256_ps(_mm256_cmpgt_epi32(vis[u], _mm256_set1_epi32(static_cast<int>(j))));
      const __m256 sj = _mm256_blendv_ps(minus_inf, _mm256_load_ps(s[j] + 8 * u), seen);
      _mm256_store_ps(s[j] + 8 * u, sj);
      new_max = _mm256_max_ps(new_max, sj);
    }
    alpha[u] = exp_ps(_mm256_sub_ps(old_max, new_max));
    __m256 l = _mm256_mul_ps(load_lanes<kFull>(sum + r0 + 8 * u, m), alpha[u]);
    for (j = 0; j < keys; ++j) {
      const __m256 p = exp_ps(_mm256_sub_ps(_mm256_load_ps(s[j] + 8 * u), new_max));
      _mm256_store_ps(s[j] + 8 * u, p);
      l = _mm256_add_ps(l, p);
    }
    store_lanes<kFull>(max + r0 + 8 * u, m, new_max);
    store_lanes<kFull>(sum + r0 + 8 * u, m, l);
  }

  int64_t c = 0;
  for (; c + kColumns <= hd; c += kColumns)
    attention_output<V, kColumns, kFull>(out_t + r0, ld, lanes, alpha, v, kv_stride, keys, c, s);
  for (; c < hd; ++c) attention_output<V, 1, kFull>(out_t + r0, ld, lanes, alpha, v, kv_stride, keys, c, s);
}

template <int V>
void attention_pass(int64_t r0, int64_t left, int64_t hd, int64_t ld, const float* q_t, const float* k,
                    const float* v, int64_t kv_stride, int64_t keys, const int32_t* visible, float* max, float* sum,
                    float* out_t) {
  LaneMasks<V> lanes;
  __m256i vis[V];
  __m256i any = _mm256_setzero_si256();
  for (int u = 0; u < V; ++u) {
    const int64_t in = left - 8 * u;
    lanes.m[u] = in >= 8 ? _mm256_set1_epi32(-1) : in > 0 ? tail_mask(in) : _mm256_setzero_si256();
    vis[u] = _mm256_maskload_epi32(visible + r0 + 8 * u, lanes.m[u]);
    any = _mm256_or_si256(any, vis[u]);
  }
  if (_mm256_testz_si256(any, any)) return;  // no row here sees a key of this block
  if (left >= 8 * V) {
    attention_lanes<V, true>(r0, hd, ld, q_t, k, v, kv_stride, keys, vis, lanes, max, sum, out_t);
  } else {
    attention_lanes<V, false>(r0, hd, ld, q_t, k, v, kv_stride, keys, vis, lanes, max, sum, out_t);
  }
}

void x86_attention_block(int64_t rows, int64_t hd, int64_t ld, const float* q_t, const float* k, const float* v,
                         int64_t kv_stride, int64_t keys, const int32_t* visible, float* max, float* sum,
                         float* out_t) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int64_t left = rows - r0;
    if (left <= 8) {
      attention_pass<1>(r0, left, hd, ld, q_t, k, v, kv_stride, keys, visible, max, sum, out_t);
    } else {
      attention_pass<2>(r0, left, hd, ld, q_t, k, v, kv_stride, keys, visible, max, sum, out_t);
    }
  }
}

}  // namespace
}  // namespace rag::nn
