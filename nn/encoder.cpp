// The BERT encoder: loading and checking the model, the forward pass over a packed batch, pooling and the
// classification head. nn/encoder.h describes the model and the text rules.
//
// OpenMP regions: the embedding and attention loops run under a ParallelError (each holds a fault point,
// "encoder.parallel", so tests fail a worker inside a region); the element-wise loops call kernels over
// buffers sized before the region, which do not throw.
//
// A forward pass holds, for T packed tokens: x (T × dim, the residual stream), q, k, v, ctx (T × dim each)
// and the FFN activations (T × ffn); forward passes are cut at kBatchTokens tokens to bound that memory.
#include "nn/encoder.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "common/error.h"
#include "common/fault.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/parallel-error.h"
#include "nn/gguf.h"
#include "nn/kernels.h"
#include "nn/tokenizer.h"

namespace rag::nn {

namespace {

// Tokens per forward pass: ~60 MB of activations for a 768-wide model, plenty of rows for the GEMMs.
constexpr int64_t kBatchTokens = 2048;

// Below this many floats of element-wise work a loop runs on one thread: waking a team costs more than it
// saves, and on a loaded machine a barrier can wait for a descheduled thread for milliseconds.
constexpr int64_t kParallelMinWork = 1 << 15;

// Caps on metadata values: far above any real BERT, low enough that products of them cannot overflow.
constexpr int64_t kMaxDim = 1 << 16;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxFfn = 1 << 20;
constexpr int64_t kMaxContext = 1 << 20;

struct Layer {
  Weights q, k, v, o, up, down;
  // Biases: empty when the file has none (treated as zero).
  std::vector<float> q_bias, k_bias, v_bias, o_bias, up_bias, down_bias;
  std::vector<float> attn_norm_weight, attn_norm_bias;     // attn_output_norm
  std::vector<float> output_norm_weight, output_norm_bias; // layer_output_norm
};

int64_t checked_int(const GgufFile& file, const std::string& key, int64_t min, int64_t max) {
  const int64_t v = file.require_int(key);
  if (v < min || v > max) fail(Errc::kCorrupt, "{}: metadata {} = {} is outside [{}, {}]", file.path(), key, v, min, max);
  return v;
}

// A matrix used in place: ne = {cols, rows} in GGUF order.
Weights matrix(const GgufFile& file, const std::string& name, int64_t cols, int64_t rows) {
  const GgufTensor& t = file.require_tensor(name, {cols, rows});
  if (cols % static_cast<int64_t>(block_size(t.type)) != 0) {
    fail(Errc::kCorrupt, "{}: tensor '{}' of type {} has rows of {} values, not whole blocks", file.path(), name,
         tensor_type_name(t.type), cols);
  }
  return Weights{t.type, t.data, rows, cols};
}

// A vector of n values copied to float; empty when `optional` and absent.
std::vector<float> vector(const GgufFile& file, const std::string& name, int64_t n, bool optional = false) {
  if (optional && file.find_tensor(name) == nullptr) return {};
  const GgufTensor& t = file.require_tensor(name, {n});
  if (n % static_cast<int64_t>(block_size(t.type)) != 0) {
    fail(Errc::kCorrupt, "{}: tensor '{}' of type {} has {} values, not whole blocks", file.path(), name,
         tensor_type_name(t.type), n);
  }
  std::vector<float> v(static_cast<size_t>(n));
  dequantize_row(t.type, t.data, v.data(), n);
  for (float value : v) {
    if (!std::isfinite(value)) fail(Errc::kCorrupt, "{}: tensor '{}' holds a value that is not finite", file.path(), name);
  }
  return v;
}

// Appends a canonical text of a metadata value, for the identity hash.
void append_value(std::string& out, const GgufValue& value) {
  out += std::to_string(static_cast<uint32_t>(value.type));
  out += ':';
  std::visit(
      [&out](const auto& v) {
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, std::string>) {
          out += std::to_string(v.size());
          out += ':';
          out += v;
        } else if constexpr (std::is_same_v<V, std::shared_ptr<GgufArray>>) {
          out += '[';
          if (v) {
            for (const GgufValue& element : v->values) {
              append_value(out, element);
              out += ',';
            }
          }
          out += ']';
        } else if constexpr (std::is_same_v<V, double>) {
          out += fmt::format("{}", v);
        } else {
          out += std::to_string(v);
        }
      },
      value.value);
}

void add_bias(float* y, const std::vector<float>& bias, int64_t n, int64_t rows) {
  if (bias.empty()) return;
#pragma omp parallel for schedule(static) if (rows * n >= kParallelMinWork)
  for (int64_t t = 0; t < rows; ++t) add(y + t * n, bias.data(), y + t * n, n);
}

void l2_normalize(float* x, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  if (sum <= 0.0) return;
  const float inverse = static_cast<float>(1.0 / std::sqrt(sum));
  for (int64_t i = 0; i < n; ++i) x[i] *= inverse;
}

}  // namespace

