// The encoder against a slow oracle: tiny random-weight BERT models written with GgufWriter, run by
// nn::Encoder and by a plain double-precision implementation of the same model over the dequantized weights
// (embeddings + layer norm, masked attention, GELU(erf) FFN, residual + layer norms, pooling, L2 norm, the
// classification head).
//
// Tolerances. F32 and F16 weights: the encoder and the oracle multiply the same values, so they differ only
// by float rounding through two layers: 1e-4 absolute on unit-norm embeddings and on hidden states of unit
// variance. Q8_0 and Q4_0: the kernels also quantize the activations to int8 blocks, so the comparison is by
// cosine against the oracle over the dequantized weights (≥ 0.999 for Q8_0, ≥ 0.99 for Q4_0), and by cosine
// against the F32 model's embeddings (≥ 0.99 for Q8_0, ≥ 0.95 for Q4_0: 4-bit random weights move the
// model itself).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "nn/encoder.h"
#include "nn/gguf.h"
#include "nn/tensor.h"
#include "tests/support/support.h"

namespace rag::nn {
namespace {

struct TinySpec {
  int64_t dim = 64;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t ffn = 128;
  int64_t vocab = 100;
  int64_t context = 64;
  int64_t token_types = 2;   // 0: no token_types.weight
  int pooling = 1;           // bert.pooling_type
  bool head = false;         // cls.weight/bias
  bool head_out = true;      // cls.output.weight/bias (with head)
  int64_t classes = 1;
  TensorType type = TensorType::kF32;   // of every matrix and embedding table
  uint32_t seed = 1;
};

// A model's tensors as the oracle sees them: the dequantized values of what was written.
struct TinyModel {
  TinySpec spec;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<std::string, std::vector<float>> values;
  std::map<std::string, TensorType> types;

