// SentencePiece BPE (tokenizer.ggml.model "llama"), as llama.cpp's llm_tokenizer_spm_session: the text
// (spaces already turned into "▁") is split into characters, and the adjacent pair whose concatenation is
// the highest-scoring token is merged until no pair forms a token. Characters left without a token come
// out as <0xNN> byte tokens (or UNK when the vocabulary has none). Priority queue plus linked list: a
// text of n characters costs O(n log n).
#include <algorithm>
#include <queue>

#include "nn/tokenizer-impl.h"

namespace rag::nn {
namespace {

struct Symbol {
  int prev, next;
  size_t offset, length;  // length 0 once merged into the left neighbour
};

struct Bigram {
  int left, right;
  float score;
  size_t length;
};

struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

size_t utf8_length(unsigned char lead) {
  static constexpr size_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[lead >> 4];
}

}  // namespace

void encode_spm(const Tokenizer::Impl& impl, std::string_view text, std::vector<int32_t>& out) {
  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < text.size();) {
    size_t length = std::min(utf8_length(static_cast<unsigned char>(text[offset])), text.size() - offset);
    int index = static_cast<int>(symbols.size());
    symbols.push_back({index - 1, offset + length == text.size() ? -1 : index + 1, offset, length});
    offset += length;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  auto add_bigram = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    size_t length = symbols[left].length + symbols[right].length;
    int32_t id = impl.find(text.substr(symbols[left].offset, length));
    if (id == kNoToken) return;
    float score = impl.vocab.scores.empty() ? 0.0f : impl.vocab.scores[id];
    queue.push({left, right, score, length});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) add_bigram(i - 1, i);

  while (!queue.empty()) {
    Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    if (left.length == 0 || right.length == 0 || left.length + right.length != bigram.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    add_bigram(left.prev, bigram.left);
    add_bigram(bigram.left, left.next);
  }

  for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
    std::string_view piece = text.substr(symbols[i].offset, symbols[i].length);
    int32_t id = impl.find(piece);
    if (id != kNoToken) {
      out.push_back(id);
      continue;
    }
    for (unsigned char byte : piece) {
      int32_t byte_id = impl.byte_tokens[byte];
      if (byte_id == kNoToken) byte_id = impl.vocab.unk;
      if (byte_id != kNoToken) out.push_back(byte_id);
    }
  }
}

}  // namespace rag::nn