std::string_view pooling_name(Pooling pooling) {
  switch (pooling) {
    case Pooling::kMean: return "mean";
    case Pooling::kCls: return "cls";
    case Pooling::kRank: return "rank";
  }
  return "?";
}

struct Encoder::Impl {
  std::unique_ptr<GgufFile> file;
  EncoderConfig config;
  std::string identity;
  const GgufTensor* token_embd = nullptr;
  const GgufTensor* position_embd = nullptr;
  const GgufTensor* token_types = nullptr;   // nullptr when absent
  std::vector<float> embd_norm_weight, embd_norm_bias;
  std::vector<Layer> layers;
  // Classification head (rank models): cls is dim × dim, cls_out classes × dim (absent: `classes` = dim and
  // the tanh output is the result).
  Weights cls;
  std::vector<float> cls_bias;
  Weights cls_out;
  std::vector<float> cls_out_bias;
  bool has_cls_out = false;
  std::unique_ptr<Tokenizer> tokenizer;
  int32_t cls_token = kNoToken;
  int32_t sep_token = kNoToken;

  void load();
  void check(const std::vector<EncoderSequence>& sequences) const;
  // Runs one forward pass over `sequences` (already checked) and returns T × dim last hidden states.
  std::vector<float> forward(const EncoderSequence* sequences, size_t count) const;
  // Calls `f(first, count, hidden)` for groups of sequences of at most kBatchTokens tokens (at least one).
  template <typename F>
  void for_each_batch(const std::vector<EncoderSequence>& sequences, F&& f) const;
  std::vector<float> pool(const std::vector<EncoderSequence>& sequences) const;
  std::vector<float> score(const std::vector<EncoderSequence>& sequences) const;
};

