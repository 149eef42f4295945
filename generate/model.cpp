#include "generate/model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include "common/error.h"
#include "common/log.h"

namespace rag::generate {
namespace {

// Bounds on hyperparameters read from a file, so that a hostile header cannot ask for absurd allocations
// (the KV cache and scratch buffers are sized from these).
constexpr int64_t kMaxContext = int64_t{1} << 22;
constexpr int64_t kMaxWidth = int64_t{1} << 20;
constexpr int64_t kMaxLayers = 4096;
// Attention work (multiply-adds) below which one thread does it all: waking a team costs more than this,
// and far more on a loaded machine where idle threads must be rescheduled. A decode token's attention over
// 18 positions or more is above it (its KV heads split across the team): at 1 << 18, which left one token
// on one thread up to 146 positions, one-stream decode of 128 tokens (bench/decoder, Q4_0, four alternated
// pairs) ran 120-137 tok/s against 130-138 now, the second core idle while the first attended.
constexpr int64_t kAttentionParallelMinWork = int64_t{1} << 15;
// Query tokens per attention tile: each K and V row is read once per tile, and the tile's Qᵀ and Oᵀ
// (2 × head_dim × group × tokens floats, 115 KB for Qwen2.5-0.5B) stay in L2.
constexpr int64_t kAttentionTileTokens = 32;
// Values touched by a per-token element-wise step (norms, biases, RoPE, SwiGLU, residual adds) below which
// it runs on the calling thread: a decode step's few thousand values are not worth a fork and join, a
// prefill's millions are (run serially they left the second core idle for ~4% of a 512-token prefill).
constexpr int64_t kElementwiseParallelMinWork = int64_t{1} << 16;

// f(t) for every token t of a batch, across the OpenMP team when n × width values make it worthwhile.
// f must not throw.
template <typename F>
void for_each_token(int64_t n, int64_t width, F&& f) {
#pragma omp parallel for schedule(static) if (n * width >= kElementwiseParallelMinWork)
  for (int64_t t = 0; t < n; ++t) f(t);
}

bool matrix_type_ok(nn::TensorType type) {
  switch (type) {
    case nn::TensorType::kF32:
    case nn::TensorType::kF16:
    case nn::TensorType::kBF16:
    case nn::TensorType::kQ8_0:
    case nn::TensorType::kQ4_0:
      return true;
  }
  return false;
}

class Loader {
 public:
  explicit Loader(const nn::GgufFile& file) : file_(file) {}

  int64_t hyper(const std::string& arch, const std::string& name, int64_t fallback, int64_t max) const {
    std::string key = arch + "." + name;
    int64_t v = fallback < 0 ? file_.require_int(key) : file_.get_int(key, fallback);
    if (v <= 0 || v > max)
      fail(Errc::kCorrupt, "{}: metadata {} is {}; it must be in [1, {}]", file_.path(), key, v, max);
    return v;
  }

  // A matrix of `rows` rows of `cols` values (GGUF shape {cols, rows}).
  nn::Weights matrix(const std::string& name, int64_t cols, int64_t rows) const {
    const nn::GgufTensor& t = file_.require_tensor(name, {cols, rows});
    if (!matrix_type_ok(t.type))
      fail(Errc::kUnsupported, "{}: tensor '{}' is {}; the decoder reads F32, F16, BF16, Q8_0 and Q4_0 weights",
           file_.path(), name, nn::tensor_type_name(t.type));
    return nn::Weights{t.type, t.data, rows, cols};
  }

  // A vector of n values converted to float (norm weights and biases are small: copying them is free).
  std::vector<float> vector(const std::string& name, int64_t n) const {
    const nn::GgufTensor& t = file_.require_tensor(name, {n});
    std::vector<float> out(static_cast<size_t>(n));
    nn::dequantize_row(t.type, t.data, out.data(), n);
    return out;
  }

  std::vector<float> optional_vector(const std::string& name, int64_t n) const {
    return file_.find_tensor(name) ? vector(name, n) : std::vector<float>{};
  }

