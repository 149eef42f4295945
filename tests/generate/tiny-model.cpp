#include "tests/generate/tiny-model.h"

#include <cmath>
#include <random>

#include "nn/gguf.h"
#include "nn/tensor.h"

namespace rag::generate::test {
namespace {

using Matrix = std::vector<float>;

std::vector<double> matvec(const Matrix& w, const std::vector<double>& x, int64_t rows) {
  const int64_t cols = static_cast<int64_t>(x.size());
  std::vector<double> y(static_cast<size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r] += static_cast<double>(w[r * cols + c]) * x[c];
  return y;
}

std::vector<double> rms_norm(const std::vector<double>& x, const Matrix& weight) {
  double sum = 0.0;
  for (double v : x) sum += v * v;
  const double inv = 1.0 / std::sqrt(sum / static_cast<double>(x.size()) + 1e-5);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * weight[i];
  return y;
}

void rope(std::vector<double>& x, int64_t heads, int64_t head_dim, int64_t pos, double base, bool neox) {
  for (int64_t h = 0; h < heads; ++h) {
    double* v = x.data() + h * head_dim;
    for (int64_t i = 0; i < head_dim / 2; ++i) {
      const double theta = static_cast<double>(pos) * std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
      const int64_t a = neox ? i : 2 * i, b = neox ? i + head_dim / 2 : 2 * i + 1;
      const double x0 = v[a], x1 = v[b];
      v[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
      v[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
    }
  }
}

}  // namespace

TinyModel make_tiny_model(const TinySpec& s) {
  TinyModel m;
  m.spec = s;
  std::mt19937 rng(s.seed);
  auto random = [&](int64_t n, float mean, float stddev) {
    std::normal_distribution<float> dist(mean, stddev);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
  };
  const int64_t head_dim = s.dim / s.heads, q_dim = s.heads * head_dim, kv_dim = s.kv_heads * head_dim;
  auto matrix = [&](int64_t rows, int64_t cols) { return random(rows * cols, 0.0f, 1.0f / std::sqrt(static_cast<float>(cols))); };
  m.tensors["token_embd.weight"] = random(s.vocab * s.dim, 0.0f, 1.0f);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    m.tensors[p + "attn_norm.weight"] = random(s.dim, 1.0f, 0.2f);
    m.tensors[p + "attn_q.weight"] = matrix(q_dim, s.dim);
    m.tensors[p + "attn_k.weight"] = matrix(kv_dim, s.dim);
    m.tensors[p + "attn_v.weight"] = matrix(kv_dim, s.dim);
    if (s.biases) {
      m.tensors[p + "attn_q.bias"] = random(q_dim, 0.0f, 0.5f);
      m.tensors[p + "attn_k.bias"] = random(kv_dim, 0.0f, 0.5f);
      m.tensors[p + "attn_v.bias"] = random(kv_dim, 0.0f, 0.5f);
    }
    m.tensors[p + "attn_output.weight"] = matrix(s.dim, q_dim);
    m.tensors[p + "ffn_norm.weight"] = random(s.dim, 1.0f, 0.2f);
    m.tensors[p + "ffn_gate.weight"] = matrix(s.ff, s.dim);
    m.tensors[p + "ffn_up.weight"] = matrix(s.ff, s.dim);
    m.tensors[p + "ffn_down.weight"] = matrix(s.dim, s.ff);
  }
  m.tensors["output_norm.weight"] = random(s.dim, 1.0f, 0.2f);
  if (!s.tied) m.tensors["output.weight"] = matrix(s.vocab, s.dim);
  return m;
}

void write_tiny_model(const TinyModel& m, const std::string& path) {
  const TinySpec& s = m.spec;
  const std::string& a = s.architecture;
  nn::GgufWriter w;
  w.set_string("general.architecture", a);
  w.set_uint32(a + ".context_length", static_cast<uint32_t>(s.context));
  w.set_uint32(a + ".embedding_length", static_cast<uint32_t>(s.dim));
  w.set_uint32(a + ".block_count", static_cast<uint32_t>(s.layers));
  w.set_uint32(a + ".feed_forward_length", static_cast<uint32_t>(s.ff));
  w.set_uint32(a + ".attention.head_count", static_cast<uint32_t>(s.heads));
  w.set_uint32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.kv_heads));
  w.set_float32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_float32(a + ".rope.freq_base", s.rope_base);
  if (s.vocabulary) {
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<int32_t> types = {2, 3, 3};
    for (int64_t i = 3; i < s.vocab; ++i) {
      tokens.push_back("\xE2\x96\x81w" + std::to_string(i));
      types.push_back(1);
    }
    std::vector<float> scores(tokens.size(), 0.0f);
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_string_array("tokenizer.ggml.tokens", tokens);
    w.set_float32_array("tokenizer.ggml.scores", scores);
    w.set_int32_array("tokenizer.ggml.token_type", types);
    w.set_uint32("tokenizer.ggml.bos_token_id", 1);
    w.set_uint32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(s.eos));
    w.set_uint32("tokenizer.ggml.unknown_token_id", 0);
  }
  const int64_t head_dim = s.dim / s.heads;
  for (const auto& [name, values] : m.tensors) {
    if (s.omit.count(name)) continue;
    const bool vector = name.find("norm") != std::string::npos || name.find(".bias") != std::string::npos;
    std::vector<int64_t> ne;
    if (vector) {
      ne = {static_cast<int64_t>(values.size())};
    } else {
      int64_t cols = s.dim;
      if (name.find("ffn_down") != std::string::npos) cols = s.ff;
      if (name.find("attn_output") != std::string::npos) cols = s.heads * head_dim;
      ne = {cols, static_cast<int64_t>(values.size()) / cols};
    }
    w.add_tensor_f32(name, vector ? nn::TensorType::kF32 : s.type, ne, values.data());
  }
  w.write(path);
}