void Encoder::Impl::load() {
  const GgufFile& f = *file;
  const std::string& path = f.path();
  const std::string arch = f.require_string("general.architecture");
  if (arch != "bert") {
    fail(Errc::kUnsupported, "{}: architecture '{}' is not an encoder this build runs (expected 'bert': BERT, "
         "MiniLM, bge, e5 as llama.cpp's convert_hf_to_gguf.py writes them)", path, arch);
  }
  EncoderConfig& c = config;
  c.name = f.get_string("general.name", "");
  if (c.name.empty()) c.name = path.substr(path.find_last_of('/') + 1);
  c.dim = checked_int(f, "bert.embedding_length", 1, kMaxDim);
  c.layers = checked_int(f, "bert.block_count", 1, kMaxLayers);
  c.heads = checked_int(f, "bert.attention.head_count", 1, c.dim);
  if (c.dim % c.heads != 0) {
    fail(Errc::kCorrupt, "{}: bert.embedding_length {} is not a multiple of bert.attention.head_count {}", path, c.dim,
         c.heads);
  }
  if (const GgufValue* kv = f.find("bert.attention.head_count_kv")) {
    if (kv->as_int("bert.attention.head_count_kv") != c.heads) {
      fail(Errc::kUnsupported, "{}: bert.attention.head_count_kv differs from head_count; grouped-query attention "
           "is not supported in encoders", path);
    }
  }
  c.ffn = checked_int(f, "bert.feed_forward_length", 1, kMaxFfn);
  c.context = checked_int(f, "bert.context_length", 4, kMaxContext);
  c.eps = f.get_float("bert.attention.layer_norm_epsilon", 1e-12);
  if (!(c.eps > 0.0 && c.eps < 1.0)) {
    fail(Errc::kCorrupt, "{}: metadata bert.attention.layer_norm_epsilon = {} is not in (0, 1)", path, c.eps);
  }
  if (const GgufValue* causal = f.find("bert.attention.causal"); causal && causal->as_bool("bert.attention.causal")) {
    fail(Errc::kUnsupported, "{}: bert.attention.causal is true; an encoder attends both ways", path);
  }

  token_embd = &f.require_tensor("token_embd.weight");
  if (token_embd->ne.size() != 2 || token_embd->ne[0] != c.dim || token_embd->ne[1] < 1) {
    fail(Errc::kCorrupt, "{}: tensor 'token_embd.weight' must have shape [{}, vocab]", path, c.dim);
  }
  c.vocab = token_embd->ne[1];
  position_embd = &f.require_tensor("position_embd.weight", {c.dim, c.context});
  token_types = f.find_tensor("token_types.weight");
  if (token_types != nullptr) {
    if (token_types->ne.size() != 2 || token_types->ne[0] != c.dim || token_types->ne[1] < 1 ||
        token_types->ne[1] > 16) {
      fail(Errc::kCorrupt, "{}: tensor 'token_types.weight' must have shape [{}, 1..16]", path, c.dim);
    }
    c.token_types = token_types->ne[1];
    const int64_t declared = f.get_int("tokenizer.ggml.token_type_count", c.token_types);
    if (declared != c.token_types) {
      fail(Errc::kCorrupt, "{}: tokenizer.ggml.token_type_count is {} but tensor 'token_types.weight' has {} rows",
           path, declared, c.token_types);
    }
  }
  for (const GgufTensor* t : {token_embd, position_embd, token_types}) {
    if (t != nullptr && c.dim % static_cast<int64_t>(block_size(t->type)) != 0) {
      fail(Errc::kCorrupt, "{}: tensor '{}' of type {} has rows of {} values, not whole blocks", path, t->name,
           tensor_type_name(t->type), c.dim);
    }
  }
  embd_norm_weight = vector(f, "token_embd_norm.weight", c.dim);
  embd_norm_bias = vector(f, "token_embd_norm.bias", c.dim);

  if (f.find_tensor("blk.0.attn_qkv.weight") != nullptr) {
    fail(Errc::kUnsupported, "{}: fused attention weights (blk.N.attn_qkv) are not supported; convert the model "
         "with llama.cpp's convert_hf_to_gguf.py as arch 'bert'", path);
  }
  layers.resize(static_cast<size_t>(c.layers));
  for (int64_t i = 0; i < c.layers; ++i) {
    Layer& l = layers[static_cast<size_t>(i)];
    const std::string p = fmt::format("blk.{}.", i);
    l.q = matrix(f, p + "attn_q.weight", c.dim, c.dim);
    l.k = matrix(f, p + "attn_k.weight", c.dim, c.dim);
    l.v = matrix(f, p + "attn_v.weight", c.dim, c.dim);
    l.o = matrix(f, p + "attn_output.weight", c.dim, c.dim);
    l.up = matrix(f, p + "ffn_up.weight", c.dim, c.ffn);
    l.down = matrix(f, p + "ffn_down.weight", c.ffn, c.dim);
    l.q_bias = vector(f, p + "attn_q.bias", c.dim, true);
    l.k_bias = vector(f, p + "attn_k.bias", c.dim, true);
    l.v_bias = vector(f, p + "attn_v.bias", c.dim, true);
    l.o_bias = vector(f, p + "attn_output.bias", c.dim, true);
    l.up_bias = vector(f, p + "ffn_up.bias", c.ffn, true);
    l.down_bias = vector(f, p + "ffn_down.bias", c.dim, true);
    l.attn_norm_weight = vector(f, p + "attn_output_norm.weight", c.dim);
    l.attn_norm_bias = vector(f, p + "attn_output_norm.bias", c.dim);
    l.output_norm_weight = vector(f, p + "layer_output_norm.weight", c.dim);
    l.output_norm_bias = vector(f, p + "layer_output_norm.bias", c.dim);
  }
  if (f.find_tensor(fmt::format("blk.{}.attn_q.weight", c.layers)) != nullptr) {
    fail(Errc::kCorrupt, "{}: tensor 'blk.{}.attn_q.weight' is beyond bert.block_count = {}", path, c.layers,
         c.layers);
  }

  const bool has_head = f.find_tensor("cls.weight") != nullptr || f.find_tensor("cls.output.weight") != nullptr;
  const int64_t pooling = f.get_int("bert.pooling_type", has_head ? 4 : 1);
  switch (pooling) {
    case 1: c.pooling = Pooling::kMean; break;
    case 2: c.pooling = Pooling::kCls; break;
    case 4: c.pooling = Pooling::kRank; break;
    default:
      fail(Errc::kUnsupported, "{}: bert.pooling_type {} is not supported (1 mean, 2 cls, 4 rank are)", path, pooling);
  }
  if (c.pooling == Pooling::kRank) {
    cls = matrix(f, "cls.weight", c.dim, c.dim);
    cls_bias = vector(f, "cls.bias", c.dim);
    if (const GgufTensor* out = f.find_tensor("cls.output.weight")) {
      if (out->ne.size() != 2 || out->ne[0] != c.dim || out->ne[1] < 1 || out->ne[1] > c.dim) {
        fail(Errc::kCorrupt, "{}: tensor 'cls.output.weight' must have shape [{}, classes]", path, c.dim);
      }
      c.classes = out->ne[1];
      cls_out = matrix(f, "cls.output.weight", c.dim, c.classes);
      cls_out_bias = vector(f, "cls.output.bias", c.classes);
      has_cls_out = true;
    } else {
      c.classes = c.dim;
    }
  }

  tokenizer = Tokenizer::from_gguf(f);
  cls_token = tokenizer->cls();
  sep_token = tokenizer->sep();
  if (cls_token == kNoToken || sep_token == kNoToken) {
    fail(Errc::kCorrupt, "{}: the vocabulary has no [CLS]/[SEP] tokens (tokenizer.ggml.cls_token_id, "
         "tokenizer.ggml.seperator_token_id) to frame a sequence", path);
  }
  if (tokenizer->vocab_size() > static_cast<size_t>(c.vocab)) {
    fail(Errc::kCorrupt, "{}: tokenizer.ggml.tokens has {} tokens but tensor 'token_embd.weight' only {} rows", path,
         tokenizer->vocab_size(), c.vocab);
  }

  // Identity: metadata and tensor table as canonical text, then the tensor bytes in file order.
  std::string header;
  for (const auto& [key, value] : f.metadata()) {
    header += key;
    header += '=';
    append_value(header, value);
    header += '\n';
  }
  std::vector<const GgufTensor*> by_offset;
  for (const GgufTensor& t : f.tensors()) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) { return a->offset < b->offset; });
  for (const GgufTensor* t : by_offset) {
    header += fmt::format("{}:{}:{}:{}\n", t->name, tensor_type_name(t->type), fmt::join(t->ne, "x"), t->offset);
    header += hash_bytes(std::string_view(static_cast<const char*>(t->data), t->nbytes)).hex();
    header += '\n';
  }
  identity = fmt::format("{}/{}/d{}/{}", c.name, pooling_name(c.pooling), c.dim, hash_bytes(header).hex().substr(0, 16));
}