  const std::vector<float>& operator[](const std::string& name) const { return values.at(name); }
  bool has(const std::string& name) const { return values.count(name) > 0; }
};

TinyModel make_model(const TinySpec& spec) {
  TinyModel m;
  m.spec = spec;
  std::mt19937 rng(spec.seed);
  auto add = [&](const std::string& name, std::vector<int64_t> ne, float scale, float offset, bool matrix) {
    int64_t count = 1;
    for (int64_t e : ne) count *= e;
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(count));
    for (float& x : v) x = offset + dist(rng);
    const TensorType type = matrix ? spec.type : TensorType::kF32;
    if (type != TensorType::kF32) {
      // What the file will hold, read back: the oracle works on these values.
      std::vector<uint8_t> bytes(row_bytes(type, ne[0]));
      for (int64_t r = 0; r < count / ne[0]; ++r) {
        quantize_row(type, v.data() + r * ne[0], bytes.data(), ne[0]);
        dequantize_row(type, bytes.data(), v.data() + r * ne[0], ne[0]);
      }
    }
    m.shapes[name] = ne;
    m.values[name] = std::move(v);
    m.types[name] = type;
  };
  const int64_t d = spec.dim;
  const float w = 1.0f / std::sqrt(static_cast<float>(d));
  add("token_embd.weight", {d, spec.vocab}, 1.0f, 0.0f, true);
  add("position_embd.weight", {d, spec.context}, 0.5f, 0.0f, true);
  if (spec.token_types > 0) add("token_types.weight", {d, spec.token_types}, 0.5f, 0.0f, true);
  add("token_embd_norm.weight", {d}, 0.1f, 1.0f, false);
  add("token_embd_norm.bias", {d}, 0.1f, 0.0f, false);
  for (int64_t i = 0; i < spec.layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    for (const char* name : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
      // Larger query/key weights give attention patterns far from uniform, so masking errors show.
      const float scale = std::string(name) == "attn_q" || std::string(name) == "attn_k" ? 2.0f * w : w;
      add(p + name + ".weight", {d, d}, scale, 0.0f, true);
      add(p + name + ".bias", {d}, 0.1f, 0.0f, false);
    }
    add(p + "attn_output_norm.weight", {d}, 0.1f, 1.0f, false);
    add(p + "attn_output_norm.bias", {d}, 0.1f, 0.0f, false);
    add(p + "ffn_up.weight", {d, spec.ffn}, w, 0.0f, true);
    add(p + "ffn_up.bias", {spec.ffn}, 0.1f, 0.0f, false);
    add(p + "ffn_down.weight", {spec.ffn, d}, 1.0f / std::sqrt(static_cast<float>(spec.ffn)), 0.0f, true);
    add(p + "ffn_down.bias", {d}, 0.1f, 0.0f, false);
    add(p + "layer_output_norm.weight", {d}, 0.1f, 1.0f, false);
    add(p + "layer_output_norm.bias", {d}, 0.1f, 0.0f, false);
  }
  if (spec.head) {
    add("cls.weight", {d, d}, w, 0.0f, true);
    add("cls.bias", {d}, 0.1f, 0.0f, false);
    if (spec.head_out) {
      add("cls.output.weight", {d, spec.classes}, w, 0.0f, true);
      add("cls.output.bias", {spec.classes}, 0.1f, 0.0f, false);
    }
  }
  return m;
}

// A WordPiece vocabulary as llama.cpp's converter stores it: word starts carry "▁", continuations do not.
std::vector<std::string> tiny_vocab(int64_t size) {
  std::vector<std::string> tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (const char* word : {"the", "cat", "sat", "on", "mat", "dog", "a", "is", "what", "where", "vacation", "policy",
                           "holiday", "days", "how", "many", "do", "we", "get", "per", "year", "employees",
                           "receive", "paid", "leave", ".", ",", "?", "!", "un"}) {
    tokens.push_back(std::string("\u2581") + word);
  }
  for (const char* piece : {"s", "ing", "ed", "known"}) tokens.push_back(piece);
  for (int64_t i = static_cast<int64_t>(tokens.size()); i < size; ++i) tokens.push_back("\u2581w" + std::to_string(i));
  return tokens;
}

int32_t token_id(const std::string& text) {
  const auto vocab = tiny_vocab(100);
  for (size_t i = 0; i < vocab.size(); ++i) {
    if (vocab[i] == text) return static_cast<int32_t>(i);
  }
  ADD_FAILURE() << "no token " << text;
  return -1;
}

// Metadata every tiny model gets; tests edit the writer afterwards to corrupt it.
void set_metadata(GgufWriter& writer, const TinySpec& spec) {
  writer.set_string("general.architecture", "bert");
  writer.set_string("general.name", "tiny-bert");
  writer.set_uint32("bert.embedding_length", static_cast<uint32_t>(spec.dim));
  writer.set_uint32("bert.block_count", static_cast<uint32_t>(spec.layers));
  writer.set_uint32("bert.feed_forward_length", static_cast<uint32_t>(spec.ffn));
  writer.set_uint32("bert.attention.head_count", static_cast<uint32_t>(spec.heads));
  writer.set_float32("bert.attention.layer_norm_epsilon", 1e-12f);
  writer.set_uint32("bert.context_length", static_cast<uint32_t>(spec.context));
  writer.set_bool("bert.attention.causal", false);
  writer.set_uint32("bert.pooling_type", static_cast<uint32_t>(spec.pooling));
  if (spec.token_types > 0) writer.set_uint32("tokenizer.ggml.token_type_count", static_cast<uint32_t>(spec.token_types));
  writer.set_string("tokenizer.ggml.model", "bert");
  const auto tokens = tiny_vocab(spec.vocab);
  writer.set_string_array("tokenizer.ggml.tokens", tokens);
  std::vector<int32_t> types(tokens.size(), 1);
  for (int i : {0, 2, 3, 4}) types[i] = 3;   // control
  types[1] = 2;                              // unknown
  writer.set_int32_array("tokenizer.ggml.token_type", types);
  writer.set_uint32("tokenizer.ggml.bos_token_id", 2);
  writer.set_uint32("tokenizer.ggml.padding_token_id", 0);
  writer.set_uint32("tokenizer.ggml.unknown_token_id", 1);
  writer.set_uint32("tokenizer.ggml.cls_token_id", 2);
  writer.set_uint32("tokenizer.ggml.seperator_token_id", 3);
  writer.set_uint32("tokenizer.ggml.mask_token_id", 4);
}

// Writes `model` to `path`; `skip` leaves a tensor out, `reshape` replaces a tensor's shape (and data).
void write_model(const TinyModel& model, const std::string& path, const std::string& skip = "",
                 const std::function<void(GgufWriter&)>& edit = nullptr) {
  GgufWriter writer;
  set_metadata(writer, model.spec);
  for (const auto& [name, values] : model.values) {
    if (name == skip) continue;
    writer.add_tensor_f32(name, model.types.at(name), model.shapes.at(name), values.data());
  }
  if (edit) edit(writer);
  writer.write(path);
}

// The oracle: BERT in double precision, one sequence at a time.
class Reference {
 public:
  explicit Reference(const TinyModel& model) : m_(model), s_(model.spec) {}

