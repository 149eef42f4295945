#include "generate/prefix-cache.h"

#include <algorithm>
#include <new>
#include <utility>

namespace rag::generate {

PrefixCache::PrefixCache(BlockPool& pool) : pool_(pool), node_of_(static_cast<size_t>(pool.block_count()), nullptr) {}

PrefixCache::~PrefixCache() {
  // Children before parents (reverse pre-order), so no node is destroyed with a subtree still under it: a long
  // cached sequence makes a deep chain, and recursive destruction could overflow the stack.
  std::vector<Node*> nodes, stack;
  for (auto& [key, child] : root_.children) stack.push_back(child.get());
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    nodes.push_back(node);
    for (auto& [key, child] : node->children) stack.push_back(child.get());
  }
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    pool_.release((*it)->block);
    (*it)->children.clear();
  }
  root_.children.clear();
}

PrefixCache::Key PrefixCache::key_of(std::span<const int32_t> tokens, int64_t block_index, const CacheDomain& domain) {
  Key key;
  const auto begin = static_cast<std::ptrdiff_t>(block_index * kKvBlockTokens);
  std::copy_n(tokens.begin() + begin, kKvBlockTokens, key.tokens.begin());
  key.is_public = (block_index + 1) * kKvBlockTokens <= domain.public_tokens;
  if (!key.is_public) key.salt = std::string(domain.salt);
  return key;
}

void PrefixCache::update(Node* node) {
  const bool evictable = node->children.empty() && pool_.ref_count(node->block) == 1;
  if (node->in_lru && (!evictable || node->lru_tick != node->last_used)) {
    lru_.erase({node->lru_tick, node});
    node->in_lru = false;
  }
  if (evictable && !node->in_lru) {
    try {
      lru_.emplace(node->last_used, node);
    } catch (const std::bad_alloc&) {
      return;  // left out of the LRU: not evictable until its next update; callers never see a failure
    }
    node->lru_tick = node->last_used;
    node->in_lru = true;
  }
}

void PrefixCache::retain(Node* node) {
  if (pool_.ref_count(node->block) == 1) --idle_;
  pool_.retain(node->block);
}

void PrefixCache::release(int32_t block) {
  Node* node = node_of_[static_cast<size_t>(block)];
  pool_.release(block);
  if (node && pool_.ref_count(block) == 1) {
    ++idle_;
    update(node);
  }
}

std::vector<int32_t> PrefixCache::match(std::span<const int32_t> tokens, const CacheDomain& domain,
                                        int64_t max_blocks) {
  std::vector<int32_t> blocks;
  const int64_t limit = std::min(max_blocks, static_cast<int64_t>(tokens.size()) / kKvBlockTokens);
  const uint64_t now = ++tick_;
  Node* node = &root_;
  blocks.reserve(static_cast<size_t>(std::max<int64_t>(limit, 0)));  // push_back below cannot fail
  try {
    for (int64_t i = 0; i < limit; ++i) {
      auto it = node->children.find(key_of(tokens, i, domain));  // the key allocates
      if (it == node->children.end()) break;
      node = it->second.get();
      node->last_used = now;
      retain(node);
      update(node);
      blocks.push_back(node->block);
    }
  } catch (...) {
    for (int32_t block : blocks) release(block);  // a failed match holds nothing
    throw;
  }
  return blocks;
}

PrefixCache::Partial PrefixCache::match_partial(std::span<const int32_t> tokens, const CacheDomain& domain,
                                                std::span<const int32_t> whole, int64_t max_tokens) {
  const auto index = static_cast<int64_t>(whole.size());
  const int64_t begin = index * kKvBlockTokens;
  const int64_t limit =
      std::min({max_tokens, kKvBlockTokens - 1, static_cast<int64_t>(tokens.size()) - begin});
  if (limit <= 0) return {};
  Node* parent = whole.empty() ? &root_ : node_of_[static_cast<size_t>(whole.back())];
  RAG_ASSERT(parent);  // `whole` came from match() and is still retained: its nodes cannot have gone
  const auto next = tokens.subspan(static_cast<size_t>(begin), static_cast<size_t>(limit));
  // The same domain as key_of() gives this block index: a salted edge serves only its salt, even for
  // positions that would lie inside this request's public prefix.
  const bool is_public = (index + 1) * kKvBlockTokens <= domain.public_tokens;
  // Keys order by tokens first, so the candidates (first token agrees) are one run starting at the
  // smallest key with that first token. The key holds an empty salt: building it does not allocate.
  Key from;
  from.tokens.fill(INT32_MIN);
  from.tokens[0] = next[0];
  Node* best = nullptr;
  int64_t best_tokens = 0;
  for (auto it = parent->children.lower_bound(from); it != parent->children.end() && it->first.tokens[0] == next[0];
       ++it) {
    const Key& key = it->first;
    if (key.is_public != is_public || (!is_public && key.salt != domain.salt)) continue;
    const auto agree = std::mismatch(next.begin(), next.end(), key.tokens.begin()).first - next.begin();
    if (agree > best_tokens) {
      best = it->second.get();
      best_tokens = agree;
      if (best_tokens == limit) break;
    }
  }
  if (!best) return {};
  // Used now, and so is its path: a parent is never older than its children.
  const uint64_t now = ++tick_;
  for (Node* node = best; node != &root_; node = node->parent) node->last_used = now;
  retain(best);
  update(best);
  return {best->block, best_tokens};
}

void PrefixCache::insert(std::span<const int32_t> tokens, const CacheDomain& domain, std::span<const int32_t> blocks) {
  RAG_ASSERT(static_cast<int64_t>(blocks.size()) * kKvBlockTokens <= static_cast<int64_t>(tokens.size()));
  const uint64_t now = ++tick_;
  Node* node = &root_;
  for (size_t i = 0; i < blocks.size(); ++i) {
    Key key = key_of(tokens, static_cast<int64_t>(i), domain);
    auto it = node->children.find(key);
    if (it == node->children.end()) {
      // A block sits in one node at most; one already cached elsewhere (which no caller does) ends the walk
      // rather than giving the block two parents.
      if (node_of_[static_cast<size_t>(blocks[i])]) return;
      auto child = std::make_unique<Node>();
      child->parent = node;
      child->block = blocks[i];
      // The allocations first: a std::bad_alloc leaves the cache as it was (no reference, no dangling node_of_).
      it = node->children.emplace(std::move(key), std::move(child)).first;
      it->second->key = &it->first;
      pool_.retain(blocks[i]);
      if (pool_.ref_count(blocks[i]) == 1) ++idle_;  // not reached: the caller holds a reference
      node_of_[static_cast<size_t>(blocks[i])] = it->second.get();
      ++node_count_;
      if (node != &root_) update(node);  // no longer a leaf
    }
    node = it->second.get();
    node->last_used = now;
    update(node);
  }
}

int64_t PrefixCache::evict(int64_t count) {
  int64_t evicted = 0;
  while (evicted < count && !lru_.empty()) {
    Node* node = lru_.begin()->second;
    lru_.erase(lru_.begin());
    Node* parent = node->parent;
    const int32_t block = node->block;
    node_of_[static_cast<size_t>(block)] = nullptr;
    --idle_;
    parent->children.erase(parent->children.find(*node->key));  // destroys node
    pool_.release(block);
    --node_count_;
    ++evicted;
    if (parent != &root_) update(parent);
  }
  evictions_ += evicted;
  return evicted;
}

}  // namespace rag::generate
