// Tokenizer construction, special-token splitting, decoding and streaming (see tokenizer.h). The model
// algorithms live in tokenizer-{bpe,spm,wordpiece}.cpp.
#include "nn/tokenizer.h"

#include <algorithm>
#include <cstdio>

#include "common/error.h"
#include "common/log.h"
#include "common/text.h"
#include "nn/tokenizer-impl.h"
#include "nn/unicode.h"

namespace rag::nn {
namespace {

const std::string kSpaceMarker = "\xE2\x96\x81";  // ▁, SentencePiece's space

// Bounds that no real vocabulary comes near; anything larger is a corrupt or hostile file.
constexpr size_t kMaxVocabSize = size_t{1} << 24;
constexpr size_t kMaxMerges = size_t{1} << 24;

// Token texts llama.cpp treats as end of turn / end of generation whatever their stored type. (Here and in
// kFimTexts, octal escapes where letters follow: a hex escape would take them in.)
const char* const kEotTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                 "<|end_of_text|>", "<EOT>", "_<EOT>", "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>"};
const char* const kEogTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                 "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>"};
// Fill-in-the-middle markers: control tokens even when converters stored them as user-defined.
const char* const kFimTexts[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\xE2\x96\x81<PRE>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\xE2\x96\x81<SUF>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\xE2\x96\x81<MID>",
    "<|fim_pad|>",    "<fim-pad>",    "<fim_pad>",    "<PAD>",
    "<|fim_repo|>",   "<|repo_name|>", "<fim-repo>",  "<REPO>", "<reponame>", "<|file_sep|>",
    "<\357\275\234fim\342\226\201begin\357\275\234>", "<\357\275\234fim\342\226\201hole\357\275\234>",
    "<\357\275\234fim\342\226\201end\357\275\234>"};

uint32_t attr_of(TokenType type) {
  switch (type) {
    case TokenType::kNormal: return kAttrNormal;
    case TokenType::kUnknown: return kAttrUnknown;
    case TokenType::kControl: return kAttrControl;
    case TokenType::kUserDefined: return kAttrUserDefined;
    case TokenType::kUnused: return kAttrUnused;
    case TokenType::kByte: return kAttrByte;
    default: return 0;
  }
}

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(text, pos, hit - pos);
    out += to;
  }
  out.append(text, pos);
  text = std::move(out);
}

// Hugging Face's clean_up_tokenization_spaces, in llama.cpp's three passes: no space before ?!., or before
// 's 'm 're 've, and " ' " loses both spaces.
std::string clean_up_spaces(const std::string& in) {
  std::string a;
  for (size_t i = 0; i < in.size(); ++i) {
    char x = in[i];
    if (i > 0 && in[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',') && !a.empty()) a.pop_back();
    a += x;
  }
  std::string b;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (i > 0 && x == '\'' && i + 1 < a.size() && a[i - 1] == ' ' && a[i + 1] == ' ') {
      if (!b.empty()) b.pop_back();
      b += x;
      ++i;  // drop the next space
      continue;
    }
    b += x;
  }
  std::string c;
  for (size_t i = 0; i < b.size(); ++i) {
    char x = b[i];
    if (i > 0 && b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
      char x1 = b[i + 1];
      bool two = i + 2 < b.size();
      if (x1 == 's' || x1 == 'm' || (two && ((x1 == 'r' && b[i + 2] == 'e') || (x1 == 'v' && b[i + 2] == 'e'))))
        if (!c.empty()) c.pop_back();
    }
    c += x;
  }
  return c;
}

