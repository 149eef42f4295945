// The prefix cache: longest full-block matches, trust domains (salts never share private blocks, the public
// prefix is shared by all), least-recently-used eviction of unreferenced leaves, and its block references.
#include <gtest/gtest.h>

#include <numeric>

#include "generate/prefix-cache.h"

namespace rag::generate {
namespace {

const KvLayout kLayout{1, 4};

std::vector<int32_t> iota_tokens(int64_t n, int32_t start = 0) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), start);
  return t;
}

// Allocates `n` blocks as a sequence would and enters them; the caller keeps its references.
std::vector<int32_t> fill(BlockPool& pool, PrefixCache& cache, const std::vector<int32_t>& tokens,
                          const CacheDomain& domain, int64_t n) {
  std::vector<int32_t> blocks;
  for (int64_t i = 0; i < n; ++i) blocks.push_back(pool.allocate());
  cache.insert(tokens, domain, blocks);
  return blocks;
}

void release_all(PrefixCache& cache, const std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) cache.release(b);
}

TEST(PrefixCache, MatchesTheLongestRunOfFullBlocks) {
  BlockPool pool(kLayout, 16);
  PrefixCache cache(pool);
  const CacheDomain domain{"s", 0};
  const auto tokens = iota_tokens(50);
  const auto blocks = fill(pool, cache, tokens, domain, 3);
  EXPECT_EQ(cache.size(), 3);

  EXPECT_EQ(cache.match(tokens, domain, 10), blocks);
  EXPECT_EQ(pool.ref_count(blocks[0]), 3);  // the sequence, the cache, the match
  // max_blocks caps the match; a short prompt matches only its full blocks.
  EXPECT_EQ(cache.match(tokens, domain, 1), std::vector<int32_t>{blocks[0]});
  EXPECT_EQ(cache.match(std::vector<int32_t>(tokens.begin(), tokens.begin() + 40), domain, 10),
            (std::vector<int32_t>{blocks[0], blocks[1]}));
  // A difference inside the second block ends the match after the first.
  auto other = tokens;
  other[20] = 999;
  EXPECT_EQ(cache.match(other, domain, 10), std::vector<int32_t>{blocks[0]});
  // A difference in the first block: nothing.
  other[3] = 999;
  EXPECT_TRUE(cache.match(other, domain, 10).empty());
}

TEST(PrefixCache, InsertKeepsTheBlockAlreadyCached) {
  BlockPool pool(kLayout, 8);
  PrefixCache cache(pool);
  const CacheDomain domain{"s", 0};
  const auto tokens = iota_tokens(32);
  const auto first = fill(pool, cache, tokens, domain, 1);
  const auto second = fill(pool, cache, tokens, domain, 2);  // same first block computed again, then one more
  EXPECT_EQ(cache.size(), 2);
  EXPECT_EQ(pool.ref_count(second[0]), 1);  // not taken: the cache has first[0] for that edge
  EXPECT_EQ(cache.match(tokens, domain, 2), (std::vector<int32_t>{first[0], second[1]}));
}

// DESIGN.md "Trust boundaries": a hit may serve only a request allowed to see what the blocks hold.
TEST(PrefixCache, SaltsNeverSharePrivateBlocksButShareThePublicPrefix) {
  BlockPool pool(kLayout, 16);
  PrefixCache cache(pool);
  const auto tokens = iota_tokens(64);
  // 20 public tokens: only block 0 lies wholly inside them; block 1 straddles the boundary and is private.
  const CacheDomain alice{"alice", 20}, bob{"bob", 20};
  const auto blocks = fill(pool, cache, tokens, alice, 4);

  const auto bob_hit = cache.match(tokens, bob, 4);
  EXPECT_EQ(bob_hit, std::vector<int32_t>{blocks[0]});
  EXPECT_EQ(cache.match(tokens, alice, 4), blocks);
  // Without a public prefix, not even the first block is shared.
  EXPECT_TRUE(cache.match(tokens, CacheDomain{"bob", 0}, 4).empty());
  EXPECT_TRUE(cache.match(tokens, CacheDomain{"", 0}, 4).empty());
  // Bob computing the same private blocks gets his own edges; neither sees the other's.
  std::vector<int32_t> bob_blocks = {blocks[0]};
  pool.retain(blocks[0]);
  for (int i = 1; i < 4; ++i) bob_blocks.push_back(pool.allocate());
  cache.insert(tokens, bob, bob_blocks);
  EXPECT_EQ(cache.match(tokens, bob, 4), bob_blocks);
  EXPECT_EQ(cache.match(tokens, alice, 4), blocks);
  for (int i = 1; i < 4; ++i) EXPECT_NE(bob_blocks[static_cast<size_t>(i)], blocks[static_cast<size_t>(i)]);
}