 private:
  const nn::GgufFile& file_;
};

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path, KvCacheType kv_cache) {
  std::unique_ptr<Model> model(new Model());
  model->file_ = nn::GgufFile::open(path);
  const nn::GgufFile& file = *model->file_;
  ModelConfig& c = model->config_;
  Loader load(file);

  c.architecture = file.require_string("general.architecture");
  if (c.architecture == "llama") {
    c.rope_mode = RopeMode::kNormal;
  } else if (c.architecture == "qwen2") {
    c.rope_mode = RopeMode::kNeox;
  } else {
    fail(Errc::kUnsupported, "{}: general.architecture is '{}'; the generator runs 'llama' and 'qwen2' models",
         path, c.architecture);
  }
  const std::string& arch = c.architecture;
  c.context_length = load.hyper(arch, "context_length", -1, kMaxContext);
  c.embedding_length = load.hyper(arch, "embedding_length", -1, kMaxWidth);
  c.layer_count = load.hyper(arch, "block_count", -1, kMaxLayers);
  c.feed_forward_length = load.hyper(arch, "feed_forward_length", -1, kMaxWidth);
  c.head_count = load.hyper(arch, "attention.head_count", -1, kMaxWidth);
  c.head_count_kv = load.hyper(arch, "attention.head_count_kv", c.head_count, c.head_count);
  if (c.head_count % c.head_count_kv != 0)
    fail(Errc::kCorrupt, "{}: {}.attention.head_count {} is not a multiple of head_count_kv {}", path, arch,
         c.head_count, c.head_count_kv);
  if (!file.find(arch + ".attention.key_length") && c.embedding_length % c.head_count != 0)
    fail(Errc::kCorrupt, "{}: {}.embedding_length {} is not a multiple of attention.head_count {}", path, arch,
         c.embedding_length, c.head_count);
  c.head_dim = load.hyper(arch, "attention.key_length", c.embedding_length / c.head_count, kMaxWidth);
  if (file.get_int(arch + ".attention.value_length", c.head_dim) != c.head_dim)
    fail(Errc::kUnsupported, "{}: {}.attention.value_length differs from key_length", path, arch);
  c.rope_dims = load.hyper(arch, "rope.dimension_count", c.head_dim, c.head_dim);
  if (c.rope_dims % 2 != 0)
    fail(Errc::kCorrupt, "{}: {}.rope.dimension_count {} must be even", path, arch, c.rope_dims);
  double base = file.get_float(arch + ".rope.freq_base", 10000.0);
  double eps = file.get_float(arch + ".attention.layer_norm_rms_epsilon", 1e-5);
  if (!(base > 1.0 && base < 1e12))
    fail(Errc::kCorrupt, "{}: {}.rope.freq_base {} is out of range", path, arch, base);
  if (!(eps > 0.0 && eps < 1.0))
    fail(Errc::kCorrupt, "{}: {}.attention.layer_norm_rms_epsilon {} is out of range", path, arch, eps);
  c.rope_freq_base = static_cast<float>(base);
  c.rms_eps = static_cast<float>(eps);

  const nn::GgufTensor* embd = file.find_tensor("token_embd.weight");
  if (!embd) fail(Errc::kCorrupt, "{}: missing tensor 'token_embd.weight'", path);
  if (embd->ne.size() != 2)
    fail(Errc::kCorrupt, "{}: tensor 'token_embd.weight' has {} dimensions, expected 2", path, embd->ne.size());
  c.vocab_size = embd->ne[1];
  model->token_embd_ = load.matrix("token_embd.weight", c.embedding_length, c.vocab_size);
  int64_t bos = file.get_int("tokenizer.ggml.bos_token_id", -1);
  int64_t eos = file.get_int("tokenizer.ggml.eos_token_id", -1);
  c.bos_id = bos >= 0 && bos < c.vocab_size ? static_cast<int32_t>(bos) : -1;
  c.eos_id = eos >= 0 && eos < c.vocab_size ? static_cast<int32_t>(eos) : -1;

  const int64_t dim = c.embedding_length, ff = c.feed_forward_length;
  for (int64_t l = 0; l < c.layer_count; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights w;
    w.attn_norm = load.vector(p + "attn_norm.weight", dim);
    w.ffn_norm = load.vector(p + "ffn_norm.weight", dim);
    w.wq = load.matrix(p + "attn_q.weight", dim, c.q_dim());
    w.wk = load.matrix(p + "attn_k.weight", dim, c.kv_dim());
    w.wv = load.matrix(p + "attn_v.weight", dim, c.kv_dim());
    w.wo = load.matrix(p + "attn_output.weight", c.q_dim(), dim);
    w.bq = load.optional_vector(p + "attn_q.bias", c.q_dim());
    w.bk = load.optional_vector(p + "attn_k.bias", c.kv_dim());
    w.bv = load.optional_vector(p + "attn_v.bias", c.kv_dim());
    w.gate = load.matrix(p + "ffn_gate.weight", dim, ff);
    w.up = load.matrix(p + "ffn_up.weight", dim, ff);
    w.down = load.matrix(p + "ffn_down.weight", ff, dim);
    model->layers_.push_back(std::move(w));
  }
  model->output_norm_ = load.vector("output_norm.weight", dim);
  model->output_ = file.find_tensor("output.weight") ? load.matrix("output.weight", dim, c.vocab_size)
                                                     : model->token_embd_;
  if (file.find("tokenizer.ggml.tokens")) {
    model->tokenizer_ = nn::Tokenizer::from_gguf(file);
    if (static_cast<int64_t>(model->tokenizer_->vocab_size()) != c.vocab_size)
      fail(Errc::kCorrupt, "{}: tokenizer.ggml.tokens has {} tokens but token_embd.weight has {} rows", path,
           model->tokenizer_->vocab_size(), c.vocab_size);
    c.bos_id = model->tokenizer_->bos();
    c.eos_id = model->tokenizer_->eos();
  }
  model->weight_type_name_ = std::string(nn::tensor_type_name(model->layers_[0].wq.type));
  const nn::TensorType wq_type = model->layers_[0].wq.type;
  model->attention_bf16_ = wq_type == nn::TensorType::kQ8_0 || wq_type == nn::TensorType::kQ4_0;
  const bool f32_cache =
      kv_cache == KvCacheType::kF32 || (kv_cache == KvCacheType::kAuto && wq_type == nn::TensorType::kF32);
  c.kv_type = f32_cache ? nn::TensorType::kF32 : nn::TensorType::kF16;
  spdlog::info("generate: loaded {} ({}, {} layers, width {}, {} heads / {} KV, context {}, {}, KV cache {})", path,
               arch, c.layer_count, dim, c.head_count, c.head_count_kv, c.context_length, model->weight_type_name_,
               nn::tensor_type_name(c.kv_type));
  return model;
}

void rope_angles(const ModelConfig& c, int64_t pos, float* cos_sin) {
  // In double: positions reach millions, and float would lose the angle's low bits.
  for (int64_t i = 0; i < c.rope_dims / 2; ++i) {
    const double theta = static_cast<double>(pos) *
                         std::pow(static_cast<double>(c.rope_freq_base),
                                  -2.0 * static_cast<double>(i) / static_cast<double>(c.rope_dims));
    cos_sin[2 * i] = static_cast<float>(std::cos(theta));
    cos_sin[2 * i + 1] = static_cast<float>(std::sin(theta));
  }
}

void apply_rope(const ModelConfig& c, const float* cs, float* x, int64_t head_count) {
  const int64_t pairs = c.rope_dims / 2;
  for (int64_t h = 0; h < head_count; ++h) {
    float* v = x + h * c.head_dim;
    for (int64_t i = 0; i < pairs; ++i) {
      const int64_t a = c.rope_mode == RopeMode::kNormal ? 2 * i : i;
      const int64_t b = c.rope_mode == RopeMode::kNormal ? 2 * i + 1 : i + pairs;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs[2 * i] - x1 * cs[2 * i + 1];
      v[b] = x0 * cs[2 * i + 1] + x1 * cs[2 * i];
    }
  }
}

void Model::check_batch(const Batch& b) const {
  const size_t n = b.tokens.size();
  RAG_ASSERT(n > 0 && b.positions.size() == n && b.kv.size() == n && b.want_logits.size() == n);
  std::map<const KvBlocks*, int64_t> next;
  for (size_t i = 0; i < n; ++i) {
    const KvBlocks* kv = b.kv[i];
    RAG_ASSERT(kv && kv->layout == config_.kv_layout());
    if (b.tokens[i] < 0 || b.tokens[i] >= config_.vocab_size)
      fail(Errc::kInvalidArgument, "{}: token id {} is outside the vocabulary of {} tokens", file_->path(),
           b.tokens[i], config_.vocab_size);
    auto [it, inserted] = next.try_emplace(kv, kv->length);
    RAG_ASSERT(b.positions[i] == it->second);  // a sequence's tokens continue its cache, in order
    ++it->second;
    if (b.positions[i] >= config_.context_length)
      fail(Errc::kLimit, "{}: position {} is past the model's context length of {} tokens", file_->path(),
           b.positions[i], config_.context_length);
    if (b.positions[i] >= kv->capacity())
      fail(Errc::kLimit, "{}: position {} is past the KV cache's capacity of {} tokens", file_->path(),
           b.positions[i], kv->capacity());
  }
}

void Model::embed(int32_t token, float* out) const {
  const auto* row = static_cast<const uint8_t*>(token_embd_.data) +
                    static_cast<size_t>(token) * nn::row_bytes(token_embd_.type, token_embd_.cols);
  nn::dequantize_row(token_embd_.type, row, out, token_embd_.cols);
}

// Attention in tiles with an online softmax (nn::attention_block), so that each key and value row loaded
// meets many query rows (prefill) and no score matrix longer than one KV block is ever stored:
//   a run is a stretch of the batch from one sequence at consecutive positions; a task is one KV head of
//   one run and a tile of up to kAttentionTileTokens of its tokens, whose R = T × group query rows (row
//   t × group + h: query head kv_head × group + h of token t) see the same keys, positions [0, L) with
//   L = the tile's last position + 1;
//   Qᵀ (head_dim × R) is packed and pre-scaled, then the tile walks the KV blocks in order, K and V rows read
//   in place (from an F16 cache, converted a block at a time), each row masked causally to positions ≤ its
//   own; rows that see nothing of a block skip it.
// The tile used to shrink as L grew (the whole L-long score matrix had to fit in L2): at L = 2000 it held
// 4 tokens and every K and V row was read again for each 4 query tokens. A row's result depends only on
// its own query and the blocks it sees, so batching and chunking leave every row's bits unchanged.
namespace {

int64_t padded_rows(int64_t rows) {
  return (rows + nn::kAttentionRowVector - 1) / nn::kAttentionRowVector * nn::kAttentionRowVector;
}

}  // namespace

void Model::attention(const Batch& b, int64_t layer, ForwardScratch& s) const {
  const ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(b.tokens.size());
  const int64_t group = c.head_count / c.head_count_kv, hd = c.head_dim, q_dim = c.q_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  using Task = ForwardScratch::AttentionTask;
  std::vector<Task>& tasks = s.attention_tasks;
  tasks.clear();
  int64_t work = 0, max_rows = 0;
  // Tiles hold a multiple of lane_tokens tokens, so that their group × tokens query rows fill the kernel's
  // lanes: with 7 query heads per KV head, 28-token tiles left 12 of the 16 lanes of their 13th pass idle.
  const int64_t lane_tokens = nn::kAttentionRowLanes / std::gcd(group, nn::kAttentionRowLanes);
  const int64_t max_tile = std::max(lane_tokens, kAttentionTileTokens / lane_tokens * lane_tokens);
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1;
    while (j < n && b.kv[static_cast<size_t>(j)] == b.kv[static_cast<size_t>(i)] &&
           b.positions[static_cast<size_t>(j)] == b.positions[static_cast<size_t>(j - 1)] + 1)
      ++j;
    // As few tiles as max_tile allows, each as short as whole lanes allow; only the last may be shorter
    // (112 tokens: 32, 32, 32, 16), and the longest-first dynamic schedule below evens out the threads.
    const int64_t tiles = (j - i + max_tile - 1) / max_tile;
    const int64_t even = (j - i + tiles - 1) / tiles;
    const int64_t tile = std::min(max_tile, (even + lane_tokens - 1) / lane_tokens * lane_tokens);
    for (int64_t t0 = i; t0 < j; t0 += tile) {
      const int64_t count = std::min(tile, j - t0);
      const int64_t keys = b.positions[static_cast<size_t>(t0 + count - 1)] + 1;
      for (int64_t g = 0; g < c.head_count_kv; ++g) tasks.push_back({t0, count, g, keys});
      work += count * keys * 2 * q_dim;
      max_rows = std::max(max_rows, padded_rows(group * count));
    }
    i = j;
  }
  // Longest first, so that the dynamic schedule ends with short tasks.
  std::stable_sort(tasks.begin(), tasks.end(), [](const Task& x, const Task& y) { return x.keys * x.count > y.keys * y.count; });