  // len × dim last hidden states.
  std::vector<double> hidden(const EncoderSequence& seq) const {
    const int64_t d = s_.dim;
    const int64_t len = static_cast<int64_t>(seq.ids.size());
    std::vector<double> x(static_cast<size_t>(len * d));
    for (int64_t t = 0; t < len; ++t) {
      for (int64_t e = 0; e < d; ++e) {
        double v = m_["token_embd.weight"][seq.ids[t] * d + e] + m_["position_embd.weight"][t * d + e];
        if (m_.has("token_types.weight")) v += m_["token_types.weight"][(seq.types.empty() ? 0 : seq.types[t]) * d + e];
        x[t * d + e] = v;
      }
    }
    norm(x, "token_embd_norm", len);
    const int64_t hd = d / s_.heads;
    for (int64_t i = 0; i < s_.layers; ++i) {
      const std::string p = "blk." + std::to_string(i) + ".";
      const auto q = linear(x, p + "attn_q", len, d, d);
      const auto k = linear(x, p + "attn_k", len, d, d);
      const auto v = linear(x, p + "attn_v", len, d, d);
      std::vector<double> ctx(x.size(), 0.0);
      for (int64_t h = 0; h < s_.heads; ++h) {
        for (int64_t a = 0; a < len; ++a) {
          std::vector<double> w(static_cast<size_t>(len));
          double max = -INFINITY;
          for (int64_t b = 0; b < len; ++b) {
            double dot = 0.0;
            for (int64_t e = 0; e < hd; ++e) dot += q[a * d + h * hd + e] * k[b * d + h * hd + e];
            w[b] = dot / std::sqrt(static_cast<double>(hd));
            max = std::max(max, w[b]);
          }
          double sum = 0.0;
          for (double& value : w) sum += (value = std::exp(value - max));
          for (int64_t b = 0; b < len; ++b) {
            for (int64_t e = 0; e < hd; ++e) ctx[a * d + h * hd + e] += w[b] / sum * v[b * d + h * hd + e];
          }
        }
      }
      const auto o = linear(ctx, p + "attn_output", len, d, d);
      for (size_t j = 0; j < x.size(); ++j) x[j] += o[j];
      norm(x, p + "attn_output_norm", len);
      auto up = linear(x, p + "ffn_up", len, d, s_.ffn);
      for (double& value : up) value = 0.5 * value * (1.0 + std::erf(value / std::sqrt(2.0)));
      const auto down = linear(up, p + "ffn_down", len, s_.ffn, d);
      for (size_t j = 0; j < x.size(); ++j) x[j] += down[j];
      norm(x, p + "layer_output_norm", len);
    }
    return x;
  }

  std::vector<double> embedding(const EncoderSequence& seq) const {
    const auto h = hidden(seq);
    const int64_t d = s_.dim;
    const int64_t len = static_cast<int64_t>(seq.ids.size());
    std::vector<double> e(static_cast<size_t>(d), 0.0);
    if (s_.pooling == 1) {
      for (int64_t t = 0; t < len; ++t) {
        for (int64_t j = 0; j < d; ++j) e[j] += h[t * d + j] / static_cast<double>(len);
      }
    } else {
      for (int64_t j = 0; j < d; ++j) e[j] = h[j];
    }
    double sum = 0.0;
    for (double value : e) sum += value * value;
    for (double& value : e) value /= std::sqrt(sum);
    return e;
  }

  double score(const EncoderSequence& seq) const {
    const auto h = hidden(seq);
    std::vector<double> first(h.begin(), h.begin() + s_.dim);
    auto pooled = linear(first, "cls", 1, s_.dim, s_.dim);
    for (double& value : pooled) value = std::tanh(value);
    if (!s_.head_out) return pooled[0];
    return linear(pooled, "cls.output", 1, s_.dim, s_.classes)[0];
  }