void Encoder::Impl::check(const std::vector<EncoderSequence>& sequences) const {
  const int64_t type_count = std::max<int64_t>(config.token_types, 1);
  for (size_t s = 0; s < sequences.size(); ++s) {
    const EncoderSequence& seq = sequences[s];
    if (seq.ids.empty() || static_cast<int64_t>(seq.ids.size()) > config.context) {
      fail(Errc::kInvalidArgument, "encoder: sequence {} has {} tokens; {} takes 1 to {}", s, seq.ids.size(),
           config.name, config.context);
    }
    if (!seq.types.empty() && seq.types.size() != seq.ids.size()) {
      fail(Errc::kInvalidArgument, "encoder: sequence {} has {} token types for {} tokens", s, seq.types.size(),
           seq.ids.size());
    }
    for (int32_t id : seq.ids) {
      if (id < 0 || id >= config.vocab) {
        fail(Errc::kInvalidArgument, "encoder: sequence {} has token id {} outside the vocabulary of {}", s, id,
             config.vocab);
      }
    }
    for (int32_t type : seq.types) {
      if (type < 0 || type >= type_count) {
        fail(Errc::kInvalidArgument, "encoder: sequence {} has token type {}; {} has {} token type(s)", s, type,
             config.name, type_count);
      }
    }
  }
}