std::string lower_ascii(std::string s) {
  for (char& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return s;
}

bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// A stretch of the input: raw text to tokenize, or a special token already recognised.
struct Fragment {
  int32_t token;  // kNoToken for raw text
  size_t offset, length;
};

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_vocab(Vocab vocab, const std::string& source) {
  auto impl = std::make_unique<Impl>();
  impl->source = source;
  const size_t n = vocab.tokens.size();
  if (n == 0) fail(Errc::kCorrupt, "{}: the vocabulary has no tokens", source);
  if (n > kMaxVocabSize) fail(Errc::kCorrupt, "{}: {} tokens is more than the {} allowed", source, n, kMaxVocabSize);
  if (!vocab.scores.empty() && vocab.scores.size() < n)
    fail(Errc::kCorrupt, "{}: {} scores for {} tokens", source, vocab.scores.size(), n);
  if (!vocab.types.empty() && vocab.types.size() < n)
    fail(Errc::kCorrupt, "{}: {} token types for {} tokens", source, vocab.types.size(), n);
  if (vocab.merges.size() > kMaxMerges)
    fail(Errc::kCorrupt, "{}: {} merges is more than the {} allowed", source, vocab.merges.size(), kMaxMerges);
  vocab.scores.resize(vocab.scores.empty() ? 0 : n);
  vocab.types.resize(vocab.types.empty() ? 0 : n);

  impl->ids.reserve(n);
  impl->attrs.resize(n, kAttrNormal);
  for (size_t i = 0; i < n; ++i) {
    std::string& text = vocab.tokens[i];
    if (text.empty()) text = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp: never match empty text
    auto [it, inserted] = impl->ids.emplace(text, static_cast<int32_t>(i));
    if (!inserted)
      fail(Errc::kCorrupt, "{}: duplicate token '{}' has ids {} and {}", source, utf8_repair(text), it->second, i);
    if (!vocab.types.empty()) impl->attrs[i] = attr_of(vocab.types[i]);
  }

  for (int32_t* id : {&vocab.bos, &vocab.eos, &vocab.unk, &vocab.sep, &vocab.pad, &vocab.cls, &vocab.mask}) {
    if (*id != kNoToken && (*id < 0 || static_cast<size_t>(*id) >= n)) {
      spdlog::warn("{}: special token id {} is outside the vocabulary of {}; ignored", source, *id, n);
      *id = kNoToken;
    }
  }

  switch (vocab.model) {
    case TokenizerModel::kSentencePiece:
      impl->add_bos = vocab.add_bos.value_or(true);
      impl->add_eos = vocab.add_eos.value_or(false);
      impl->add_space_prefix = vocab.add_space_prefix.value_or(true);
      for (int b = 0; b < 256; ++b) {
        char hex[8];
        std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
        int32_t id = impl->find(hex);
        impl->byte_tokens[b] = id != kNoToken ? id : impl->find(std::string(1, static_cast<char>(b)));
      }
      break;
    case TokenizerModel::kBpe: {
      bool pre_add_bos = false;
      if (!pre_tokenizer_for(vocab.pre, impl->pre_kind, impl->ignore_merges, pre_add_bos))
        fail(Errc::kUnsupported, "{}: pre-tokenizer '{}' (tokenizer.ggml.pre) is not supported", source, vocab.pre);
      if (vocab.pre.empty()) spdlog::warn("{}: no tokenizer.ggml.pre; using the default pre-tokenizer", source);
      impl->add_bos = vocab.add_bos.value_or(pre_add_bos);
      impl->add_eos = vocab.add_eos.value_or(false);
      impl->merge_ranks.reserve(vocab.merges.size());
      for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
        const std::string& merge = vocab.merges[rank];
        size_t space = merge.find(' ', 1);
        if (space == std::string::npos) continue;  // not a pair: can never match
        impl->merge_ranks.emplace(merge, static_cast<int32_t>(rank));
      }
      break;
    }
    case TokenizerModel::kWordPiece:
      if (vocab.cls == kNoToken) vocab.cls = vocab.bos;
      if (vocab.bos == kNoToken) vocab.bos = vocab.cls;
      impl->add_bos = vocab.add_bos.value_or(true);
      impl->add_eos = vocab.add_eos.value_or(true);
      for (size_t i = 0; i < n; ++i) impl->trie.insert(vocab.tokens[i], static_cast<int32_t>(i));
      break;
  }
  if (impl->add_bos && vocab.model != TokenizerModel::kWordPiece && vocab.bos == kNoToken) impl->add_bos = false;
  if (impl->add_eos && vocab.model != TokenizerModel::kWordPiece && vocab.eos == kNoToken) impl->add_eos = false;

  // Marker tokens that must never be produced from plain text, whatever type the converter stored.
  auto mark_control = [&](const char* text) {
    int32_t id = impl->find(text);
    if (id != kNoToken) impl->attrs[id] |= kAttrControl;
    return id;
  };
  for (const char* text : kEotTexts) {
    int32_t id = mark_control(text);
    if (id != kNoToken && impl->eot == kNoToken) impl->eot = id;
  }
  for (const char* text : kFimTexts) mark_control(text);
  for (const char* text : kEogTexts)
    if (int32_t id = mark_control(text); id != kNoToken) impl->eog.insert(id);
  if (vocab.eos != kNoToken) impl->eog.insert(vocab.eos);
  if (impl->eot != kNoToken) impl->eog.insert(impl->eot);

  for (size_t i = 0; i < n; ++i)
    if (impl->attrs[i] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) impl->specials.push_back(static_cast<int32_t>(i));
  std::stable_sort(impl->specials.begin(), impl->specials.end(), [&](int32_t a, int32_t b) {
    return vocab.tokens[a].size() > vocab.tokens[b].size();
  });

  // Phi-3's tokenizer eats the white space after its special tokens (llama.cpp keys this on the name).
  std::string name = lower_ascii(vocab.name);
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (int32_t id : impl->specials) impl->attrs[id] |= kAttrRstrip;
    if (int32_t id = impl->find("</s>"); id != kNoToken) impl->attrs[id] |= kAttrRstrip;
    for (const char* text : {"<unk>", "<s>", "<|endoftext|>"})
      if (int32_t id = impl->find(text); id != kNoToken) impl->attrs[id] &= ~kAttrRstrip;
  }

  impl->vocab = std::move(vocab);
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text_in, bool add_special, bool parse_special) const {
  const Impl& impl = *impl_;
  const std::string text = utf8_repair(text_in);

  std::vector<Fragment> fragments;
  if (!text.empty()) fragments.push_back({kNoToken, 0, text.size()});
  for (int32_t special : impl.specials) {
    uint32_t attr = impl.attrs[special];
    // Control text in plain input stays text; user-defined tokens are always split out (as HF does).
    if (!parse_special && (attr & (kAttrControl | kAttrUnknown))) continue;
    const std::string& needle = impl.vocab.tokens[special];
    std::vector<Fragment> next;
    next.reserve(fragments.size());
    for (const Fragment& f : fragments) {
      if (f.token != kNoToken) {
        next.push_back(f);
        continue;
      }
      size_t begin = f.offset, end = f.offset + f.length;
      while (begin < end) {
        size_t hit = std::string_view(text.data(), end).find(needle, begin);
        if (hit == std::string::npos) break;
        size_t left_end = hit;
        if (attr & kAttrLstrip)
          while (left_end > begin && is_space(text[left_end - 1])) --left_end;
        if (left_end > begin) next.push_back({kNoToken, begin, left_end - begin});
        next.push_back({special, 0, 0});
        begin = hit + needle.size();
        if (attr & kAttrRstrip)
          while (begin < end && is_space(text[begin])) ++begin;
      }
      if (begin < end) next.push_back({kNoToken, begin, end - begin});
    }
    fragments = std::move(next);
  }

  std::vector<int32_t> out;
  const Vocab& vocab = impl.vocab;
  switch (vocab.model) {
    case TokenizerModel::kSentencePiece: {
      if (add_special && impl.add_bos) out.push_back(vocab.bos);
      bool after_special = true;
      for (const Fragment& f : fragments) {
        if (f.token != kNoToken) {
          out.push_back(f.token);
          after_special = true;
          continue;
        }
        std::string piece = impl.add_space_prefix && after_special ? " " : "";
        piece.append(text, f.offset, f.length);
        replace_all(piece, " ", kSpaceMarker);
        encode_spm(impl, piece, out);
        after_special = false;
      }
      if (add_special && impl.add_eos) out.push_back(vocab.eos);
      break;
    }
    case TokenizerModel::kBpe:
      if (add_special && impl.add_bos) out.push_back(vocab.bos);
      for (const Fragment& f : fragments) {
        if (f.token != kNoToken) out.push_back(f.token);
        else encode_bpe(impl, std::string_view(text).substr(f.offset, f.length), out);
      }
      if (add_special && impl.add_eos) out.push_back(vocab.eos);
      break;
    case TokenizerModel::kWordPiece:
      if (add_special && impl.add_bos && vocab.cls != kNoToken) out.push_back(vocab.cls);
      for (const Fragment& f : fragments) {
        if (f.token != kNoToken) out.push_back(f.token);
        else encode_wordpiece(impl, std::string_view(text).substr(f.offset, f.length), out);
      }
      if (add_special && impl.add_eos && vocab.sep != kNoToken) out.push_back(vocab.sep);
      break;
  }
  return out;
}