 private:
  // rows × out = x (rows × in) · Wᵀ + b
  std::vector<double> linear(const std::vector<double>& x, const std::string& name, int64_t rows, int64_t in,
                             int64_t out) const {
    const auto& w = m_[name + ".weight"];
    const auto& b = m_[name + ".bias"];
    std::vector<double> y(static_cast<size_t>(rows * out));
    for (int64_t t = 0; t < rows; ++t) {
      for (int64_t r = 0; r < out; ++r) {
        double sum = b[r];
        for (int64_t c = 0; c < in; ++c) sum += static_cast<double>(w[r * in + c]) * x[t * in + c];
        y[t * out + r] = sum;
      }
    }
    return y;
  }

  void norm(std::vector<double>& x, const std::string& name, int64_t rows) const {
    const int64_t d = s_.dim;
    const auto& w = m_[name + ".weight"];
    const auto& b = m_[name + ".bias"];
    for (int64_t t = 0; t < rows; ++t) {
      double mean = 0.0, var = 0.0;
      for (int64_t e = 0; e < d; ++e) mean += x[t * d + e] / static_cast<double>(d);
      for (int64_t e = 0; e < d; ++e) var += (x[t * d + e] - mean) * (x[t * d + e] - mean) / static_cast<double>(d);
      for (int64_t e = 0; e < d; ++e) x[t * d + e] = (x[t * d + e] - mean) / std::sqrt(var + 1e-12) * w[e] + b[e];
    }
  }

