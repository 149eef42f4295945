// The prefix cache: a radix tree over full KV blocks, so a request whose prompt starts like an earlier
// sequence reuses that sequence's K/V instead of recomputing it.
//
// Each edge is one full block: kKvBlockTokens token ids plus the trust domain they were computed in. A node
// holds one reference to the block (BlockPool) with the K/V of the positions its edge spells, given every
// token on the path before it (K/V of a position depend on all earlier tokens, so the path is the key).
//
// Trust domains (DESIGN.md "Trust boundaries"): a block lying wholly inside the request's public prefix is
// keyed as public and shared by everyone; any later block is keyed with the request's salt and reached only
// by requests with the same salt. A public edge and a salted edge with the same tokens are different edges.
//
// Eviction: a node may go when no sequence holds its block (reference count 1, the cache's own) and it has
// no children (evicting an inner node would strand its subtree); among those the least recently used goes
// first. "Used" is a tick stamped on every node of a path a match or an insert walks, so a parent is never
// older than its children and whole cold branches go leaf by leaf.
// Not thread-safe: the engine thread alone uses it.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "generate/block-pool.h"

namespace rag::generate {

// Who may reuse a sequence's blocks: see the header comment.
struct CacheDomain {
  std::string_view salt;
  int64_t public_tokens = 0;  // leading tokens shared by all salts
};

class PrefixCache {
 public:
  explicit PrefixCache(BlockPool& pool);
  // Releases every block the cache holds.
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The blocks of the longest cached prefix of `tokens` in `domain`, whole blocks only and at most
  // `max_blocks`, in position order. Each is retained for the caller, who releases it to the pool.
  std::vector<int32_t> match(std::span<const int32_t> tokens, const CacheDomain& domain, int64_t max_blocks);
  // Enters blocks[i] as the K/V of tokens [i × 16, (i + 1) × 16) for every i (tokens holds at least that
  // many). Where the tree already has an edge for a block its own block stays; a new node retains blocks[i].
  void insert(std::span<const int32_t> tokens, const CacheDomain& domain, std::span<const int32_t> blocks);
  // Evicts up to `count` blocks held only by the cache, least recently used first; returns how many.
  int64_t evict(int64_t count);
  // Blocks that evict() could free now, leaves first: nodes held only by the cache whose whole subtree is.
  int64_t evictable() const;
  // Nodes whose block only the cache holds (the "cached" state of block-pool.h).
  int64_t idle_blocks() const;
  int64_t size() const { return node_count_; }
  int64_t evictions() const { return evictions_; }

 private:
  struct Key {
    std::array<int32_t, kKvBlockTokens> tokens{};
    bool is_public = false;
    std::string salt;  // empty when public
    auto operator<=>(const Key&) const = default;
  };
  struct Node {
    Node* parent = nullptr;
    const Key* key = nullptr;  // the key of this node in parent->children
    int32_t block = -1;
    uint64_t last_used = 0;
    std::map<Key, std::unique_ptr<Node>> children;
  };

  static Key key_of(std::span<const int32_t> tokens, int64_t block_index, const CacheDomain& domain);

  BlockPool& pool_;
  Node root_;
  uint64_t tick_ = 0;
  int64_t node_count_ = 0;
  int64_t evictions_ = 0;
};

}  // namespace rag::generate
