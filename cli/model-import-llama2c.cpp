// `rag model import-llama2c CHECKPOINT TOKENIZER OUT.gguf`: converts a llama2.c model into a llama-architecture
// GGUF the generator loads (F32, tensors and keys named as llama.cpp names them).
//
// llama2.c "legacy" checkpoint (karpathy/llama2.c, run.c), little-endian:
//   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//         (vocab_size < 0: the classifier is stored separately instead of shared with the embedding)
//   float32 tensors, row-major, each matrix [out][in]:
//     token_embedding_table [vocab][dim]           → token_embd.weight
//     rms_att_weight [layers][dim]                  → blk.N.attn_norm.weight
//     wq [layers][n_heads·hs][dim]                  → blk.N.attn_q.weight          (hs = dim / n_heads)
//     wk, wv [layers][n_kv_heads·hs][dim]           → blk.N.attn_k.weight, attn_v.weight
//     wo [layers][dim][n_heads·hs]                  → blk.N.attn_output.weight
//     rms_ffn_weight [layers][dim]                  → blk.N.ffn_norm.weight
//     w1 [layers][hidden][dim]                      → blk.N.ffn_gate.weight
//     w2 [layers][dim][hidden]                      → blk.N.ffn_down.weight
//     w3 [layers][hidden][dim]                      → blk.N.ffn_up.weight
//     rms_final_weight [dim]                        → output_norm.weight
//     freq_cis_real, freq_cis_imag [seq_len][hs/2]  skipped (RoPE is recomputed)
//     wcls [vocab][dim], only when not shared       → output.weight
// llama2.c rotates adjacent pairs (x[2i], x[2i+1]), which is ggml's "normal" RoPE of arch llama, so q and k
// are stored as they are (HF checkpoints need a permutation; these do not).
//
// llama2.c tokenizer: int32 max_token_length, then per token (vocab_size of them): float32 score,
// int32 length, length bytes. Ids 0, 1, 2 are <unk>, <s>, </s>; <0xNN> are byte tokens; spaces are plain
// spaces, which become SentencePiece's "▁" in the GGUF vocabulary.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "common/log.h"
#include "nn/gguf.h"

namespace rag::cli {
namespace {

// Far above any llama2.c model (the largest is 110M parameters) but small enough that products of these
// cannot overflow 64 bits.
constexpr int64_t kMaxDim = 1 << 16;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxVocab = 1 << 20;
constexpr int64_t kMaxSeqLen = 1 << 20;
constexpr int64_t kMaxTokenBytes = 1 << 16;

const CommandSpec& spec() {
  static const CommandSpec s = {
      "model import-llama2c",
      "CHECKPOINT TOKENIZER OUT.gguf",
      "Converts a llama2.c legacy checkpoint (e.g. stories15M.bin) and its tokenizer (tokenizer.bin) into a "
      "llama-architecture GGUF file with F32 weights and a SentencePiece vocabulary, for `rag generate`.",
      {},
  };
  return s;
}

std::vector<char> read_all(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(Errc::kNotFound, "{}: cannot open the llama2.c {}", path, what);
  const std::streamoff size = in.tellg();
  std::vector<char> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (!in.read(bytes.data(), size)) fail(Errc::kIo, "{}: cannot read the llama2.c {}", path, what);
  return bytes;
}

// Reads values in order, each checked against the bytes left.
class Reader {
 public:
  Reader(const std::string& path, const std::vector<char>& bytes) : path_(path), bytes_(bytes) {}