std::vector<float> Encoder::Impl::forward(const EncoderSequence* sequences, size_t count) const {
  const int64_t d = config.dim;
  const int64_t ffn = config.ffn;
  const int64_t head_dim = d / config.heads;
  const float eps = static_cast<float>(config.eps);

  // Where each sequence starts in the packed batch.
  std::vector<int64_t> start(count + 1, 0);
  for (size_t s = 0; s < count; ++s) start[s + 1] = start[s] + static_cast<int64_t>(sequences[s].ids.size());
  const int64_t n = start[count];
  int64_t longest = 0;
  for (size_t s = 0; s < count; ++s) longest = std::max(longest, start[s + 1] - start[s]);

  std::vector<float> x(static_cast<size_t>(n * d));
  std::vector<float> q(x.size()), k(x.size()), v(x.size()), ctx(x.size());
  std::vector<float> h(static_cast<size_t>(n * ffn));
  const int threads = omp_get_max_threads();
  // Per thread: one row of attention weights, and the job's keys and values transposed (head_dim rows of
  // `longest`), so that both products run as long contiguous vector operations over the sequence.
  const size_t scratch_size = static_cast<size_t>((2 * head_dim + 1) * longest);
  std::vector<float> scratch(static_cast<size_t>(threads) * scratch_size);

  // Token, type and position embeddings, then their layer norm. The quantized-table case needs one row of
  // scratch per token: q serves.
  const size_t token_row = row_bytes(token_embd->type, d);
  const size_t position_row = row_bytes(position_embd->type, d);
  const size_t type_row = token_types ? row_bytes(token_types->type, d) : 0;
  const auto* token_base = static_cast<const uint8_t*>(token_embd->data);
  const auto* position_base = static_cast<const uint8_t*>(position_embd->data);
  const auto* type_base = token_types ? static_cast<const uint8_t*>(token_types->data) : nullptr;
  ParallelError error;
#pragma omp parallel for schedule(static) if (n * d >= kParallelMinWork)
  for (int64_t s = 0; s < static_cast<int64_t>(count); ++s) error.run([&] {
    fault::hit("encoder.parallel");
    const EncoderSequence& seq = sequences[s];
    for (int64_t i = 0; i < start[s + 1] - start[s]; ++i) {
      float* row = x.data() + (start[s] + i) * d;
      float* scratch = q.data() + (start[s] + i) * d;
      dequantize_row(token_embd->type, token_base + seq.ids[i] * token_row, row, d);
      dequantize_row(position_embd->type, position_base + i * position_row, scratch, d);
      add(row, scratch, row, d);
      if (type_base != nullptr) {
        const int64_t type = seq.types.empty() ? 0 : seq.types[i];
        dequantize_row(token_types->type, type_base + type * type_row, scratch, d);
        add(row, scratch, row, d);
      }
      layer_norm(row, embd_norm_weight.data(), embd_norm_bias.data(), row, d, eps);
    }
  });
  error.rethrow();

  const float attention_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  const int64_t jobs = static_cast<int64_t>(count) * config.heads;
  int64_t attention_work = 0;
  for (size_t s = 0; s < count; ++s) attention_work += (start[s + 1] - start[s]) * (start[s + 1] - start[s]) * d;
  for (const Layer& l : layers) {
    matmul(l.q, x.data(), n, q.data());
    matmul(l.k, x.data(), n, k.data());
    matmul(l.v, x.data(), n, v.data());
    add_bias(q.data(), l.q_bias, d, n);
    add_bias(k.data(), l.k_bias, d, n);
    add_bias(v.data(), l.v_bias, d, n);

    // One job per (sequence, head); a job sees only its own sequence's keys: the mask is the packing.
#pragma omp parallel for schedule(dynamic) if (attention_work >= kParallelMinWork)
    for (int64_t job = 0; job < jobs; ++job) error.run([&] {
      fault::hit("encoder.parallel");
      const int64_t s = job / config.heads;
      const int64_t head = job % config.heads;
      const int64_t first = start[s];
      const int64_t len = start[s + 1] - first;
      float* p = scratch.data() + static_cast<size_t>(omp_get_thread_num()) * scratch_size;
      float* kt = p + longest;
      float* vt = kt + head_dim * longest;
      for (int64_t j = 0; j < len; ++j) {
        const float* kj = k.data() + (first + j) * d + head * head_dim;
        const float* vj = v.data() + (first + j) * d + head * head_dim;
        for (int64_t e = 0; e < head_dim; ++e) {
          kt[e * len + j] = kj[e];
          vt[e * len + j] = vj[e];
        }
      }
      for (int64_t i = 0; i < len; ++i) {
        const float* qi = q.data() + (first + i) * d + head * head_dim;
        std::fill(p, p + len, 0.0f);
        for (int64_t e = 0; e < head_dim; ++e) axpy(qi[e] * attention_scale, kt + e * len, p, len);
        softmax(p, len);
        float* out = ctx.data() + (first + i) * d + head * head_dim;
        for (int64_t e = 0; e < head_dim; ++e) out[e] = dot_f32(p, vt + e * len, len);
      }
    });
    error.rethrow();

    matmul(l.o, ctx.data(), n, q.data());
    add_bias(q.data(), l.o_bias, d, n);
#pragma omp parallel for schedule(static) if (n * d >= kParallelMinWork)
    for (int64_t t = 0; t < n; ++t) {
      float* row = x.data() + t * d;
      add(row, q.data() + t * d, row, d);
      layer_norm(row, l.attn_norm_weight.data(), l.attn_norm_bias.data(), row, d, eps);
    }

    matmul(l.up, x.data(), n, h.data());
    add_bias(h.data(), l.up_bias, ffn, n);
#pragma omp parallel for schedule(static) if (n * ffn * 8 >= kParallelMinWork)
    for (int64_t t = 0; t < n; ++t) gelu(h.data() + t * ffn, h.data() + t * ffn, ffn);
    matmul(l.down, h.data(), n, q.data());
    add_bias(q.data(), l.down_bias, d, n);
#pragma omp parallel for schedule(static) if (n * d >= kParallelMinWork)
    for (int64_t t = 0; t < n; ++t) {
      float* row = x.data() + t * d;
      add(row, q.data() + t * d, row, d);
      layer_norm(row, l.output_norm_weight.data(), l.output_norm_bias.data(), row, d, eps);
    }
  }
  return x;
}