PairEncoding Tokenizer::encode_pair(std::string_view a, std::string_view b, size_t max_tokens) const {
  int32_t first = cls(), separator = sep();
  if (first == kNoToken || separator == kNoToken)
    fail(Errc::kUnsupported, "{}: the vocabulary has no CLS/BOS or SEP/EOS token to encode a pair", impl_->source);
  std::vector<int32_t> ta = encode(a, false), tb = encode(b, false);
  if (max_tokens > 0) {
    size_t budget = max_tokens > 3 ? max_tokens - 3 : 0;
    while (ta.size() + tb.size() > budget) (tb.size() >= ta.size() ? tb : ta).pop_back();
  }
  PairEncoding pair;
  pair.ids.push_back(first);
  pair.ids.insert(pair.ids.end(), ta.begin(), ta.end());
  pair.ids.push_back(separator);
  pair.type_ids.assign(pair.ids.size(), 0);
  pair.ids.insert(pair.ids.end(), tb.begin(), tb.end());
  pair.ids.push_back(separator);
  pair.type_ids.resize(pair.ids.size(), 1);
  return pair;
}

std::string Tokenizer::piece(int32_t id) const {
  const Impl& impl = *impl_;
  if (!impl.valid(id)) return {};
  const std::string& text = impl.vocab.tokens[id];
  uint32_t attr = impl.attrs[id];
  if (attr & (kAttrControl | kAttrUnknown | kAttrUserDefined)) return text;
  if (impl.vocab.model == TokenizerModel::kBpe) {
    std::string out;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t start = pos;
      int byte = unicode_to_byte(utf8_next(text, pos));
      if (byte >= 0) out += static_cast<char>(byte);
      else out.append(text, start, pos - start);  // not from the byte map: keep the text
    }
    return out;
  }
  if (attr & kAttrByte) {
    unsigned value;
    if (text.size() == 6 && std::sscanf(text.c_str(), "<0x%2X>", &value) == 1) return std::string(1, static_cast<char>(value));
    return text;
  }
  std::string out = text;
  replace_all(out, kSpaceMarker, " ");
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& impl = *impl_;
  // The ▁ that encode put before the text (SentencePiece) or before every word (WordPiece) is not part of
  // the text: drop the space it decodes to at the start.
  bool strip_space = impl.vocab.model == TokenizerModel::kWordPiece ||
                     (impl.vocab.model == TokenizerModel::kSentencePiece && impl.add_space_prefix);
  std::string out;
  for (int32_t id : ids) {
    if (!impl.valid(id)) continue;
    if (is_control(id)) {
      if (!skip_special) out += impl.vocab.tokens[id];
      continue;
    }
    std::string p = piece(id);
    if (strip_space && !p.empty() && p[0] == ' ') p.erase(0, 1);
    strip_space = false;
    out += p;
  }
  return impl.vocab.model == TokenizerModel::kWordPiece ? clean_up_spaces(out) : out;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  static const std::string kEmpty;
  return impl_->valid(id) ? impl_->vocab.tokens[id] : kEmpty;
}