  template <typename T>
  T scalar(const std::string& what) {
    T v;
    need(sizeof v, what);
    std::memcpy(&v, bytes_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }

  const float* floats(uint64_t n, const std::string& what) {
    need(n * sizeof(float), what);
    const char* p = bytes_.data() + pos_;
    pos_ += n * sizeof(float);
    return reinterpret_cast<const float*>(p);
  }

  std::string text(uint64_t n, const std::string& what) {
    need(n, what);
    std::string s(bytes_.data() + pos_, n);
    pos_ += n;
    return s;
  }

  uint64_t left() const { return bytes_.size() - pos_; }

 private:
  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      fail(Errc::kCorrupt, "{}: {} needs {} bytes at offset {} but only {} are left (truncated file?)", path_, what,
           n, pos_, left());
  }
  const std::string& path_;
  const std::vector<char>& bytes_;
  uint64_t pos_ = 0;
};

struct Llama2cConfig {
  int64_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
  bool shared_classifier;
};

Llama2cConfig read_config(const std::string& path, Reader& r) {
  Llama2cConfig c{};
  auto field = [&](const char* name, int64_t min, int64_t max) {
    int64_t v = r.scalar<int32_t>(std::string("header field ") + name);
    if (v < min || v > max)
      fail(Errc::kCorrupt, "{}: header field {} is {}; expected {} to {} (is this a llama2.c legacy checkpoint?)",
           path, name, v, min, max);
    return v;
  };
  c.dim = field("dim", 1, kMaxDim);
  c.hidden_dim = field("hidden_dim", 1, kMaxDim * 8);
  c.n_layers = field("n_layers", 1, kMaxLayers);
  c.n_heads = field("n_heads", 1, c.dim);
  c.n_kv_heads = field("n_kv_heads", 1, c.n_heads);
  c.vocab_size = field("vocab_size", -kMaxVocab, kMaxVocab);
  c.seq_len = field("seq_len", 1, kMaxSeqLen);
  c.shared_classifier = c.vocab_size > 0;
  c.vocab_size = std::abs(c.vocab_size);
  if (c.vocab_size < 3) fail(Errc::kCorrupt, "{}: vocab_size {} is too small (ids 0-2 are <unk>, <s>, </s>)", path, c.vocab_size);
  if (c.dim % c.n_heads != 0 || (c.dim / c.n_heads) % 2 != 0)
    fail(Errc::kCorrupt, "{}: dim {} does not split into {} heads of an even size", path, c.dim, c.n_heads);
  if (c.n_heads % c.n_kv_heads != 0)
    fail(Errc::kCorrupt, "{}: n_heads {} is not a multiple of n_kv_heads {}", path, c.n_heads, c.n_kv_heads);
  return c;
}

bool is_byte_token(const std::string& text) {
  unsigned value;
  char tail;
  return text.size() == 6 && std::sscanf(text.c_str(), "<0x%2X%c", &value, &tail) == 2 && tail == '>';
}

void add_vocabulary(nn::GgufWriter& out, const std::string& path, int64_t vocab_size) {
  const std::vector<char> bytes = read_all(path, "tokenizer");
  Reader r(path, bytes);
  const int32_t max_token_length = r.scalar<int32_t>("max_token_length");
  if (max_token_length < 1 || max_token_length > kMaxTokenBytes)
    fail(Errc::kCorrupt, "{}: max_token_length {} is outside 1 to {}", path, max_token_length, kMaxTokenBytes);
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int64_t i = 0; i < vocab_size; ++i) {
    const std::string where = fmt::format("token {}", i);
    const float score = r.scalar<float>(where + " score");
    const int32_t length = r.scalar<int32_t>(where + " length");
    if (length < 0 || length > max_token_length)
      fail(Errc::kCorrupt, "{}: {} has length {}; expected 0 to max_token_length {}", path, where, length,
           max_token_length);
    std::string text = r.text(static_cast<uint64_t>(length), where + " text");
    if (!std::isfinite(score)) fail(Errc::kCorrupt, "{}: {} has a score that is not a finite number", path, where);
    int32_t type = 1;  // normal
    if (i == 0) {
      type = 2;  // unknown
      text = "<unk>";
    } else if (i == 1 || i == 2) {
      type = 3;  // control; llama2.c spells them "\n<s>\n" and "\n</s>\n"
      text = i == 1 ? "<s>" : "</s>";
    } else if (is_byte_token(text)) {
      type = 6;
    } else {
      std::string marked;
      for (char ch : text) marked += ch == ' ' ? std::string("\xE2\x96\x81") : std::string(1, ch);
      text = std::move(marked);
    }
    tokens.push_back(std::move(text));
    scores.push_back(score);
    types.push_back(type);
  }
  if (r.left() != 0)
    fail(Errc::kCorrupt, "{}: {} bytes follow the {} tokens the checkpoint's vocab_size names; is this the model's tokenizer?",
         path, r.left(), vocab_size);
  out.set_string("tokenizer.ggml.model", "llama");
  out.set_string_array("tokenizer.ggml.tokens", tokens);
  out.set_float32_array("tokenizer.ggml.scores", scores);
  out.set_int32_array("tokenizer.ggml.token_type", types);
  out.set_uint32("tokenizer.ggml.unknown_token_id", 0);
  out.set_uint32("tokenizer.ggml.bos_token_id", 1);
  out.set_uint32("tokenizer.ggml.eos_token_id", 2);
  out.set_bool("tokenizer.ggml.add_bos_token", true);
  out.set_bool("tokenizer.ggml.add_space_prefix", true);
}

}  // namespace

