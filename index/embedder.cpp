// The Embedder over nn::Encoder (a BERT-family GGUF embedding model).
#include "common/error.h"
#include "index/index.h"
#include "nn/encoder.h"

namespace rag::index {
namespace {

class EncoderEmbedder final : public Embedder {
 public:
  explicit EncoderEmbedder(std::unique_ptr<nn::Encoder> encoder) : encoder_(std::move(encoder)) {}
  int dim() const override { return encoder_->dim(); }
  const std::string& identity() const override { return encoder_->identity(); }
  std::vector<float> embed(const std::vector<std::string>& texts) const override { return encoder_->embed(texts); }

 private:
  std::unique_ptr<nn::Encoder> encoder_;
};

}  // namespace

std::shared_ptr<const Embedder> open_embedder(const std::string& gguf_path) {
  auto encoder = nn::Encoder::open(gguf_path);
  if (encoder->is_reranker())
    fail(Errc::kUnsupported,
         "{}: is a reranker (cross-encoder, pooling rank), not an embedding model; give a BERT-family embedding "
         "model (mean or CLS pooling, e.g. bge-small or all-MiniLM)",
         gguf_path);
  return std::make_shared<EncoderEmbedder>(std::move(encoder));
}

std::string embed_passage(std::string_view title, std::string_view heading, std::string_view text) {
  std::string out;
  out.reserve(title.size() + heading.size() + text.size() + 2);
  for (std::string_view part : {title, heading}) {
    if (part.empty()) continue;
    out += part;
    out += '\n';
  }
  out += text;
  return out;
}

}  // namespace rag::index