TokenType Tokenizer::token_type(int32_t id) const {
  if (!impl_->valid(id)) return TokenType::kUndefined;
  if (impl_->vocab.types.empty()) return TokenType::kNormal;
  return impl_->vocab.types[id];
}

int32_t Tokenizer::find(std::string_view text) const { return impl_->find(text); }
bool Tokenizer::is_control(int32_t id) const {
  return impl_->valid(id) && (impl_->attrs[id] & (kAttrControl | kAttrUnknown));
}
bool Tokenizer::is_eog(int32_t id) const { return impl_->eog.count(id) > 0; }
TokenizerModel Tokenizer::model() const { return impl_->vocab.model; }
const std::string& Tokenizer::pre() const { return impl_->vocab.pre; }
size_t Tokenizer::vocab_size() const { return impl_->vocab.tokens.size(); }
int32_t Tokenizer::bos() const { return impl_->vocab.bos; }
int32_t Tokenizer::eos() const { return impl_->vocab.eos; }
int32_t Tokenizer::eot() const { return impl_->eot; }
int32_t Tokenizer::cls() const {
  return impl_->vocab.cls != kNoToken ? impl_->vocab.cls : impl_->vocab.bos;
}
int32_t Tokenizer::sep() const {
  return impl_->vocab.sep != kNoToken ? impl_->vocab.sep : impl_->vocab.eos;
}
int32_t Tokenizer::pad() const { return impl_->vocab.pad; }
int32_t Tokenizer::unk() const { return impl_->vocab.unk; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t token) {
  std::string text;
  if (at_start_) {
    text = tokenizer_.decode(std::span<const int32_t>(&token, 1), skip_special_);
  } else if (!(skip_special_ && tokenizer_.is_control(token))) {
    text = tokenizer_.is_control(token) ? tokenizer_.token_text(token) : tokenizer_.piece(token);
  }
  if (!tokenizer_.is_control(token)) at_start_ = false;  // as decode(): the prefix space goes once
  if (text.empty()) return {};
  pending_ += text;

  // Hold back a trailing lead byte whose continuation bytes have not arrived yet.
  size_t cut = pending_.size();
  for (size_t k = 1; k <= 3 && k <= pending_.size(); ++k) {
    auto byte = static_cast<unsigned char>(pending_[pending_.size() - k]);
    if ((byte & 0xC0) == 0x80) continue;  // continuation: look further back
    if (byte >= 0xC0) {
      size_t need = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2;
      if (need > k) cut = pending_.size() - k;
    }
    break;
  }
  std::string out = utf8_repair(std::string_view(pending_).substr(0, cut));
  pending_.erase(0, cut);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8_repair(pending_);
  pending_.clear();
  at_start_ = true;
  return out;
}

}  // namespace rag::nn