int cmd_model_import_llama2c(int argc, char** argv) {
  const ParsedArgs args = parse_args(spec(), argc, argv);
  if (args.has("help")) {
    std::printf("%s", usage(spec()).c_str());
    return kExitOk;
  }
  if (args.positional.size() != 3) {
    std::fprintf(stderr, "rag model import-llama2c: expected CHECKPOINT TOKENIZER OUT.gguf\n\n%s",
                 usage(spec()).c_str());
    return kExitUsage;
  }
  const std::string& checkpoint = args.positional[0];
  const std::string& tokenizer = args.positional[1];
  const std::string& out_path = args.positional[2];

  const std::vector<char> bytes = read_all(checkpoint, "checkpoint");
  Reader r(checkpoint, bytes);
  const Llama2cConfig c = read_config(checkpoint, r);
  const int64_t head_size = c.dim / c.n_heads;
  const int64_t q_dim = c.n_heads * head_size, kv_dim = c.n_kv_heads * head_size;
  const int64_t layers = c.n_layers;

  nn::GgufWriter out;
  out.set_string("general.architecture", "llama");
  out.set_string("general.name", checkpoint.substr(checkpoint.find_last_of('/') + 1));
  out.set_uint32("llama.context_length", static_cast<uint32_t>(c.seq_len));
  out.set_uint32("llama.embedding_length", static_cast<uint32_t>(c.dim));
  out.set_uint32("llama.block_count", static_cast<uint32_t>(layers));
  out.set_uint32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
  out.set_uint32("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
  out.set_uint32("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  out.set_float32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  out.set_uint32("llama.rope.dimension_count", static_cast<uint32_t>(head_size));
  out.set_float32("llama.rope.freq_base", 10000.0f);
  add_vocabulary(out, tokenizer, c.vocab_size);

  // Tensors in file order; per-layer tensors are stacked, layer l at l × its size.
  auto stacked = [&](const char* what, int64_t per_layer) {
    return r.floats(static_cast<uint64_t>(layers * per_layer), what);
  };
  const float* embd = r.floats(static_cast<uint64_t>(c.vocab_size * c.dim), "token_embedding_table");
  const float* rms_att = stacked("rms_att_weight", c.dim);
  const float* wq = stacked("wq", q_dim * c.dim);
  const float* wk = stacked("wk", kv_dim * c.dim);
  const float* wv = stacked("wv", kv_dim * c.dim);
  const float* wo = stacked("wo", c.dim * q_dim);
  const float* rms_ffn = stacked("rms_ffn_weight", c.dim);
  const float* w1 = stacked("w1", c.hidden_dim * c.dim);
  const float* w2 = stacked("w2", c.dim * c.hidden_dim);
  const float* w3 = stacked("w3", c.hidden_dim * c.dim);
  const float* rms_final = r.floats(static_cast<uint64_t>(c.dim), "rms_final_weight");
  r.floats(static_cast<uint64_t>(c.seq_len * head_size / 2), "freq_cis_real");
  r.floats(static_cast<uint64_t>(c.seq_len * head_size / 2), "freq_cis_imag");
  const float* wcls = c.shared_classifier ? nullptr : r.floats(static_cast<uint64_t>(c.vocab_size * c.dim), "wcls");
  if (r.left() != 0)
    fail(Errc::kCorrupt, "{}: {} bytes follow the last tensor; the header does not describe this file", checkpoint,
         r.left());

  const auto f32 = nn::TensorType::kF32;
  out.add_tensor("token_embd.weight", f32, {c.dim, c.vocab_size}, embd);
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    out.add_tensor(p + "attn_norm.weight", f32, {c.dim}, rms_att + l * c.dim);
    out.add_tensor(p + "attn_q.weight", f32, {c.dim, q_dim}, wq + l * q_dim * c.dim);
    out.add_tensor(p + "attn_k.weight", f32, {c.dim, kv_dim}, wk + l * kv_dim * c.dim);
    out.add_tensor(p + "attn_v.weight", f32, {c.dim, kv_dim}, wv + l * kv_dim * c.dim);
    out.add_tensor(p + "attn_output.weight", f32, {q_dim, c.dim}, wo + l * c.dim * q_dim);
    out.add_tensor(p + "ffn_norm.weight", f32, {c.dim}, rms_ffn + l * c.dim);
    out.add_tensor(p + "ffn_gate.weight", f32, {c.dim, c.hidden_dim}, w1 + l * c.hidden_dim * c.dim);
    out.add_tensor(p + "ffn_down.weight", f32, {c.hidden_dim, c.dim}, w2 + l * c.dim * c.hidden_dim);
    out.add_tensor(p + "ffn_up.weight", f32, {c.dim, c.hidden_dim}, w3 + l * c.hidden_dim * c.dim);
  }
  out.add_tensor("output_norm.weight", f32, {c.dim}, rms_final);
  if (wcls) out.add_tensor("output.weight", f32, {c.dim, c.vocab_size}, wcls);
  out.write(out_path);
  std::printf("wrote %s: llama, %lld layers, width %lld, %lld heads (%lld KV), vocabulary %lld, context %lld\n",
              out_path.c_str(), static_cast<long long>(layers), static_cast<long long>(c.dim),
              static_cast<long long>(c.n_heads), static_cast<long long>(c.n_kv_heads),
              static_cast<long long>(c.vocab_size), static_cast<long long>(c.seq_len));
  return kExitOk;
}

}  // namespace rag::cli