std::vector<std::vector<double>> reference_logits(const TinyModel& m, const std::vector<int32_t>& tokens, bool kv_f16) {
  const TinySpec& s = m.spec;
  const int64_t head_dim = s.dim / s.heads, kv_dim = s.kv_heads * head_dim, group = s.heads / s.kv_heads;
  const bool neox = s.architecture == "qwen2";
  auto t = [&](const std::string& name) -> const Matrix& { return m.tensors.at(name); };
  std::vector<std::vector<std::vector<double>>> keys(static_cast<size_t>(s.layers)), values(static_cast<size_t>(s.layers));
  std::vector<std::vector<double>> out;
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    const Matrix& embd = t("token_embd.weight");
    std::vector<double> x(embd.begin() + tokens[pos] * s.dim, embd.begin() + (tokens[pos] + 1) * s.dim);
    for (int64_t l = 0; l < s.layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      std::vector<double> h = rms_norm(x, t(p + "attn_norm.weight"));
      std::vector<double> q = matvec(t(p + "attn_q.weight"), h, s.heads * head_dim);
      std::vector<double> k = matvec(t(p + "attn_k.weight"), h, kv_dim);
      std::vector<double> v = matvec(t(p + "attn_v.weight"), h, kv_dim);
      if (s.biases) {
        for (size_t i = 0; i < q.size(); ++i) q[i] += t(p + "attn_q.bias")[i];
        for (size_t i = 0; i < k.size(); ++i) k[i] += t(p + "attn_k.bias")[i];
        for (size_t i = 0; i < v.size(); ++i) v[i] += t(p + "attn_v.bias")[i];
      }
      rope(q, s.heads, head_dim, static_cast<int64_t>(pos), s.rope_base, neox);
      rope(k, s.kv_heads, head_dim, static_cast<int64_t>(pos), s.rope_base, neox);
      if (kv_f16) {
        for (double& e : k) e = nn::f16_to_f32(nn::f32_to_f16(static_cast<float>(e)));
        for (double& e : v) e = nn::f16_to_f32(nn::f32_to_f16(static_cast<float>(e)));
      }
      keys[l].push_back(k);
      values[l].push_back(v);
      std::vector<double> attn(q.size(), 0.0);
      for (int64_t head = 0; head < s.heads; ++head) {
        const int64_t kvh = head / group;
        std::vector<double> scores(pos + 1);
        double max_score = -1e300;
        for (size_t j = 0; j <= pos; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < head_dim; ++d) dot += q[head * head_dim + d] * keys[l][j][kvh * head_dim + d];
          scores[j] = dot / std::sqrt(static_cast<double>(head_dim));
          max_score = std::max(max_score, scores[j]);
        }
        double total = 0.0;
        for (double& sc : scores) total += (sc = std::exp(sc - max_score));
        for (size_t j = 0; j <= pos; ++j)
          for (int64_t d = 0; d < head_dim; ++d)
            attn[head * head_dim + d] += scores[j] / total * values[l][j][kvh * head_dim + d];
      }
      std::vector<double> o = matvec(t(p + "attn_output.weight"), attn, s.dim);
      for (int64_t i = 0; i < s.dim; ++i) x[i] += o[i];
      h = rms_norm(x, t(p + "ffn_norm.weight"));
      std::vector<double> gate = matvec(t(p + "ffn_gate.weight"), h, s.ff);
      std::vector<double> up = matvec(t(p + "ffn_up.weight"), h, s.ff);
      for (int64_t i = 0; i < s.ff; ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      std::vector<double> down = matvec(t(p + "ffn_down.weight"), gate, s.dim);
      for (int64_t i = 0; i < s.dim; ++i) x[i] += down[i];
    }
    std::vector<double> h = rms_norm(x, t("output_norm.weight"));
    out.push_back(matvec(s.tied ? t("token_embd.weight") : t("output.weight"), h, s.vocab));
  }
  return out;
}

double cosine(const std::vector<double>& a, const std::vector<float>& b) {
  double dot = 0.0, na = 0.0, nb = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  return dot / std::sqrt(na * nb);
}

}  // namespace rag::generate::test
