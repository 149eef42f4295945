// Byte-level BPE (tokenizer.ggml.model "gpt2"), as llama.cpp's llm_tokenizer_bpe_session: each
// pre-tokenized word is mapped byte by byte into GPT-2's printable alphabet, split into characters, and
// the adjacent pair with the lowest merge rank is merged until no pair has a rank. The pairs wait in a
// priority queue and the symbols form a linked list, so a word of n characters costs O(n log n).
#include <algorithm>
#include <queue>

#include "nn/tokenizer-impl.h"
#include "nn/unicode.h"

namespace rag::nn {
namespace {

struct Symbol {
  int prev, next;   // neighbours in the list, -1 at the ends
  size_t offset;    // into the word
  size_t length;    // bytes; 0 once merged into the left neighbour
};

struct Bigram {
  int left, right;
  int32_t rank;
  size_t length;  // left.length + right.length when queued: a mismatch later means the pair is stale
};

struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

size_t utf8_length(unsigned char lead) {
  static constexpr size_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[lead >> 4];
}

void merge_word(const Tokenizer::Impl& impl, const std::string& word, std::vector<int32_t>& out) {
  if (impl.ignore_merges) {
    int32_t id = impl.find(word);
    if (id != kNoToken) {
      out.push_back(id);
      return;
    }
  }
  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < word.size();) {
    size_t length = std::min(utf8_length(static_cast<unsigned char>(word[offset])), word.size() - offset);
    int index = static_cast<int>(symbols.size());
    symbols.push_back({index - 1, offset + length == word.size() ? -1 : index + 1, offset, length});
    offset += length;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  std::string key;
  auto add_bigram = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[right];
    key.assign(word, l.offset, l.length);
    key += ' ';
    key.append(word, r.offset, r.length);
    auto it = impl.merge_ranks.find(key);
    if (it == impl.merge_ranks.end()) return;
    queue.push({left, right, it->second, l.length + r.length});
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
    const Symbol& symbol = symbols[i];
    std::string_view text(word.data() + symbol.offset, symbol.length);
    int32_t id = impl.find(text);
    if (id != kNoToken) {
      out.push_back(id);
      continue;
    }
    // A merge result missing from the vocabulary: fall back to single-byte tokens, dropping bytes that
    // have none (what llama.cpp does; it only happens with inconsistent vocabularies).
    for (char byte : text) {
      int32_t byte_id = impl.find(std::string_view(&byte, 1));
      if (byte_id != kNoToken) out.push_back(byte_id);
    }
  }
}

}  // namespace

void encode_bpe(const Tokenizer::Impl& impl, std::string_view text, std::vector<int32_t>& out) {
  for (const std::string& word : pre_tokenize(impl.pre_kind, text)) {
    std::string mapped;
    mapped.reserve(word.size() * 2);
    for (unsigned char byte : word) mapped += byte_to_unicode(byte);
    merge_word(impl, mapped, out);
  }
}

}  // namespace rag::nn