template <typename F>
void Encoder::Impl::for_each_batch(const std::vector<EncoderSequence>& sequences, F&& f) const {
  size_t first = 0;
  while (first < sequences.size()) {
    size_t end = first;
    int64_t tokens = 0;
    while (end < sequences.size() &&
           (end == first || tokens + static_cast<int64_t>(sequences[end].ids.size()) <= kBatchTokens)) {
      tokens += static_cast<int64_t>(sequences[end].ids.size());
      ++end;
    }
    f(first, end - first, forward(sequences.data() + first, end - first));
    first = end;
  }
}

std::vector<float> Encoder::Impl::pool(const std::vector<EncoderSequence>& sequences) const {
  const int64_t d = config.dim;
  std::vector<float> out(sequences.size() * static_cast<size_t>(d), 0.0f);
  for_each_batch(sequences, [&](size_t first, size_t count, const std::vector<float>& hidden) {
    int64_t offset = 0;
    for (size_t s = first; s < first + count; ++s) {
      const int64_t len = static_cast<int64_t>(sequences[s].ids.size());
      float* row = out.data() + s * static_cast<size_t>(d);
      if (config.pooling == Pooling::kMean) {
        // Summed in double: a 512-token mean of values near 1 keeps its low bits.
        std::vector<double> sum(static_cast<size_t>(d), 0.0);
        for (int64_t t = 0; t < len; ++t) {
          const float* h = hidden.data() + (offset + t) * d;
          for (int64_t e = 0; e < d; ++e) sum[e] += h[e];
        }
        for (int64_t e = 0; e < d; ++e) row[e] = static_cast<float>(sum[e] / static_cast<double>(len));
      } else {
        std::copy_n(hidden.data() + offset * d, d, row);
      }
      l2_normalize(row, d);
      offset += len;
    }
  });
  return out;
}

