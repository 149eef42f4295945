// The cross-encoder Reranker: an nn::Encoder with rank pooling scoring [CLS] query [SEP] passage [SEP].
#include "common/error.h"
#include "nn/encoder.h"
#include "rerank/rerank.h"

namespace rag::rerank {
namespace {

class CrossEncoder final : public Reranker {
 public:
  explicit CrossEncoder(std::unique_ptr<nn::Encoder> encoder) : encoder_(std::move(encoder)) {}
  std::string name() const override { return encoder_->identity(); }
  // nn::Encoder is immutable after open and documents concurrent score calls as safe.
  std::vector<float> score(std::string_view query, const std::vector<std::string>& passages) const override {
    return encoder_->score_pairs(query, passages);
  }

 private:
  std::unique_ptr<nn::Encoder> encoder_;
};

}  // namespace

std::unique_ptr<Reranker> open_reranker(const std::string& path) {
  std::unique_ptr<nn::Encoder> encoder = nn::Encoder::open(path);
  if (!encoder->is_reranker())
    fail(Errc::kUnsupported,
         "{}: is an embedding model ({} pooling), not a cross-encoder reranker (rank pooling with a classification "
         "head); give it as --embed-model, and a reranker as --rerank-model",
         path, nn::pooling_name(encoder->pooling()));
  return std::make_unique<CrossEncoder>(std::move(encoder));
}

}  // namespace rag::rerank
