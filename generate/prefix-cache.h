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
// Partial blocks: a request whose prompt leaves the tree inside a block may still reuse the leading
// positions that agree with a cached block there (match_partial): K/V of a position depend only on the
// tokens up to it, so those positions are exact, and the caller copies them into a block of its own. The
// block copied from is found as a whole block would be, among the edges of the request's trust domain for
// that block index; a partial agreement never widens what a request may read.
//
// Eviction: a node may go when no sequence holds its block (reference count 1, the cache's own) and it has
// no children (evicting an inner node would strand its subtree); among those the least recently used goes
// first. "Used" is a tick stamped on every node of a path a match or an insert walks, so a parent is never
// older than its children and whole cold branches go leaf by leaf. The evictable leaves are kept in a set
// ordered by tick, updated as references, children and ticks change, so an eviction costs O(log n) even
// when the pool is full of cached blocks (a server's steady state).
// Not thread-safe: the engine thread alone uses it.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
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
  // `max_blocks`, in position order. Each is retained for the caller, who gives it back with release().
  std::vector<int32_t> match(std::span<const int32_t> tokens, const CacheDomain& domain, int64_t max_blocks);
  // After `whole` = match(tokens, domain, ...): the cached block at the next block index whose leading
  // positions agree with the tokens that follow the match for the most positions, at most `max_tokens` and
  // fewer than a block (a whole block is match()'s). Only edges of the request's domain for that index are
  // candidates, as in match(). The block is retained for the caller, who copies `tokens` leading positions
  // (BlockPool::copy_positions) and gives it back with release(); {-1, 0} when no cached block agrees.
  struct Partial {
    int32_t block = -1;
    int64_t tokens = 0;  // leading positions of `block` that hold the K/V of the request's next tokens
  };
  Partial match_partial(std::span<const int32_t> tokens, const CacheDomain& domain, std::span<const int32_t> whole,
                        int64_t max_tokens);
  // Enters blocks[i] as the K/V of tokens [i × 16, (i + 1) × 16) for every i (tokens holds at least that
  // many). Where the tree already has an edge for a block its own block stays; a new node retains blocks[i].
  void insert(std::span<const int32_t> tokens, const CacheDomain& domain, std::span<const int32_t> blocks);
  // Drops a sequence's reference to `block`. Sequences release through the cache so that it sees its
  // blocks become idle (evictable) at once instead of searching for them.
  void release(int32_t block);
  // Evicts up to `count` blocks held only by the cache, least recently used first; returns how many.
  int64_t evict(int64_t count);
  // Blocks only the cache holds (the "cached" state of block-pool.h): what evict() can free, except those
  // whose subtree holds a block still in use (a sequence that computed its own copy of a cached parent).
  int64_t idle_blocks() const { return idle_; }
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
    bool in_lru = false;     // in lru_, under the tick lru_tick
    uint64_t lru_tick = 0;
    std::map<Key, std::unique_ptr<Node>> children;
  };

  static Key key_of(std::span<const int32_t> tokens, int64_t block_index, const CacheDomain& domain);
  // Puts `node` in lru_ or takes it out (or re-keys it) after its references, children or tick changed.
  void update(Node* node);
  void retain(Node* node);


  BlockPool& pool_;
  Node root_;
  std::vector<Node*> node_of_;                  // by block id: the node holding it, or null
  std::set<std::pair<uint64_t, Node*>> lru_;    // evictable leaves by last use: no children, ref 1
  int64_t idle_ = 0;                            // nodes whose block has ref 1
  uint64_t tick_ = 0;
  int64_t node_count_ = 0;
  int64_t evictions_ = 0;
};

}  // namespace rag::generate