std::vector<float> Encoder::Impl::score(const std::vector<EncoderSequence>& sequences) const {
  const int64_t d = config.dim;
  const int64_t n = static_cast<int64_t>(sequences.size());
  std::vector<float> first_tokens(static_cast<size_t>(n * d));
  for_each_batch(sequences, [&](size_t first, size_t count, const std::vector<float>& hidden) {
    int64_t offset = 0;
    for (size_t s = first; s < first + count; ++s) {
      std::copy_n(hidden.data() + offset * d, d, first_tokens.data() + s * static_cast<size_t>(d));
      offset += static_cast<int64_t>(sequences[s].ids.size());
    }
  });
  std::vector<float> pooled(first_tokens.size());
  matmul(cls, first_tokens.data(), n, pooled.data());
  add_bias(pooled.data(), cls_bias, d, n);
  for (float& value : pooled) value = std::tanh(value);
  std::vector<float> scores(static_cast<size_t>(n));
  if (!has_cls_out) {
    for (int64_t i = 0; i < n; ++i) scores[i] = pooled[i * d];
    return scores;
  }
  std::vector<float> logits(static_cast<size_t>(n * config.classes));
  matmul(cls_out, pooled.data(), n, logits.data());
  add_bias(logits.data(), cls_out_bias, config.classes, n);
  for (int64_t i = 0; i < n; ++i) scores[i] = logits[i * config.classes];
  return scores;
}

Encoder::Encoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Encoder::~Encoder() = default;

std::unique_ptr<Encoder> Encoder::open(const std::string& gguf_path) {
  auto impl = std::make_unique<Impl>();
  impl->file = GgufFile::open(gguf_path);
  impl->load();
  const EncoderConfig& c = impl->config;
  spdlog::info("encoder: {} ({}): {} layers, dim {}, {} heads, ffn {}, {} tokens, {} pooling", gguf_path, c.name,
               c.layers, c.dim, c.heads, c.ffn, c.context, pooling_name(c.pooling));
  return std::unique_ptr<Encoder>(new Encoder(std::move(impl)));
}

