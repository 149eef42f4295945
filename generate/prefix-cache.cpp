#include "generate/prefix-cache.h"

#include <algorithm>
#include <queue>
#include <unordered_map>
#include <utility>

namespace rag::generate {
namespace {

// Every node below `root`, parents before children. Iterative: a long cached sequence makes a deep tree.
template <typename NodeT>
std::vector<NodeT*> preorder(NodeT& root) {
  std::vector<NodeT*> out, stack;
  for (auto& [key, child] : root.children) stack.push_back(child.get());
  while (!stack.empty()) {
    NodeT* node = stack.back();
    stack.pop_back();
    out.push_back(node);
    for (auto& [key, child] : node->children) stack.push_back(child.get());
  }
  return out;
}

}  // namespace

PrefixCache::PrefixCache(BlockPool& pool) : pool_(pool) {}

PrefixCache::~PrefixCache() {
  // Children before parents, so no node is destroyed with a subtree still under it (no deep recursion).
  std::vector<Node*> nodes = preorder(root_);
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    pool_.release((*it)->block);
    (*it)->children.clear();
  }
  root_.children.clear();
}

PrefixCache::Key PrefixCache::key_of(std::span<const int32_t> tokens, int64_t block_index, const CacheDomain& domain) {
  Key key;
  const size_t begin = static_cast<size_t>(block_index * kKvBlockTokens);
  std::copy_n(tokens.begin() + static_cast<std::ptrdiff_t>(begin), kKvBlockTokens, key.tokens.begin());
  key.is_public = (block_index + 1) * kKvBlockTokens <= domain.public_tokens;
  if (!key.is_public) key.salt = std::string(domain.salt);
  return key;
}

std::vector<int32_t> PrefixCache::match(std::span<const int32_t> tokens, const CacheDomain& domain,
                                        int64_t max_blocks) {
  std::vector<int32_t> blocks;
  const int64_t limit = std::min(max_blocks, static_cast<int64_t>(tokens.size()) / kKvBlockTokens);
  const uint64_t now = ++tick_;
  Node* node = &root_;
  for (int64_t i = 0; i < limit; ++i) {
    auto it = node->children.find(key_of(tokens, i, domain));
    if (it == node->children.end()) break;
    node = it->second.get();
    node->last_used = now;
    pool_.retain(node->block);
    blocks.push_back(node->block);
  }
  return blocks;
}

void PrefixCache::insert(std::span<const int32_t> tokens, const CacheDomain& domain, std::span<const int32_t> blocks) {
  RAG_ASSERT(static_cast<int64_t>(blocks.size()) * kKvBlockTokens <= static_cast<int64_t>(tokens.size()));
  const uint64_t now = ++tick_;
  Node* node = &root_;
  for (size_t i = 0; i < blocks.size(); ++i) {
    Key key = key_of(tokens, static_cast<int64_t>(i), domain);
    auto it = node->children.find(key);
    if (it == node->children.end()) {
      auto child = std::make_unique<Node>();
      child->parent = node;
      child->block = blocks[i];
      pool_.retain(blocks[i]);
      ++node_count_;
      it = node->children.emplace(std::move(key), std::move(child)).first;
      it->second->key = &it->first;
    }
    node = it->second.get();
    node->last_used = now;
  }
}

int64_t PrefixCache::evict(int64_t count) {
  if (count <= 0) return 0;
  using Entry = std::pair<uint64_t, Node*>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> leaves;  // least recently used on top
  for (Node* node : preorder(root_))
    if (node->children.empty() && pool_.ref_count(node->block) == 1) leaves.emplace(node->last_used, node);
  int64_t evicted = 0;
  while (evicted < count && !leaves.empty()) {
    Node* node = leaves.top().second;
    leaves.pop();
    Node* parent = node->parent;
    pool_.release(node->block);
    parent->children.erase(parent->children.find(*node->key));  // destroys node
    --node_count_;
    ++evicted;
    if (parent != &root_ && parent->children.empty() && pool_.ref_count(parent->block) == 1)
      leaves.emplace(parent->last_used, parent);
  }
  evictions_ += evicted;
  return evicted;
}

int64_t PrefixCache::evictable() const {
  // Children before parents: a node can go once its whole subtree can.
  std::vector<const Node*> nodes = preorder(root_);
  std::unordered_map<const Node*, bool> whole;
  whole.reserve(nodes.size());
  int64_t count = 0;
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    const Node* node = *it;
    bool ok = pool_.ref_count(node->block) == 1;
    for (const auto& [key, child] : node->children) ok = ok && whole[child.get()];
    whole[node] = ok;
    count += ok;
  }
  return count;
}

int64_t PrefixCache::idle_blocks() const {
  int64_t count = 0;
  for (const Node* node : preorder(root_)) count += pool_.ref_count(node->block) == 1;
  return count;
}

}  // namespace rag::generate