  const TinyModel& m_;
  const TinySpec& s_;
};

EncoderSequence random_sequence(std::mt19937& rng, int64_t len, int64_t vocab, int64_t types = 1) {
  EncoderSequence seq;
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  for (int64_t i = 0; i < len; ++i) seq.ids.push_back(id(rng));
  if (types > 1) {
    // Segment A then segment B, as a pair is laid out.
    for (int64_t i = 0; i < len; ++i) seq.types.push_back(i < len / 2 ? 0 : 1);
  }
  return seq;
}

std::vector<EncoderSequence> mixed_lengths(int64_t vocab, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  std::vector<EncoderSequence> seqs;
  for (int64_t len : {5, 1, 64, 17, 2, 33}) seqs.push_back(random_sequence(rng, len, vocab));
  return seqs;
}

double max_abs_diff(const float* a, const std::vector<double>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < b.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

double cosine(const float* a, const float* b, int64_t n) {
  double ab = 0.0, aa = 0.0, bb = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

class EncoderTest : public ::testing::Test {
 protected:
  std::unique_ptr<Encoder> open_model(const TinyModel& model, const std::string& file = "model.gguf") {
    const std::string path = dir_ / file;
    write_model(model, path);
    return Encoder::open(path);
  }
  // Expects Encoder::open to fail with `code` and a message containing `fragment`.
  void expect_open_error(const TinyModel& model, const std::string& skip, const std::function<void(GgufWriter&)>& edit,
                         Errc code, const std::string& fragment) {
    const std::string path = dir_ / "bad.gguf";
    write_model(model, path, skip, edit);
    try {
      Encoder::open(path);
      ADD_FAILURE() << "opened a bad model; expected: " << fragment;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  }
  test::TempDir dir_;
};

TEST_F(EncoderTest, HiddenStatesMatchReferenceF32) {
  const TinyModel model = make_model({});
  auto encoder = open_model(model);
  const Reference ref(model);
  const auto seqs = mixed_lengths(model.spec.vocab);
  const auto hidden = encoder->hidden_states(seqs);
  size_t offset = 0;
  for (const auto& seq : seqs) {
    const auto expected = ref.hidden(seq);
    EXPECT_LT(max_abs_diff(hidden.data() + offset, expected), 1e-4) << "length " << seq.ids.size();
    offset += expected.size();
  }
  EXPECT_EQ(offset, hidden.size());
}

// Mean and CLS pooling, F32 and F16 weights, all against the oracle to 1e-4.
TEST_F(EncoderTest, EmbeddingsMatchReference) {
  for (TensorType type : {TensorType::kF32, TensorType::kF16}) {
    for (int pooling : {1, 2}) {
      TinySpec spec;
      spec.type = type;
      spec.pooling = pooling;
      const TinyModel model = make_model(spec);
      auto encoder = open_model(model);
      ASSERT_EQ(encoder->pooling(), pooling == 1 ? Pooling::kMean : Pooling::kCls);
      ASSERT_EQ(encoder->dim(), spec.dim);
      const Reference ref(model);
      const auto seqs = mixed_lengths(spec.vocab);
      const auto got = encoder->embed_tokens(seqs);
      ASSERT_EQ(got.size(), seqs.size() * static_cast<size_t>(spec.dim));
      for (size_t i = 0; i < seqs.size(); ++i) {
        const float* row = got.data() + i * spec.dim;
        EXPECT_LT(max_abs_diff(row, ref.embedding(seqs[i])), 1e-4)
            << tensor_type_name(type) << " pooling " << pooling << " sequence " << i;
        double norm = 0.0;
        for (int64_t j = 0; j < spec.dim; ++j) norm += static_cast<double>(row[j]) * row[j];
        EXPECT_NEAR(norm, 1.0, 1e-5);
      }
    }
  }
}

TEST_F(EncoderTest, MeanAndClsPoolingDiffer) {
  TinySpec spec;
  const TinyModel mean_model = make_model(spec);
  spec.pooling = 2;
  const TinyModel cls_model = make_model(spec);   // same seed: same weights
  auto mean = open_model(mean_model, "mean.gguf");
  auto cls = open_model(cls_model, "cls.gguf");
  const auto seqs = mixed_lengths(spec.vocab);
  const auto a = mean->embed_tokens(seqs);
  const auto b = cls->embed_tokens(seqs);
  // A one-token sequence pools the same either way; longer ones do not.
  EXPECT_LT(1.0 - cosine(a.data() + 1 * spec.dim, b.data() + 1 * spec.dim, spec.dim), 1e-6);
  EXPECT_LT(cosine(a.data() + 2 * spec.dim, b.data() + 2 * spec.dim, spec.dim), 0.999);
  EXPECT_NE(mean->identity(), cls->identity());
}

TEST_F(EncoderTest, QuantizedWeightsStayCloseToReference) {
  TinySpec spec;
  const TinyModel f32_model = make_model(spec);
  auto f32 = open_model(f32_model, "f32.gguf");
  const auto seqs = mixed_lengths(spec.vocab);
  const auto f32_out = f32->embed_tokens(seqs);
  struct Case {
    TensorType type;
    double min_cosine_oracle;
    double min_cosine_f32;
  };
  for (const Case& c : {Case{TensorType::kQ8_0, 0.999, 0.99}, Case{TensorType::kQ4_0, 0.99, 0.95}}) {
    spec.type = c.type;
    const TinyModel model = make_model(spec);
    auto encoder = open_model(model, "quantized.gguf");
    const Reference ref(model);
    const auto got = encoder->embed_tokens(seqs);
    for (size_t i = 0; i < seqs.size(); ++i) {
      const auto expected = ref.embedding(seqs[i]);
      const std::vector<float> expected_f(expected.begin(), expected.end());
      const float* row = got.data() + i * spec.dim;
      EXPECT_GE(cosine(row, expected_f.data(), spec.dim), c.min_cosine_oracle) << tensor_type_name(c.type) << " " << i;
      EXPECT_GE(cosine(row, f32_out.data() + i * spec.dim, spec.dim), c.min_cosine_f32)
          << tensor_type_name(c.type) << " " << i;
    }
  }
}

// Packing sequences into one forward pass must not let them see each other: a batch equals each alone,
// also when the batch is cut into several forward passes (more than 2048 tokens).
TEST_F(EncoderTest, BatchEqualsEachAlone) {
  const TinyModel model = make_model({});
  auto encoder = open_model(model);
  std::mt19937 rng(3);
  std::vector<EncoderSequence> seqs = mixed_lengths(model.spec.vocab);
  for (int i = 0; i < 40; ++i) seqs.push_back(random_sequence(rng, 64 - i % 7, model.spec.vocab));
  const auto batch = encoder->embed_tokens(seqs);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto alone = encoder->embed_tokens({seqs[i]});
    for (int64_t j = 0; j < model.spec.dim; ++j) {
      ASSERT_NEAR(batch[i * model.spec.dim + j], alone[j], 1e-5) << "sequence " << i << " value " << j;
    }
  }
}

// An Encoder is shared by request threads: concurrent calls give what one call alone gives.
TEST_F(EncoderTest, ConcurrentCallsAgree) {
  const TinyModel model = make_model({});
  auto encoder = open_model(model);
  const auto seqs = mixed_lengths(model.spec.vocab);
  const auto expected = encoder->embed_tokens(seqs);
  std::vector<std::vector<float>> results(4);
  std::vector<std::thread> threads;
  for (auto& result : results) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) result = encoder->embed_tokens(seqs);
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& result : results) {
    ASSERT_EQ(result.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) ASSERT_NEAR(result[i], expected[i], 1e-5) << i;
  }
}

TEST_F(EncoderTest, CrossEncoderScoresMatchReference) {
  struct Case {
    const char* name;
    int64_t token_types;
    bool head_out;
    int64_t classes;
  };
  for (const Case& c : {Case{"two segments, one label", 2, true, 1}, Case{"three labels (first scored)", 2, true, 3},
                        Case{"no output projection", 2, false, 0}, Case{"one token type", 1, true, 1}}) {
    TinySpec spec;
    spec.pooling = 4;
    spec.head = true;
    spec.head_out = c.head_out;
    spec.classes = c.classes;
    spec.token_types = c.token_types;
    const TinyModel model = make_model(spec);
    auto encoder = open_model(model);
    ASSERT_TRUE(encoder->is_reranker()) << c.name;
    const Reference ref(model);
    std::mt19937 rng(11);
    std::vector<EncoderSequence> seqs;
    for (int64_t len : {9, 3, 64, 20}) seqs.push_back(random_sequence(rng, len, spec.vocab, c.token_types));
    const auto scores = encoder->score_tokens(seqs);
    ASSERT_EQ(scores.size(), seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) EXPECT_NEAR(scores[i], ref.score(seqs[i]), 1e-4) << c.name << " " << i;
    if (c.token_types == 2) {
      // Token types take part: the same ids as one segment score differently.
      EncoderSequence flat = seqs[0];
      flat.types.assign(flat.ids.size(), 0);
      const float flat_score = encoder->score_tokens({flat})[0];
      EXPECT_NEAR(flat_score, ref.score(flat), 1e-4) << c.name;
      EXPECT_GT(std::fabs(flat_score - scores[0]), 1e-4) << c.name;
    }
  }
}

TEST_F(EncoderTest, WrongJobIsUnsupported) {
  TinySpec spec;
  auto embedder = open_model(make_model(spec), "embedder.gguf");
  spec.pooling = 4;
  spec.head = true;
  auto reranker = open_model(make_model(spec), "reranker.gguf");
  const std::vector<EncoderSequence> seqs = {{{2, 5, 3}, {}}};
  try {
    embedder->score_tokens(seqs);
    ADD_FAILURE() << "an embedder scored pairs";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kUnsupported);
  }
  try {
    reranker->embed_tokens(seqs);
    ADD_FAILURE() << "a reranker embedded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kUnsupported);
  }
}

