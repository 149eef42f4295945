// `rag model embed` end to end: tiny random BERT models (an embedder and a reranker) are built byte by byte
// here, then embedded and scored through the binary. The numerics are checked against an oracle in
// tests/nn/encoder-test.cpp; this checks what a user sees: unit-norm vectors of the model's dimension,
// determinism, scores per passage, and errors that say which job a model does and which tensor is missing.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/support/support.h"

namespace rag {
namespace {

using nlohmann::json;

constexpr int64_t kDim = 32;
constexpr int64_t kFfn = 64;
constexpr int64_t kContext = 16;

class Bytes {
 public:
  std::string data;
  void u32(uint32_t v) { data.append(reinterpret_cast<const char*>(&v), 4); }
  void u64(uint64_t v) { data.append(reinterpret_cast<const char*>(&v), 8); }
  void f32(float v) { data.append(reinterpret_cast<const char*>(&v), 4); }
  void str(const std::string& s) {
    u64(s.size());
    data += s;
  }
  void pad() { data.resize((data.size() + 31) / 32 * 32, '\0'); }
};

struct Kv {
  std::string key;
  std::function<void(Bytes&)> value;   // writes the type and the value
};

Kv kv_u32(const std::string& key, uint32_t v) {
  return {key, [v](Bytes& b) { b.u32(4), b.u32(v); }};
}
Kv kv_f32(const std::string& key, float v) {
  return {key, [v](Bytes& b) { b.u32(6), b.f32(v); }};
}
Kv kv_string(const std::string& key, const std::string& v) {
  return {key, [v](Bytes& b) { b.u32(8), b.str(v); }};
}

const std::vector<std::string>& vocab() {
  static const std::vector<std::string> tokens = [] {
    std::vector<std::string> t = {"[PAD]", "[UNK]", "[CLS]", "[SEP]"};
    for (const char* w : {"the", "cat", "dog", "sat", "on", "mat", "vacation", "days", "how", "many", "?", "."}) {
      t.push_back(std::string("\u2581") + w);
    }
    return t;
  }();
  return tokens;
}

struct Tensor {
  std::string name;
  std::vector<int64_t> ne;
};

// Writes a one-layer BERT; `reranker` adds the classification head and rank pooling; `skip` leaves a tensor out.
void write_model(const std::string& path, bool reranker, const std::string& skip = "") {
  const int64_t vocab_size = static_cast<int64_t>(vocab().size());
  std::vector<Tensor> tensors = {
      {"token_embd.weight", {kDim, vocab_size}}, {"position_embd.weight", {kDim, kContext}},
      {"token_types.weight", {kDim, 2}},         {"token_embd_norm.weight", {kDim}},
      {"token_embd_norm.bias", {kDim}},
  };
  for (const char* m : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
    tensors.push_back({std::string("blk.0.") + m + ".weight", {kDim, kDim}});
    tensors.push_back({std::string("blk.0.") + m + ".bias", {kDim}});
  }
  tensors.push_back({"blk.0.ffn_up.weight", {kDim, kFfn}});
  tensors.push_back({"blk.0.ffn_up.bias", {kFfn}});
  tensors.push_back({"blk.0.ffn_down.weight", {kFfn, kDim}});
  tensors.push_back({"blk.0.ffn_down.bias", {kDim}});
  for (const char* norm : {"attn_output_norm", "layer_output_norm"}) {
    tensors.push_back({std::string("blk.0.") + norm + ".weight", {kDim}});
    tensors.push_back({std::string("blk.0.") + norm + ".bias", {kDim}});
  }
  if (reranker) {
    tensors.push_back({"cls.weight", {kDim, kDim}});
    tensors.push_back({"cls.bias", {kDim}});
    tensors.push_back({"cls.output.weight", {kDim, 1}});
    tensors.push_back({"cls.output.bias", {1}});
  }
  std::erase_if(tensors, [&](const Tensor& t) { return t.name == skip; });

  std::vector<Kv> kvs = {
      kv_string("general.architecture", "bert"), kv_string("general.name", "tiny-e2e-bert"),
      kv_u32("bert.embedding_length", kDim),    kv_u32("bert.block_count", 1),
      kv_u32("bert.feed_forward_length", kFfn), kv_u32("bert.attention.head_count", 2),
      kv_f32("bert.attention.layer_norm_epsilon", 1e-12f), kv_u32("bert.context_length", kContext),
      kv_u32("bert.pooling_type", reranker ? 4 : 1), kv_string("tokenizer.ggml.model", "bert"),
      kv_u32("tokenizer.ggml.bos_token_id", 2),  kv_u32("tokenizer.ggml.cls_token_id", 2),
      kv_u32("tokenizer.ggml.seperator_token_id", 3), kv_u32("tokenizer.ggml.unknown_token_id", 1),
      kv_u32("tokenizer.ggml.padding_token_id", 0),
      {"tokenizer.ggml.tokens", [](Bytes& b) {
         b.u32(9), b.u32(8), b.u64(vocab().size());
         for (const auto& t : vocab()) b.str(t);
       }},
  };

  Bytes b;
  b.data = "GGUF";
  b.u32(3);
  b.u64(tensors.size());
  b.u64(kvs.size());
  for (const Kv& kv : kvs) {
    b.str(kv.key);
    kv.value(b);
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors) {
    b.str(t.name);
    b.u32(static_cast<uint32_t>(t.ne.size()));
    int64_t count = 1;
    for (int64_t d : t.ne) b.u64(static_cast<uint64_t>(d)), count *= d;
    b.u32(0);  // F32
    b.u64(offset);
    offset = (offset + static_cast<uint64_t>(count) * 4 + 31) / 32 * 32;
  }
  b.pad();
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (const Tensor& t : tensors) {
    int64_t count = 1;
    for (int64_t d : t.ne) count *= d;
    // Norm weights near 1, everything else small and random.
    const bool norm_weight = t.name.find("norm.weight") != std::string::npos;
    for (int64_t i = 0; i < count; ++i) b.f32((norm_weight ? 1.0f : 0.0f) + normal(rng));
    b.pad();
  }
  test::write_file(path, b.data);
}

class E2eModelEmbed : public ::testing::Test {
 protected:
  void SetUp() override {
    write_model(embedder_, false);
    write_model(reranker_, true);
  }
  test::TempDir dir_;
  std::string embedder_ = dir_ / "embedder.gguf";
  std::string reranker_ = dir_ / "reranker.gguf";
};

TEST_F(E2eModelEmbed, JsonGivesUnitVectorsOfTheModelsDimension) {
  const auto r = test::run_rag({"model", "embed", "--json", embedder_, "the cat sat on the mat.", "how many days?",
                                "the cat sat on the mat."});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json out = json::parse(r.out);
  EXPECT_EQ(out["dim"], kDim);
  EXPECT_EQ(out["pooling"], "mean");
  EXPECT_EQ(out["max_tokens"], kContext);
  EXPECT_EQ(out["identity"].get<std::string>().rfind("tiny-e2e-bert/mean/d32/", 0), 0u) << out["identity"];
  const auto& vectors = out["embeddings"];
  ASSERT_EQ(vectors.size(), 3u);
  for (const auto& v : vectors) {
    ASSERT_EQ(v.size(), static_cast<size_t>(kDim));
    double norm = 0.0;
    for (double x : v) norm += x * x;
    EXPECT_NEAR(norm, 1.0, 1e-5);
  }
  // The same text gives the same vector (within float rounding: GEMM tiles round rows by their position).
  double same = 0.0, other = 0.0;
  for (int64_t i = 0; i < kDim; ++i) {
    same += vectors[0][i].get<double>() * vectors[2][i].get<double>();
    other += vectors[0][i].get<double>() * vectors[1][i].get<double>();
  }
  EXPECT_NEAR(same, 1.0, 1e-5);
  EXPECT_LT(other, 0.999);
}

TEST_F(E2eModelEmbed, PlainOutputShowsDimensionAndNorm) {
  const auto r = test::run_rag({"model", "embed", embedder_, "the dog", "the cat"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("tokens 4  dim 32  norm 1.000000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cosine similarity to text 0: 1:"), std::string::npos) << r.out;
}

TEST_F(E2eModelEmbed, PairScoresOnePerPassage) {
  const auto r = test::run_rag({"model", "embed", "--json", "--pair", "how many vacation days?", reranker_,
                                "vacation days.", "the cat sat on the mat.", "vacation days."});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json out = json::parse(r.out);
  EXPECT_EQ(out["pooling"], "rank");
  const auto& scores = out["scores"];
  ASSERT_EQ(scores.size(), 3u);
  for (double s : scores) EXPECT_TRUE(std::isfinite(s));
  EXPECT_NEAR(scores[0].get<double>(), scores[2].get<double>(), 1e-5);
  EXPECT_GT(std::fabs(scores[0].get<double>() - scores[1].get<double>()), 1e-4);
}

TEST_F(E2eModelEmbed, WrongJobAndBadInputAreClearErrors) {
  struct Case {
    const char* name;
    std::vector<std::string> args;
    int exit_code;
    const char* fragment;
  };
  const std::string missing = dir_ / "missing.gguf";
  const std::string broken = dir_ / "broken.gguf";
  write_model(broken, false, "blk.0.ffn_up.weight");
  const std::vector<Case> cases = {
      {"embedder asked for scores", {"model", "embed", "--pair", "q", embedder_, "p"}, 1, "not a reranker"},
      {"reranker asked for embeddings", {"model", "embed", reranker_, "p"}, 2, "--pair"},
      {"no text", {"model", "embed", embedder_}, 2, "at least one text"},
      {"missing file", {"model", "embed", missing, "text"}, 1, "missing.gguf"},
      {"missing tensor", {"model", "embed", broken, "text"}, 1, "blk.0.ffn_up.weight"},
  };
  for (const Case& c : cases) {
    const auto r = test::run_rag(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.name << ": " << r.err;
    EXPECT_NE(r.err.find(c.fragment), std::string::npos) << c.name << ": " << r.err;
  }
}

}  // namespace
}  // namespace rag
