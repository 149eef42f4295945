// Fusion against hand-computed values: weighted min-max and reciprocal rank, ties, one side empty.
#include <gtest/gtest.h>

#include "retrieve/retrieve.h"

namespace rag::retrieve {
namespace {

using List = std::vector<index::ScoredChunk>;

std::vector<int64_t> ids(const std::vector<Candidate>& c) {
  std::vector<int64_t> out;
  for (const auto& x : c) out.push_back(x.chunk_id);
  return out;
}

const Candidate& find(const std::vector<Candidate>& c, int64_t id) {
  for (const auto& x : c)
    if (x.chunk_id == id) return x;
  ADD_FAILURE() << "no chunk " << id;
  return c.front();
}

TEST(Fusion, WeightedMinMaxByHand) {
  // BM25: 1 (10), 2 (6), 3 (2) -> normalised 1, 0.5, 0. Vector: 3 (0.9), 4 (0.5), 1 (0.1) -> 1, 0.5, 0.
  const List bm25 = {{1, 10}, {2, 6}, {3, 2}};
  const List vec = {{3, 0.9}, {4, 0.5}, {1, 0.1}};
  auto out = fuse(bm25, vec, Fusion::kWeighted, 0.8, 60);
  // 1: 0.8*1 + 0.2*0 = 0.8; 2: 0.8*0.5 = 0.4; 3: 0.8*0 + 0.2*1 = 0.2; 4: 0.2*0.5 = 0.1.
  EXPECT_EQ(ids(out), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_NEAR(find(out, 1).fused_score, 0.8, 1e-12);
  EXPECT_NEAR(find(out, 2).fused_score, 0.4, 1e-12);
  EXPECT_NEAR(find(out, 3).fused_score, 0.2, 1e-12);
  EXPECT_NEAR(find(out, 4).fused_score, 0.1, 1e-12);
  // Each candidate keeps both sides' ranks and scores (0 = absent).
  EXPECT_EQ(find(out, 1).bm25_rank, 1);
  EXPECT_EQ(find(out, 1).vector_rank, 3);
  EXPECT_DOUBLE_EQ(find(out, 1).vector_score, 0.1);
  EXPECT_EQ(find(out, 4).bm25_rank, 0);
  EXPECT_EQ(find(out, 2).vector_rank, 0);
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].fused_rank, static_cast<int>(i + 1));
    EXPECT_EQ(out[i].score, out[i].fused_score);
  }
  // Equal weights: 1: 0.5, 2: 0.25, 3: 0.5, 4: 0.25. Ties go to the better BM25 rank (1 before 3; 2 before 4).
  out = fuse(bm25, vec, Fusion::kWeighted, 0.5, 60);
  EXPECT_EQ(ids(out), (std::vector<int64_t>{1, 3, 2, 4}));
}

TEST(Fusion, ReciprocalRankByHand) {
  const List bm25 = {{1, 10}, {2, 6}, {3, 2}};
  const List vec = {{3, 0.9}, {4, 0.5}, {1, 0.1}};
  auto out = fuse(bm25, vec, Fusion::kRrf, 0.5, 10);
  // 1: .5/11 + .5/13; 3: .5/13 + .5/11 (a tie: BM25 rank decides, 1 first); 2: .5/12; 4: .5/12 (tie: 2 has a
  // BM25 rank, 4 none).
  EXPECT_EQ(ids(out), (std::vector<int64_t>{1, 3, 2, 4}));
  EXPECT_NEAR(find(out, 1).fused_score, 0.5 / 11 + 0.5 / 13, 1e-12);
  EXPECT_NEAR(find(out, 2).fused_score, 0.5 / 12, 1e-12);
  // Weighted toward BM25: 3 (.8/13 + .2/11 = .0797) still beats 2 (.8/12 = .0667); 4 (.2/12) last.
  out = fuse(bm25, vec, Fusion::kRrf, 0.8, 10);
  EXPECT_NEAR(find(out, 3).fused_score, 0.8 / 13 + 0.2 / 11, 1e-12);
  EXPECT_EQ(ids(out), (std::vector<int64_t>{1, 3, 2, 4}));
  out = fuse(bm25, vec, Fusion::kRrf, 1.0, 10);  // BM25 order, vector-only chunks after by vector rank
  EXPECT_EQ(ids(out), (std::vector<int64_t>{1, 2, 3, 4}));
}

TEST(Fusion, OneSideEmptyKeepsTheOthersOrder) {
  const List bm25 = {{7, 3}, {5, 2}, {9, 1}};
  for (Fusion f : {Fusion::kWeighted, Fusion::kRrf}) {
    EXPECT_EQ(ids(fuse(bm25, {}, f, 0.8, 60)), (std::vector<int64_t>{7, 5, 9}));
    EXPECT_EQ(ids(fuse({}, bm25, f, 0.8, 60)), (std::vector<int64_t>{7, 5, 9}));
    EXPECT_TRUE(fuse({}, {}, f, 0.8, 60).empty());
  }
  // A weight of 1 with an empty BM25 side still orders the vector side (all fused 0; ties by vector rank).
  EXPECT_EQ(ids(fuse({}, bm25, Fusion::kWeighted, 1.0, 60)), (std::vector<int64_t>{7, 5, 9}));
}

TEST(Fusion, EqualScoresOnASideNormaliseToOne) {
  // A side whose scores are all equal carries no order: each of its items counts as that side's best.
  auto out = fuse({{1, 4}, {2, 4}}, {{2, 0.3}}, Fusion::kWeighted, 0.5, 60);
  EXPECT_NEAR(find(out, 1).fused_score, 0.5, 1e-12);
  EXPECT_NEAR(find(out, 2).fused_score, 1.0, 1e-12);
  EXPECT_EQ(ids(out), (std::vector<int64_t>{2, 1}));
}

TEST(Fusion, FullTiesFallBackToChunkId) {
  auto out = fuse({}, {}, Fusion::kRrf, 0.5, 60);
  EXPECT_TRUE(out.empty());
  out = fuse({{9, 1}}, {{4, 1}}, Fusion::kWeighted, 0.5, 60);  // both 0.5; 9 has a BM25 rank, 4 does not
  EXPECT_EQ(ids(out), (std::vector<int64_t>{9, 4}));
}

}  // namespace
}  // namespace rag::retrieve