TEST_F(EncoderTest, BadTokenInputIsInvalidArgument) {
  const TinyModel model = make_model({});
  auto encoder = open_model(model);
  struct Case {
    const char* name;
    EncoderSequence seq;
  };
  const std::vector<Case> cases = {
      {"empty", {{}, {}}},
      {"too long", {std::vector<int32_t>(65, 4), {}}},
      {"id past the vocabulary", {{2, 100, 3}, {}}},
      {"negative id", {{2, -1, 3}, {}}},
      {"types of another length", {{2, 5, 3}, {0, 1}}},
      {"type past the count", {{2, 5, 3}, {0, 2, 0}}},
  };
  for (const Case& c : cases) {
    try {
      encoder->embed_tokens({c.seq});
      ADD_FAILURE() << c.name << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kInvalidArgument) << c.name << ": " << e.what();
    }
  }
  EXPECT_TRUE(encoder->embed_tokens({}).empty());
}

TEST_F(EncoderTest, IdentityFollowsTheWeights) {
  TinySpec spec;
  auto a = open_model(make_model(spec), "a.gguf");
  auto a_again = open_model(make_model(spec), "a2.gguf");
  spec.seed = 2;
  auto b = open_model(make_model(spec), "b.gguf");
  EXPECT_EQ(a->identity(), a_again->identity());
  EXPECT_NE(a->identity(), b->identity());
  EXPECT_EQ(a->identity().rfind("tiny-bert/mean/d64/", 0), 0u) << a->identity();
}