  const int threads = work >= kAttentionParallelMinWork ? std::max(1, omp_get_max_threads()) : 1;
  const int64_t per_thread = 2 * max_rows * hd + 2 * max_rows;
  s.scores.resize(static_cast<size_t>(threads * per_thread));
  s.visible.resize(static_cast<size_t>(threads * max_rows));
  const bool bf16 = attention_bf16_ && nn::attention_bf16_available(hd);
  const int64_t pairs = hd / 2;
  if (bf16) s.q_pairs.resize(static_cast<size_t>(threads * max_rows * pairs));
  // An F16 cache's block is converted once per task and block (2 × 16 × head_dim values) and then meets
  // all of the tile's rows, so the kernels stay the F32 ones.
  const bool f16 = c.kv_type == nn::TensorType::kF16;
  const int64_t block_values = kKvBlockTokens * hd;
  if (f16) s.kv_f32.resize(static_cast<size_t>(threads * 2 * block_values));
  // Nothing here throws (the batch was checked before the pass started).
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
  for (size_t task = 0; task < tasks.size(); ++task) {
    const Task& k = tasks[task];
    const KvBlocks& kv = *b.kv[static_cast<size_t>(k.first)];
    // `lanes` query rows: the tile's `rows`, then padding rows that see no key (visible 0, so the kernel
    // leaves them as they are) up to whole vectors of lanes, so that no pass needs masked loads and stores.
    const int64_t rows = group * k.count, lanes = padded_rows(rows);
    const int64_t first_pos = b.positions[static_cast<size_t>(k.first)];
    float* q_t = s.scores.data() + omp_get_thread_num() * per_thread;  // Qᵀ: hd × lanes
    float* out_t = q_t + lanes * hd;                                    // Oᵀ: hd × lanes
    float* max = out_t + lanes * hd;
    float* sum = max + lanes;
    int32_t* visible = s.visible.data() + omp_get_thread_num() * max_rows;
    uint32_t* q_pairs = bf16 ? s.q_pairs.data() + omp_get_thread_num() * max_rows * pairs : nullptr;
    float* k_f32 = f16 ? s.kv_f32.data() + omp_get_thread_num() * 2 * block_values : nullptr;
    float* v_f32 = f16 ? k_f32 + block_values : nullptr;
    for (int64_t t = 0; t < k.count; ++t) {
      const float* q = s.q.data() + (k.first + t) * q_dim + k.kv_head * group * hd;
      for (int64_t h = 0; h < group; ++h) {
        const float* qh = q + h * hd;
        const int64_t r = t * group + h;
        if (bf16) {
          nn::f32_to_bf16_pairs(qh, scale, pairs, q_pairs + r, lanes);
        } else {
          for (int64_t d = 0; d < hd; ++d) q_t[d * lanes + r] = qh[d] * scale;
        }
      }
    }
    for (int64_t r = rows; r < lanes; ++r) {
      if (bf16) {
        for (int64_t i = 0; i < pairs; ++i) q_pairs[i * lanes + r] = 0;
      } else {
        for (int64_t d = 0; d < hd; ++d) q_t[d * lanes + r] = 0.0f;
      }
    }
    std::fill(visible + rows, visible + lanes, 0);
    std::fill(out_t, out_t + lanes * hd, 0.0f);
    std::fill(max, max + lanes, std::numeric_limits<float>::lowest());
    std::fill(sum, sum + lanes, 0.0f);
    for (int64_t p = 0; p < k.keys; p += kKvBlockTokens) {
      const int64_t block = std::min(kKvBlockTokens, k.keys - p);
      // Token t (position first_pos + t) sees positions ≤ its own: of this block, those before
      // first_pos + t + 1 - p. Tokens that see none of it come first; the call leaves out the whole vectors
      // of their rows.
      const int64_t skip = std::clamp<int64_t>(p - first_pos, 0, k.count);
      const int64_t r0 = skip * group / nn::kAttentionRowVector * nn::kAttentionRowVector;
      std::fill(visible + r0, visible + skip * group, 0);
      for (int64_t t = skip; t < k.count; ++t) {
        const auto seen = static_cast<int32_t>(std::min(block, first_pos + t + 1 - p));
        std::fill_n(visible + t * group, group, seen);
      }
      nn::AttentionBlock a;
      a.rows = lanes - r0;
      a.head_dim = hd;
      a.ld = lanes;
      a.q_t = q_t + r0;
      a.q_pairs = bf16 ? q_pairs + r0 : nullptr;
      const std::byte* k_rows = kv.key(layer, p, k.kv_head);
      const std::byte* v_rows = kv.value(layer, p, k.kv_head);
      if (f16) {
        nn::f16_to_f32_row(reinterpret_cast<const uint16_t*>(k_rows), k_f32, block * hd);
        nn::f16_to_f32_row(reinterpret_cast<const uint16_t*>(v_rows), v_f32, block * hd);
        a.k = k_f32;
        a.v = v_f32;
      } else {
        a.k = reinterpret_cast<const float*>(k_rows);
        a.v = reinterpret_cast<const float*>(v_rows);
      }
      a.kv_stride = hd;
      a.keys = block;
      a.visible = visible + r0;
      a.max = max + r0;
      a.sum = sum + r0;
      a.out_t = out_t + r0;
      nn::attention_block(a);
    }
    for (int64_t t = 0; t < k.count; ++t) {
      float* o = s.attn.data() + (k.first + t) * q_dim + k.kv_head * group * hd;
      for (int64_t h = 0; h < group; ++h) {
        const int64_t r = t * group + h;
        const float inverse = 1.0f / sum[r];
        for (int64_t d = 0; d < hd; ++d) o[h * hd + d] = out_t[d * lanes + r] * inverse;
      }
    }
  }
}