// Where a prompt leaves the tree inside a block: the cached block there that agrees with it longest.
TEST(PrefixCache, PartialMatchFindsTheBlockAgreeingLongestAfterTheWholeBlocks) {
  BlockPool pool(kLayout, 16);
  PrefixCache cache(pool);
  const CacheDomain domain{"s", 0};
  const auto tokens = iota_tokens(48);
  const auto blocks = fill(pool, cache, tokens, domain, 3);
  auto near = tokens;  // a sibling of block 1 agreeing on its first 3 positions only
  near[19] = 999;
  const auto near_blocks = fill(pool, cache, near, domain, 2);  // near_blocks[0] stays out: blocks[0] is that edge
  release_all(cache, blocks);
  release_all(cache, near_blocks);

  struct Case {
    const char* name;
    int64_t agree;       // leading tokens of block 1 the query shares with `tokens`
    int64_t max_tokens;
    int64_t expected;    // positions reported
    bool from_near;      // copied from near's block (it agrees as long) or tokens'
  };
  const Case cases[] = {
      {"agrees for 9", 9, 100, 9, false},
      {"capped by max_tokens", 9, 5, 5, false},
      {"agrees for 3: either sibling", 3, 100, 3, false},
      {"agrees on the whole block: one short of it", 16, 100, 15, false},
      {"agrees for 0", 0, 100, 0, false},
      {"max_tokens 0", 9, 0, 0, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto query = tokens;
    for (int64_t i = 16 + c.agree; i < 48; ++i) query[static_cast<size_t>(i)] = 500 + static_cast<int32_t>(i);
    const auto whole = cache.match(query, domain, 1);  // as the engine caps it: block 1 is for the partial
    ASSERT_EQ(whole, std::vector<int32_t>{blocks[0]});
    const auto partial = cache.match_partial(query, domain, whole, c.max_tokens);
    EXPECT_EQ(partial.tokens, c.expected);
    if (c.expected == 0) {
      EXPECT_EQ(partial.block, -1);
    } else if (c.agree > 3) {
      EXPECT_EQ(partial.block, blocks[1]);
    } else {
      EXPECT_TRUE(partial.block == blocks[1] || partial.block == near_blocks[1]);
    }
    if (partial.block >= 0) {
      EXPECT_EQ(pool.ref_count(partial.block), 2);  // the cache's and the caller's
      cache.release(partial.block);
    }
    release_all(cache, whole);
  }
  // From the root: no whole block matches, the first one agrees for 7 positions.
  auto query = tokens;
  query[7] = 999;
  EXPECT_TRUE(cache.match(query, domain, 10).empty());
  const auto partial = cache.match_partial(query, domain, {}, 100);
  EXPECT_EQ(partial.block, blocks[0]);
  EXPECT_EQ(partial.tokens, 7);
  cache.release(partial.block);
  EXPECT_EQ(cache.idle_blocks(), 4);  // every reference given back
}

// The trust rule of whole blocks holds for the positions copied out of a block: another salt never copies
// from a salted block, even positions that lie inside its own public prefix.
TEST(PrefixCache, PartialMatchStaysInTheRequestsDomain) {
  BlockPool pool(kLayout, 16);
  PrefixCache cache(pool);
  const auto tokens = iota_tokens(64);
  // Block 0 is public for both; block 1 ([16, 32)) straddles the 20-token public prefix: salted.
  const CacheDomain alice{"alice", 20}, bob{"bob", 20};
  release_all(cache, fill(pool, cache, tokens, alice, 3));
  auto query = tokens;
  query[18] = 999;  // agrees with block 1 for 2 positions, both inside the public prefix

  const auto bob_whole = cache.match(query, bob, 10);
  ASSERT_EQ(bob_whole.size(), 1u);
  EXPECT_EQ(cache.match_partial(query, bob, bob_whole, 100).block, -1);
  EXPECT_EQ(cache.match_partial(query, CacheDomain{"bob", 64}, bob_whole, 100).block, -1);
  release_all(cache, bob_whole);

  const auto alice_whole = cache.match(query, alice, 10);
  const auto partial = cache.match_partial(query, alice, alice_whole, 100);
  EXPECT_GE(partial.block, 0);
  EXPECT_EQ(partial.tokens, 2);
  cache.release(partial.block);
  release_all(cache, alice_whole);

  // A public block is copied from by every salt; with no public prefix, not even the first block.
  auto early = tokens;
  early[5] = 999;
  const auto public_partial = cache.match_partial(early, bob, {}, 100);
  EXPECT_GE(public_partial.block, 0);
  EXPECT_EQ(public_partial.tokens, 5);
  cache.release(public_partial.block);
  EXPECT_EQ(cache.match_partial(early, CacheDomain{"bob", 0}, {}, 100).block, -1);
  EXPECT_EQ(cache.match_partial(early, CacheDomain{"alice", 0}, {}, 100).block, -1);
}

TEST(PrefixCache, EvictsUnreferencedLeavesLeastRecentlyUsedFirst) {
  BlockPool pool(kLayout, 8);
  PrefixCache cache(pool);
  const CacheDomain domain{"", 0};
  const auto a = iota_tokens(32, 0), b = iota_tokens(32, 100), c = iota_tokens(16, 200);
  const auto blocks_a = fill(pool, cache, a, domain, 2);
  const auto blocks_b = fill(pool, cache, b, domain, 2);
  const auto blocks_c = fill(pool, cache, c, domain, 1);
  release_all(cache, blocks_a);
  release_all(cache, blocks_b);
  // c is still held by its sequence: never evicted.
  EXPECT_EQ(cache.idle_blocks(), 4);
  release_all(cache, cache.match(a, domain, 2));  // a is now more recent than b

  EXPECT_EQ(cache.evict(1), 1);  // b's leaf
  EXPECT_TRUE(cache.match(b, domain, 2).size() == 1);
  release_all(cache, {blocks_b[0]});
  EXPECT_EQ(cache.evict(10), 3);  // a (leaf, then its parent), then what is left of b, used since
  EXPECT_EQ(cache.size(), 1);
  EXPECT_EQ(cache.evictions(), 4);
  EXPECT_EQ(cache.idle_blocks(), 0);
  EXPECT_EQ(pool.free_count(), 7);
  EXPECT_EQ(cache.match(c, domain, 1), blocks_c);
}

TEST(PrefixCache, AParentHeldOnlyByTheCacheWaitsForItsChildren) {
  BlockPool pool(kLayout, 8);
  PrefixCache cache(pool);
  const CacheDomain domain{"", 0};
  const auto tokens = iota_tokens(32);
  const auto blocks = fill(pool, cache, tokens, domain, 2);
  cache.release(blocks[0]);  // the sequence keeps only its second block (it had its own copy of the first)
  EXPECT_EQ(cache.idle_blocks(), 1);
  EXPECT_EQ(cache.evict(2), 0);
  cache.release(blocks[1]);
  EXPECT_EQ(cache.idle_blocks(), 2);
  EXPECT_EQ(cache.evict(2), 2);
  EXPECT_EQ(pool.free_count(), 8);
}

TEST(PrefixCache, DestructionReleasesEveryBlock) {
  BlockPool pool(kLayout, 70);
  {
    PrefixCache cache(pool);
    const auto tokens = iota_tokens(64 * 16);
    const auto blocks = fill(pool, cache, tokens, CacheDomain{"x", 0}, 64);  // a deep chain
    release_all(cache, blocks);
    EXPECT_EQ(pool.free_count(), 6);
  }
  EXPECT_EQ(pool.free_count(), 70);
}

}  // namespace
}  // namespace rag::generate