std::string words(int count) {
  std::string text;
  for (int i = 0; i < count; ++i) text += i % 2 ? " cat" : " dog";
  return text;
}

TEST_F(EncoderTest, TextIsFramedWithClsAndSep) {
  auto encoder = open_model(make_model({}));
  const EncoderSequence seq = encoder->tokenize("The cat sat on the mat.");
  const std::vector<int32_t> expected = {2, token_id("\u2581the"), token_id("\u2581cat"), token_id("\u2581sat"),
                                         token_id("\u2581on"), token_id("\u2581the"), token_id("\u2581mat"),
                                         token_id("\u2581."), 3};
  EXPECT_EQ(seq.ids, expected);
  EXPECT_TRUE(seq.types.empty());
  EXPECT_EQ(encoder->tokenize("").ids, (std::vector<int32_t>{2, 3}));

  // embed() is embed_tokens() of tokenize().
  const std::vector<std::string> texts = {"the cat sat", "", "where is the holiday policy?", words(200)};
  std::vector<EncoderSequence> seqs;
  for (const auto& text : texts) seqs.push_back(encoder->tokenize(text));
  EXPECT_EQ(encoder->embed(texts), encoder->embed_tokens(seqs));
  EXPECT_TRUE(encoder->embed({}).empty());
}

TEST_F(EncoderTest, LongTextKeepsItsBeginning) {
  auto encoder = open_model(make_model({}));
  const EncoderSequence seq = encoder->tokenize(words(200));
  ASSERT_EQ(seq.ids.size(), 64u);
  EXPECT_EQ(seq.ids.front(), 2);
  EXPECT_EQ(seq.ids.back(), 3);
  EXPECT_EQ(seq.ids[1], token_id("\u2581dog"));
  EXPECT_EQ(seq.ids[62], token_id("\u2581cat"));
  // Anything past the limit is cut: 62 words or 500 embed alike.
  EXPECT_EQ(encoder->embed({words(62)}), encoder->embed({words(500)}));
}

TEST_F(EncoderTest, PairsCutThePassageFirst) {
  TinySpec spec;
  spec.pooling = 4;
  spec.head = true;
  auto encoder = open_model(make_model(spec));
  struct Case {
    int query_words, passage_words;
    size_t query_kept, passage_kept;   // budget: 64 - 3 = 61 tokens
  };
  for (const Case& c : {Case{3, 5, 3, 5}, Case{10, 100, 10, 51}, Case{40, 40, 31, 30}, Case{100, 100, 31, 30},
                        Case{100, 10, 51, 10}, Case{0, 100, 0, 61}}) {
    const EncoderSequence seq = encoder->tokenize_pair(words(c.query_words), words(c.passage_words));
    SCOPED_TRACE(testing::Message() << c.query_words << " + " << c.passage_words);
    ASSERT_EQ(seq.ids.size(), c.query_kept + c.passage_kept + 3);
    ASSERT_EQ(seq.types.size(), seq.ids.size());
    EXPECT_EQ(seq.ids[0], 2);
    EXPECT_EQ(seq.ids[c.query_kept + 1], 3);
    EXPECT_EQ(seq.ids.back(), 3);
    for (size_t i = 0; i < seq.ids.size(); ++i) EXPECT_EQ(seq.types[i], i <= c.query_kept + 1 ? 0 : 1) << i;
  }
}

TEST_F(EncoderTest, ScorePairsMatchesReference) {
  TinySpec spec;
  spec.pooling = 4;
  spec.head = true;
  const TinyModel model = make_model(spec);
  auto encoder = open_model(model);
  const Reference ref(model);
  const std::string query = "how many vacation days do we get per year?";
  const std::vector<std::string> passages = {"employees receive 25 paid vacation days per year.", "the cat sat on the mat.",
                                             "", words(300)};
  const auto scores = encoder->score_pairs(query, passages);
  ASSERT_EQ(scores.size(), passages.size());
  for (size_t i = 0; i < passages.size(); ++i) {
    EXPECT_NEAR(scores[i], ref.score(encoder->tokenize_pair(query, passages[i])), 1e-4) << i;
  }
  EXPECT_TRUE(encoder->score_pairs(query, {}).empty());
}