const EncoderConfig& Encoder::config() const { return impl_->config; }
int Encoder::dim() const { return static_cast<int>(impl_->config.dim); }
int Encoder::max_tokens() const { return static_cast<int>(impl_->config.context); }
Pooling Encoder::pooling() const { return impl_->config.pooling; }
const std::string& Encoder::identity() const { return impl_->identity; }

std::vector<float> Encoder::embed_tokens(const std::vector<EncoderSequence>& sequences) const {
  if (is_reranker()) {
    fail(Errc::kUnsupported, "{}: is a reranker (pooling rank), not an embedding model; configure it as the "
         "reranker", impl_->file->path());
  }
  impl_->check(sequences);
  fault::hit("encoder.embed");
  return impl_->pool(sequences);
}

std::vector<float> Encoder::score_tokens(const std::vector<EncoderSequence>& sequences) const {
  if (!is_reranker()) {
    fail(Errc::kUnsupported, "{}: is an embedding model (pooling {}), not a reranker: it has no classification "
         "head (cls.weight)", impl_->file->path(), pooling_name(pooling()));
  }
  impl_->check(sequences);
  if (sequences.empty()) return {};
  fault::hit("encoder.score");
  return impl_->score(sequences);
}

EncoderSequence Encoder::tokenize(std::string_view text) const {
  std::vector<int32_t> words = impl_->tokenizer->encode(text, false);
  words.resize(std::min(words.size(), static_cast<size_t>(max_tokens() - 2)));
  EncoderSequence seq;
  seq.ids.reserve(words.size() + 2);
  seq.ids.push_back(impl_->cls_token);
  seq.ids.insert(seq.ids.end(), words.begin(), words.end());
  seq.ids.push_back(impl_->sep_token);
  return seq;
}

EncoderSequence Encoder::tokenize_pair(std::string_view query, std::string_view passage) const {
  std::vector<int32_t> q = impl_->tokenizer->encode(query, false);
  std::vector<int32_t> p = impl_->tokenizer->encode(passage, false);
  const size_t budget = static_cast<size_t>(max_tokens() - 3);
  if (q.size() + p.size() > budget) {
    const size_t keep_passage = std::min(p.size(), std::max(budget - std::min(budget, q.size()),
                                                            std::min(p.size(), budget / 2)));
    p.resize(keep_passage);
    q.resize(std::min(q.size(), budget - keep_passage));
  }
  const int32_t second = impl_->config.token_types >= 2 ? 1 : 0;
  EncoderSequence seq;
  seq.ids.reserve(q.size() + p.size() + 3);
  seq.ids.push_back(impl_->cls_token);
  seq.ids.insert(seq.ids.end(), q.begin(), q.end());
  seq.ids.push_back(impl_->sep_token);
  seq.types.assign(seq.ids.size(), 0);
  seq.ids.insert(seq.ids.end(), p.begin(), p.end());
  seq.ids.push_back(impl_->sep_token);
  seq.types.resize(seq.ids.size(), second);
  return seq;
}

std::vector<float> Encoder::embed(const std::vector<std::string>& texts) const {
  std::vector<EncoderSequence> sequences;
  sequences.reserve(texts.size());
  for (const std::string& text : texts) sequences.push_back(tokenize(text));
  return embed_tokens(sequences);
}

std::vector<float> Encoder::score_pairs(std::string_view query, const std::vector<std::string>& passages) const {
  std::vector<EncoderSequence> sequences;
  sequences.reserve(passages.size());
  for (const std::string& passage : passages) sequences.push_back(tokenize_pair(query, passage));
  return score_tokens(sequences);
}

std::vector<float> Encoder::hidden_states(const std::vector<EncoderSequence>& sequences) const {
  impl_->check(sequences);
  std::vector<float> out;
  impl_->for_each_batch(sequences, [&](size_t, size_t, const std::vector<float>& hidden) {
    out.insert(out.end(), hidden.begin(), hidden.end());
  });
  return out;
}

}  // namespace rag::nn