void Model::forward(const Batch& b, ForwardScratch& s, std::vector<float>& logits) const {
  check_batch(b);
  const ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(b.tokens.size());
  const int64_t dim = c.embedding_length, ff = c.feed_forward_length, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  s.x.resize(static_cast<size_t>(n * dim));
  s.h.resize(static_cast<size_t>(n * std::max(dim, q_dim)));
  s.q.resize(static_cast<size_t>(n * q_dim));
  s.k.resize(static_cast<size_t>(n * kv_dim));
  s.v.resize(static_cast<size_t>(n * kv_dim));
  s.attn.resize(static_cast<size_t>(n * q_dim));
  s.ff_gate.resize(static_cast<size_t>(n * ff));
  s.ff_up.resize(static_cast<size_t>(n * ff));
  s.rope.resize(static_cast<size_t>(n * c.rope_dims));
  for (int64_t t = 0; t < n; ++t) rope_angles(c, b.positions[static_cast<size_t>(t)], s.rope.data() + t * c.rope_dims);

  // The batch in at most two parts that take their kernels apart: first the tokens that are alone of their
  // sequence in the batch (decode steps: the engine puts them first), then the rest (prompt chunks). So a
  // decode token meets the matrix-vector kernels (matvec, or matvec_batch for up to kMatvecBatchTokens of
  // them, which round exactly as matvec does) even beside a prefill, and rounds as generate()'s decode;
  // prompt chunks meet the matrix-matrix kernels as they would alone. Each part's products share their
  // parallel regions; a step holding both pays for reading the weights twice.
  int64_t alone = 0;
  auto sequence_at = [&](int64_t t) { return b.kv[static_cast<size_t>(t)]; };
  while (alone < n && (alone == 0 || sequence_at(alone - 1) != sequence_at(alone)) &&
         (alone + 1 == n || sequence_at(alone + 1) != sequence_at(alone)))
    ++alone;
  const int64_t split = alone < n ? alone : 0;  // 0: one part, [0, n)
  auto for_parts = [&](auto&& f) {
    if (split > 0) f(int64_t{0}, split);
    f(split, n - split);
  };
  auto product = [](const nn::Weights& w, const float* in, float* out, int64_t rows) {
    if (rows == 1) {
      nn::matvec(w, in, out);
    } else {
      nn::matmul(w, in, rows, out);
    }
  };
  auto add_bias = [](const std::vector<float>& bias, float* y, int64_t width) {
    if (!bias.empty()) nn::add(y, bias.data(), y, width);
  };

  for (int64_t t = 0; t < n; ++t) embed(b.tokens[static_cast<size_t>(t)], s.x.data() + t * dim);

  for (int64_t l = 0; l < c.layer_count; ++l) {
    const LayerWeights& w = layers_[static_cast<size_t>(l)];
    for_each_token(n, dim, [&](int64_t t) {
      nn::rms_norm(s.x.data() + t * dim, w.attn_norm.data(), s.h.data() + t * dim, dim, c.rms_eps);
    });
    for_parts([&](int64_t t0, int64_t count) {
      const nn::Product qkv[] = {
          {w.wq, s.q.data() + t0 * q_dim}, {w.wk, s.k.data() + t0 * kv_dim}, {w.wv, s.v.data() + t0 * kv_dim}};
      nn::matmul_multi(qkv, 3, s.h.data() + t0 * dim, count);
    });
    for_each_token(n, q_dim + 2 * kv_dim, [&](int64_t t) {
      float* q = s.q.data() + t * q_dim;
      float* k = s.k.data() + t * kv_dim;
      add_bias(w.bq, q, q_dim);
      add_bias(w.bk, k, kv_dim);
      add_bias(w.bv, s.v.data() + t * kv_dim, kv_dim);
      apply_rope(c, s.rope.data() + t * c.rope_dims, q, c.head_count);
      apply_rope(c, s.rope.data() + t * c.rope_dims, k, c.head_count_kv);
      b.kv[static_cast<size_t>(t)]->store(l, b.positions[static_cast<size_t>(t)], k, s.v.data() + t * kv_dim);
    });
    attention(b, l, s);
    for_parts([&](int64_t t0, int64_t count) {
      product(w.wo, s.attn.data() + t0 * q_dim, s.h.data() + t0 * dim, count);
    });
    for_each_token(n, dim, [&](int64_t t) {
      float* x = s.x.data() + t * dim;
      nn::add(x, s.h.data() + t * dim, x, dim);
      nn::rms_norm(x, w.ffn_norm.data(), s.h.data() + t * dim, dim, c.rms_eps);
    });
    for_parts([&](int64_t t0, int64_t count) {
      const nn::Product gate_up[] = {{w.gate, s.ff_gate.data() + t0 * ff}, {w.up, s.ff_up.data() + t0 * ff}};
      nn::matmul_multi(gate_up, 2, s.h.data() + t0 * dim, count);
    });
    // An exp per value, weighed as four adds, so that 8 decode tokens' SwiGLU splits across the team too
    // (bench/decoder, Q4_0, 8 sequences: 487-491 -> 491-495 tok/s over four alternated pairs).
    for_each_token(n, 4 * ff, [&](int64_t t) {
      nn::swiglu(s.ff_gate.data() + t * ff, s.ff_up.data() + t * ff, s.ff_gate.data() + t * ff, ff);
    });
    for_parts([&](int64_t t0, int64_t count) {
      product(w.down, s.ff_gate.data() + t0 * ff, s.h.data() + t0 * dim, count);
    });
    for_each_token(n, dim, [&](int64_t t) { nn::add(s.x.data() + t * dim, s.h.data() + t * dim, s.x.data() + t * dim, dim); });
  }
  for (int64_t t = 0; t < n; ++t) {
    KvBlocks& kv = *b.kv[static_cast<size_t>(t)];
    kv.length = std::max(kv.length, b.positions[static_cast<size_t>(t)] + 1);
  }

  int64_t m = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (!b.want_logits[static_cast<size_t>(t)]) continue;
    nn::rms_norm(s.x.data() + t * dim, output_norm_.data(), s.h.data() + m * dim, dim, c.rms_eps);
    ++m;
  }
  logits.resize(static_cast<size_t>(m * c.vocab_size));
  if (m > 0) product(output_, s.h.data(), logits.data(), m);
}

}  // namespace rag::generate