// Malformed models: each names what is wrong.
TEST_F(EncoderTest, MalformedModelsAreTypedErrors) {
  TinySpec spec;
  const TinyModel model = make_model(spec);
  const std::vector<float> zeros(64 * 128, 0.0f);
  struct Case {
    const char* name;
    std::string skip;
    std::function<void(GgufWriter&)> edit;
    Errc code;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"missing ffn_up", "blk.1.ffn_up.weight", nullptr, Errc::kCorrupt, "blk.1.ffn_up.weight"},
      {"missing norm bias", "blk.0.layer_output_norm.bias", nullptr, Errc::kCorrupt, "blk.0.layer_output_norm.bias"},
      {"missing embeddings", "token_embd.weight", nullptr, Errc::kCorrupt, "token_embd.weight"},
      {"missing positions", "position_embd.weight", nullptr, Errc::kCorrupt, "position_embd.weight"},
      {"attn_q of the wrong shape", "blk.0.attn_q.weight",
       [&](GgufWriter& w) { w.add_tensor_f32("blk.0.attn_q.weight", TensorType::kF32, {64, 32}, zeros.data()); },
       Errc::kCorrupt, "blk.0.attn_q.weight"},
      {"ffn_down transposed", "blk.1.ffn_down.weight",
       [&](GgufWriter& w) { w.add_tensor_f32("blk.1.ffn_down.weight", TensorType::kF32, {64, 128}, zeros.data()); },
       Errc::kCorrupt, "blk.1.ffn_down.weight"},
      {"bias of the wrong length", "blk.0.attn_k.bias",
       [&](GgufWriter& w) { w.add_tensor_f32("blk.0.attn_k.bias", TensorType::kF32, {32}, zeros.data()); },
       Errc::kCorrupt, "blk.0.attn_k.bias"},
      {"embeddings of another width", "token_embd.weight",
       [&](GgufWriter& w) { w.add_tensor_f32("token_embd.weight", TensorType::kF32, {32, 100}, zeros.data()); },
       Errc::kCorrupt, "token_embd.weight"},
      {"context longer than the positions", "", [](GgufWriter& w) { w.set_uint32("bert.context_length", 128); },
       Errc::kCorrupt, "position_embd.weight"},
      {"heads do not divide the width", "", [](GgufWriter& w) { w.set_uint32("bert.attention.head_count", 5); },
       Errc::kCorrupt, "bert.attention.head_count"},
      {"zero layers", "", [](GgufWriter& w) { w.set_uint32("bert.block_count", 0); }, Errc::kCorrupt,
       "bert.block_count"},
      {"more layers than tensors", "", [](GgufWriter& w) { w.set_uint32("bert.block_count", 3); }, Errc::kCorrupt,
       "blk.2."},
      {"fewer layers than tensors", "", [](GgufWriter& w) { w.set_uint32("bert.block_count", 1); }, Errc::kCorrupt,
       "blk.1."},
      {"width of the wrong type", "", [](GgufWriter& w) { w.set_string("bert.embedding_length", "64"); },
       Errc::kCorrupt, "bert.embedding_length"},
      {"negative epsilon", "", [](GgufWriter& w) { w.set_float32("bert.attention.layer_norm_epsilon", -1.0f); },
       Errc::kCorrupt, "layer_norm_epsilon"},
      {"token type count disagrees", "", [](GgufWriter& w) { w.set_uint32("tokenizer.ggml.token_type_count", 3); },
       Errc::kCorrupt, "token_type_count"},
      {"last-token pooling", "", [](GgufWriter& w) { w.set_uint32("bert.pooling_type", 3); }, Errc::kUnsupported,
       "bert.pooling_type"},
      {"rank pooling without a head", "", [](GgufWriter& w) { w.set_uint32("bert.pooling_type", 4); },
       Errc::kCorrupt, "cls.weight"},
      {"a decoder", "", [](GgufWriter& w) { w.set_string("general.architecture", "llama"); }, Errc::kUnsupported,
       "llama"},
      {"causal attention", "", [](GgufWriter& w) { w.set_bool("bert.attention.causal", true); }, Errc::kUnsupported,
       "causal"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    expect_open_error(model, c.skip, c.edit, c.code, c.fragment);
  }
}

TEST_F(EncoderTest, MissingFileIsNotFound) {
  try {
    Encoder::open(dir_ / "absent.gguf");
    ADD_FAILURE() << "opened a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kNotFound) << e.what();
  }
}

}  // namespace
}  // namespace rag::nn
