// The vector index: a FAISS index over dense rows plus the row -> chunk id map.
//
// Rows, not chunk ids, are what FAISS sees: selectors (SearchParameters::sel) work on the labels the inner
// index returns, and FAISS 1.7.3's IndexIDMap refuses SearchParameters, so we keep the id map ourselves and
// use IndexIDMap only as the container format on disk (its id_map holds -1 for a tombstoned row).
//
// Invariants:
//  1. id_map is ascending (chunk ids only grow; add() checks), so chunk id -> row is a binary search and a
//     sorted id list -> row bitmap is a merge.
//  2. A row is live or dead. flat: a removal is physical (IndexFlat::remove_ids shifts later rows, and id_map
//     with them), so no row is ever dead. ivf: remove_ids drops the row's code from its list (labels = rows
//     do not shift); the row stays dead in id_map. sq4: as flat, and its quantized copy is re-derived.
//     hnsw: FAISS cannot remove; the row stays in the graph and every search excludes dead rows through a
//     selector. Dead rows go when the index is rebuilt from the
//     catalog (the ingest job does so above VectorIndexParams::max_dead_fraction).
//  3. Labels an inner index returns are rows; -1 (fewer than k results) is skipped.
//
// Filtered search: a VectorFilter is a bitmap over rows (FAISS IDSelectorBitmap) plus the admitted rows.
// flat scores the admitted rows (or all live rows) exactly, with nn::dot_f32. hnsw: when the filter admits
// few rows (VectorIndexParams::exact_fraction / exact_max_rows) or the index is small, the admitted rows are
// scored exactly (a filtered graph walk mostly visits rejected rows and loses recall); otherwise efSearch
// grows with the share filtered out. ivf: the list scan tests the selector before scoring, so filtering is
// cheap; nprobe grows as the share shrinks, up to every list (exact) for small or sparsely admitted sets.
// sq4: exact when few rows are admitted or the index is small; otherwise the scan of the 4-bit copy skips
// groups of 16 rows without an admitted one and offers only the admitted rows of the rest, so a filter only
// saves work.
//
// sq4's copy quantizes each dimension over the range the rows span (min to max in 15 steps, fixed when the
// copy is derived; rows added later are packed in it, unless one of their values falls outside, which
// derives the copy anew: clipped, such a row scanned as some other vector). For a
// query q, Σ q_i x_i ≈ Σ q_i min_i + Σ (q_i step_i) code_i, and the first sum is the same for every row, so
// rows rank by Σ w_i code_i with w_i = q_i step_i rounded to int8: exact integer sums (nn::scan_u4).
// Quantization moves a score by about |q| · step / √12 ≈ 0.01 on unit vectors of dimension 384, while the
// exact re-scoring of the best sq4_rescore rows restores the order among them: bench/retrieval measured
// recall@10 1.000 against exact search at 1M rows, on its near-uniform synthetic vectors too.
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <queue>

#include "common/error.h"
#include "common/hash.h"
#include "index/index.h"
#include "index/vector-impl.h"
#include "nn/kernels.h"

namespace rag::index {

using idx_t = faiss::Index::idx_t;

namespace {

constexpr int kMaxEfSearch = 1024;
constexpr int kIvfMinPointsPerList = 39;  // FAISS warns below this many training points per list
constexpr int kIvfTrainPointsPerList = 64;

bool bit(const std::vector<uint8_t>& bits, size_t i) { return (bits[i >> 3] >> (i & 7)) & 1; }
void set_bit(std::vector<uint8_t>& bits, size_t i) { bits[i >> 3] |= static_cast<uint8_t>(1u << (i & 7)); }
void clear_bit(std::vector<uint8_t>& bits, size_t i) { bits[i >> 3] &= static_cast<uint8_t>(~(1u << (i & 7))); }

// Keeps the best k (score, chunk id): higher score first, then lower chunk id, so ties order stably.
class TopK {
 public:
  explicit TopK(size_t k) : k_(k) {}
  void push(float score, int64_t id) {
    if (heap_.size() < k_) {
      heap_.emplace(score, id);
    } else if (better({score, id}, heap_.top())) {
      heap_.pop();
      heap_.emplace(score, id);
    }
  }
  std::vector<ScoredChunk> take() {
    std::vector<ScoredChunk> out;
    while (!heap_.empty()) {
      out.push_back({heap_.top().second, heap_.top().first});
      heap_.pop();
    }
    std::reverse(out.begin(), out.end());
    return out;
  }

 private:
  using Entry = std::pair<float, int64_t>;
  static bool better(const Entry& a, const Entry& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); }
  struct Worse {
    bool operator()(const Entry& a, const Entry& b) const { return better(a, b); }  // top() = the worst kept
  };
  size_t k_;
  std::priority_queue<Entry, std::vector<Entry>, Worse> heap_;
};

// IndexFlatIP whose distance computer (what HNSW calls for every edge, at build and at search) uses
// nn::dot_f32. Debian's FAISS 1.7.3 is built for a generic x86-64 and scores a 384-float inner product in
// about 3 µs; the AVX2/AVX-512 kernel takes tens of nanoseconds. On disk it is a plain IndexFlatIP (FAISS
// writes it as its base class); load() swaps one back in.
struct FastFlatIP final : faiss::IndexFlatIP {
  explicit FastFlatIP(int dim) : faiss::IndexFlatIP(dim) {}

  struct Computer final : faiss::FlatCodesDistanceComputer {
    const float* base;
    int64_t dim;
    const float* query = nullptr;
    explicit Computer(const faiss::IndexFlat& storage)
        : faiss::FlatCodesDistanceComputer(storage.codes.data(), storage.code_size),
          base(storage.get_xb()),
          dim(storage.d) {}
    void set_query(const float* x) override { query = x; }
    float distance_to_code(const uint8_t* code) override {
      return nn::dot_f32(query, reinterpret_cast<const float*>(code), dim);
    }
    float symmetric_dis(idx_t i, idx_t j) override { return nn::dot_f32(base + i * dim, base + j * dim, dim); }
  };
  faiss::FlatCodesDistanceComputer* get_FlatCodesDistanceComputer() const override { return new Computer(*this); }
};

std::string faiss_message(const faiss::FaissException& e) {
  std::string m = e.msg;
  return m.substr(0, 300);
}

}  // namespace

std::string_view vector_index_kind_name(VectorIndexKind kind) {
  switch (kind) {
    case VectorIndexKind::kAuto: return "auto";
    case VectorIndexKind::kFlat: return "flat";
    case VectorIndexKind::kSq4: return "sq4";
    case VectorIndexKind::kHnsw: return "hnsw";
    case VectorIndexKind::kIvf: return "ivf";
  }
  return "?";
}

VectorIndexKind parse_vector_index_kind(std::string_view name) {
  for (auto kind : {VectorIndexKind::kAuto, VectorIndexKind::kFlat, VectorIndexKind::kSq4, VectorIndexKind::kHnsw,
                    VectorIndexKind::kIvf})
    if (vector_index_kind_name(kind) == name) return kind;
  fail(Errc::kInvalidArgument, "vector index kind '{}' is not one of auto, flat, sq4, hnsw, ivf", name);
}

VectorIndexKind auto_vector_index_kind(int64_t vectors, const VectorIndexParams& params) {
  if (vectors <= params.flat_max_vectors) return VectorIndexKind::kFlat;
  return vectors <= params.sq4_max_vectors ? VectorIndexKind::kSq4 : VectorIndexKind::kHnsw;
}

namespace {

constexpr int64_t kGroup = nn::kScanGroupRows;
constexpr int64_t kScanBlockGroups = 64;  // groups a thread scans into its buffer at a time

}  // namespace

struct VectorIndex::Impl {
  int dim = 0;
  VectorIndexKind kind = VectorIndexKind::kFlat;
  VectorIndexParams params;
  std::unique_ptr<faiss::Index> index;
  std::vector<int64_t> id_map;   // row -> chunk id, ascending (a dead row keeps its id in memory)
  std::vector<uint8_t> live;     // bit per row
  int64_t live_count = 0;
  int ivf_lists = 0;
  // sq4's quantized copy (see the header comment): per dimension x ≈ sq_min + sq_step * code; codes in
  // nn::scan_u4's layout, zero past the last row.
  std::vector<float> sq_min, sq_step;
  std::vector<uint8_t> sq_codes;

  size_t rows() const { return id_map.size(); }
  const float* flat_rows() const { return static_cast<const faiss::IndexFlat*>(index.get())->get_xb(); }
  // The copy's dimensions: nn::scan_u4 takes multiples of 8, so the last few pad with code 0 and weight 0.
  int64_t sq_dim() const { return (dim + 7) / 8 * 8; }
  size_t group_bytes() const { return 8 * static_cast<size_t>(sq_dim()); }

  // Derives the copy anew: ranges from every row, then codes.
  void sq_derive() {
    sq_min.assign(static_cast<size_t>(dim), 0.0f);
    sq_step.assign(static_cast<size_t>(dim), 0.0f);
    sq_codes.clear();
    if (rows() == 0) return;
    const float* x = flat_rows();
    std::vector<float> high(x, x + dim);
    std::copy_n(x, dim, sq_min.begin());
    for (size_t r = 1; r < rows(); ++r)
      for (int i = 0; i < dim; ++i) {
        const float v = x[r * static_cast<size_t>(dim) + static_cast<size_t>(i)];
        sq_min[static_cast<size_t>(i)] = std::min(sq_min[static_cast<size_t>(i)], v);
        high[static_cast<size_t>(i)] = std::max(high[static_cast<size_t>(i)], v);
      }
    for (int i = 0; i < dim; ++i)
      sq_step[static_cast<size_t>(i)] = (high[static_cast<size_t>(i)] - sq_min[static_cast<size_t>(i)]) / 15.0f;
    sq_pack(0);
  }

  // Dimension i's code for `value` before clamping to [0, 15]; with an empty range (step 0), any other
  // value than the range's one is outside it.
  float sq_code(size_t i, float value) const {
    const float step = sq_step[i];
    if (step > 0) return std::nearbyint((value - sq_min[i]) / step);
    return value == sq_min[i] ? 0.0f : value < sq_min[i] ? -1.0f : 16.0f;
  }

  // Whether sq_pack would clip a value of rows [first, rows()).
  bool sq_exceeds(size_t first) const {
    const float* x = flat_rows();
    for (size_t r = first; r < rows(); ++r)
      for (size_t i = 0; i < static_cast<size_t>(dim); ++i) {
        const float code = sq_code(i, x[r * static_cast<size_t>(dim) + i]);
        if (code < 0.0f || code > 15.0f) return true;
      }
    return false;
  }

  // Quantizes rows [first, rows()) into the copy with its current ranges.
  void sq_pack(size_t first) {
    const auto groups = static_cast<int64_t>((rows() + kGroup - 1) / kGroup);
    sq_codes.resize(static_cast<size_t>(groups) * group_bytes(), 0);
    const float* x = flat_rows();
    const auto first_group = static_cast<int64_t>(first / kGroup);
#pragma omp parallel
    {
      std::vector<uint8_t> codes(static_cast<size_t>(sq_dim()), 0);
#pragma omp for schedule(static)
      for (int64_t g = first_group; g < groups; ++g) {
        for (size_t r = std::max(first, static_cast<size_t>(g * kGroup));
             r < std::min(rows(), static_cast<size_t>((g + 1) * kGroup)); ++r) {
          for (size_t i = 0; i < static_cast<size_t>(dim); ++i)
            codes[i] = static_cast<uint8_t>(std::clamp(sq_code(i, x[r * static_cast<size_t>(dim) + i]), 0.0f, 15.0f));
          nn::pack_u4_row(codes.data(), sq_dim(), static_cast<int64_t>(r % kGroup),
                          sq_codes.data() + static_cast<size_t>(g) * group_bytes());
        }
      }
    }
  }

  // The copy's best rows for `query` (among `admitted`, a row bitmap, when given), re-scored exactly.
  std::vector<ScoredChunk> sq_search(const float* query, int k, const VectorFilter* filter) const {
    std::vector<int8_t> weights(static_cast<size_t>(sq_dim()), 0);
    float largest = 0;
    for (size_t i = 0; i < sq_step.size(); ++i) largest = std::max(largest, std::abs(query[i] * sq_step[i]));
    if (largest == 0) return exact(query, k, filter ? &filter->rows : nullptr);  // every row scores alike
    for (size_t i = 0; i < sq_step.size(); ++i)
      weights[i] = static_cast<int8_t>(std::lrint(query[i] * sq_step[i] * 127.0f / largest));
    const std::vector<uint8_t>* admitted = filter ? &filter->bitmap : nullptr;
    const auto want = static_cast<size_t>(std::max(params.sq4_rescore, 4 * k));
    const auto groups = static_cast<int64_t>((rows() + kGroup - 1) / kGroup);
    // A group's rows to consider, one bit each: its 16 bits of the bitmap (2 bytes; the last group may have
    // 1), or every row it holds.
    auto group_mask = [&](int64_t g) -> uint32_t {
      if (!admitted) {
        const int64_t held = std::min<int64_t>(kGroup, static_cast<int64_t>(rows()) - g * kGroup);
        return (1u << held) - 1;
      }
      const auto byte = static_cast<size_t>(2 * g);
      return (*admitted)[byte] | (byte + 1 < admitted->size() ? (*admitted)[byte + 1] << 8 : 0u);
    };
    using Candidate = std::pair<int32_t, int64_t>;  // (sum, row)
    std::vector<Candidate> candidates;
#pragma omp parallel
    {
      // The thread's best `want` as a min-heap on the sum: most rows fail the first comparison.
      std::vector<Candidate> best;
      best.reserve(want + 1);
      auto offer = [&](int32_t sum, int64_t row) {
        if (best.size() < want) {
          best.emplace_back(sum, row);
          std::push_heap(best.begin(), best.end(), std::greater<>());
        } else if (sum > best.front().first) {
          std::pop_heap(best.begin(), best.end(), std::greater<>());
          best.back() = {sum, row};
          std::push_heap(best.begin(), best.end(), std::greater<>());
        }
      };
      std::vector<int32_t> sums(static_cast<size_t>(kScanBlockGroups * kGroup));
      // Dynamic: on a busy machine a thread that lost its core would otherwise hold up the whole query.
#pragma omp for schedule(dynamic, 4)
      for (int64_t g0 = 0; g0 < groups; g0 += kScanBlockGroups) {
        const int64_t g1 = std::min(groups, g0 + kScanBlockGroups);
        uint32_t masks[kScanBlockGroups];
        for (int64_t g = g0; g < g1; ++g) masks[g - g0] = group_mask(g);
        for (int64_t g = g0; g < g1;) {
          if (masks[g - g0] == 0) {
            ++g;
            continue;
          }
          int64_t end = g + 1;  // a run of groups to scan in one call
          while (end < g1 && masks[end - g0] != 0) ++end;
          nn::scan_u4(sq_codes.data() + static_cast<size_t>(g) * group_bytes(), end - g, weights.data(), sq_dim(),
                      sums.data() + (g - g0) * kGroup);
          for (; g < end; ++g)
            for (uint32_t mask = masks[g - g0]; mask != 0; mask &= mask - 1) {
              const int64_t r = g * kGroup + std::countr_zero(mask);
              offer(sums[static_cast<size_t>(r - g0 * kGroup)], r);
            }
        }
      }
#pragma omp critical
      candidates.insert(candidates.end(), best.begin(), best.end());
    }
    if (candidates.size() > want) {
      std::nth_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(want), candidates.end(),
                       std::greater<>());
      candidates.resize(want);
    }
    TopK top(static_cast<size_t>(k));
    for (const auto& c : candidates)
      top.push(nn::dot_f32(query, flat_rows() + static_cast<size_t>(c.second) * static_cast<size_t>(dim), dim),
               id_map[static_cast<size_t>(c.second)]);
    return top.take();
  }

  void create(int64_t n_hint) {
    switch (kind) {
      case VectorIndexKind::kFlat:
      case VectorIndexKind::kSq4: index = std::make_unique<faiss::IndexFlatIP>(dim); break;
      case VectorIndexKind::kHnsw: {
        auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(dim, params.hnsw_m, faiss::METRIC_INNER_PRODUCT);
        delete hnsw->storage;  // empty; owned (own_fields)
        hnsw->storage = new FastFlatIP(dim);
        hnsw->hnsw.efConstruction = params.hnsw_ef_construction;
        hnsw->hnsw.efSearch = params.hnsw_ef_search;
        index = std::move(hnsw);
        break;
      }
      case VectorIndexKind::kIvf: {
        int lists = params.ivf_lists;
        if (lists <= 0) lists = static_cast<int>(4 * std::sqrt(static_cast<double>(std::max<int64_t>(n_hint, 1))));
        lists = std::clamp<int64_t>(lists, 1, std::max<int64_t>(1, n_hint / kIvfMinPointsPerList));
        ivf_lists = lists;
        auto* quantizer = new faiss::IndexFlatIP(dim);
        auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer, dim, lists, faiss::METRIC_INNER_PRODUCT);
        ivf->own_fields = true;
        ivf->nprobe = std::min(params.ivf_probe, lists);
        ivf->set_direct_map_type(faiss::DirectMap::Hashtable);  // reconstruct() for exact scoring
        index = std::move(ivf);
        break;
      }
      case VectorIndexKind::kAuto: RAG_ASSERT(false);
    }
  }

  // The float vector of a row: in place for flat and hnsw storage, copied from its list into `buffer` for ivf.
  const float* vector_of(size_t row, float* buffer) const {
    switch (kind) {
      case VectorIndexKind::kFlat:
      case VectorIndexKind::kSq4:
        return flat_rows() + row * dim;
      case VectorIndexKind::kHnsw:
        return static_cast<const faiss::IndexFlat*>(static_cast<const faiss::IndexHNSW*>(index.get())->storage)
                   ->get_xb() + row * dim;
      default:
        index->reconstruct(static_cast<idx_t>(row), buffer);
        return buffer;
    }
  }

  std::vector<ScoredChunk> exact(const float* query, int k, const std::vector<int64_t>* rows_subset) const {
    TopK top(static_cast<size_t>(k));
    std::vector<float> buffer(static_cast<size_t>(dim));
    auto score_row = [&](size_t r) {
      top.push(nn::dot_f32(query, vector_of(r, buffer.data()), dim), id_map[r]);
    };
    if (rows_subset) {
      for (int64_t r : *rows_subset)
        if (bit(live, static_cast<size_t>(r))) score_row(static_cast<size_t>(r));
    } else {
      for (size_t r = 0; r < rows(); ++r)
        if (bit(live, r)) score_row(r);
    }
    return top.take();
  }
};

VectorIndex::VectorIndex(int dim, VectorIndexKind kind, const VectorIndexParams& params)
    : impl_(std::make_unique<Impl>()) {
  if (dim < 1 || dim > 65536) fail(Errc::kInvalidArgument, "vector dimension {} is out of range", dim);
  impl_->dim = dim;
  impl_->kind = kind == VectorIndexKind::kAuto ? VectorIndexKind::kFlat : kind;
  impl_->params = params;
  impl_->create(0);
}

VectorIndex::VectorIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VectorIndex::~VectorIndex() = default;

std::unique_ptr<VectorIndex> VectorIndex::build(int dim, VectorIndexKind kind, const VectorIndexParams& params,
                                                std::span<const int64_t> chunk_ids, std::span<const float> rows) {
  if (kind == VectorIndexKind::kAuto)
    kind = auto_vector_index_kind(static_cast<int64_t>(chunk_ids.size()), params);
  auto impl = std::make_unique<Impl>();
  impl->dim = dim;
  impl->kind = kind;
  impl->params = params;
  try {
    impl->create(static_cast<int64_t>(chunk_ids.size()));
  } catch (const faiss::FaissException& e) {
    fail(Errc::kInternal, "vector index: cannot create a {} index: {}", vector_index_kind_name(kind), faiss_message(e));
  }
  std::unique_ptr<VectorIndex> out(new VectorIndex(std::move(impl)));
  out->add(chunk_ids, rows);
  return out;
}

void VectorIndex::add(std::span<const int64_t> chunk_ids, std::span<const float> rows) {
  auto& m = *impl_;
  RAG_ASSERT(rows.size() == chunk_ids.size() * static_cast<size_t>(m.dim));
  if (chunk_ids.empty()) return;
  int64_t last = m.id_map.empty() ? 0 : m.id_map.back();
  for (int64_t id : chunk_ids) {
    RAG_ASSERT(id > last);  // chunk ids are AUTOINCREMENT: new chunks always come after every indexed one
    last = id;
  }
  auto n = static_cast<idx_t>(chunk_ids.size());
  size_t first = m.rows();
  try {
    if (m.kind == VectorIndexKind::kIvf) {
      auto* ivf = static_cast<faiss::IndexIVFFlat*>(m.index.get());
      if (!ivf->is_trained) {
        // An index created empty trains on its first batch; the ingest job rebuilds (and so retrains) it from
        // the catalog once it has grown well past that (see ingest-job.cpp).
        if (m.ivf_lists > std::max<idx_t>(1, n / kIvfMinPointsPerList)) {
          m.create(n);  // fewer lists: k-means needs points to place them
          ivf = static_cast<faiss::IndexIVFFlat*>(m.index.get());
        }
        // k-means over a strided sample: enough points per list, and a spread of the whole batch.
        idx_t sample = std::min<idx_t>(n, static_cast<idx_t>(m.ivf_lists) * kIvfTrainPointsPerList);
        if (sample == n) {
          ivf->train(n, rows.data());
        } else {
          std::vector<float> points(static_cast<size_t>(sample) * m.dim);
          for (idx_t i = 0; i < sample; ++i)
            std::copy_n(rows.data() + static_cast<size_t>(i * n / sample) * m.dim, m.dim,
                        points.data() + static_cast<size_t>(i) * m.dim);
          ivf->train(sample, points.data());
        }
      }
      std::vector<idx_t> labels(chunk_ids.size());
      for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<idx_t>(first + i);
      ivf->add_with_ids(n, rows.data(), labels.data());
    } else {
      m.index->add(n, rows.data());
    }
  } catch (const faiss::FaissException& e) {
    fail(Errc::kInternal, "vector index: cannot add {} vectors: {}", n, faiss_message(e));
  }
  m.id_map.insert(m.id_map.end(), chunk_ids.begin(), chunk_ids.end());
  m.live.resize((m.rows() + 7) / 8, 0);
  for (size_t r = first; r < m.rows(); ++r) set_bit(m.live, r);
  m.live_count += n;
  if (m.kind == VectorIndexKind::kSq4) {
    if (first == 0 || m.sq_exceeds(first)) m.sq_derive();
    else m.sq_pack(first);
  }
}

std::optional<int64_t> VectorIndex::row_of(int64_t chunk_id) const {
  const auto& m = *impl_;
  auto it = std::lower_bound(m.id_map.begin(), m.id_map.end(), chunk_id);
  for (; it != m.id_map.end() && *it == chunk_id; ++it) {
    auto r = static_cast<size_t>(it - m.id_map.begin());
    if (bit(m.live, r)) return static_cast<int64_t>(r);
  }
  return std::nullopt;
}

std::vector<int64_t> VectorIndex::chunk_ids() const {
  const auto& m = *impl_;
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(m.live_count));
  for (size_t r = 0; r < m.rows(); ++r)
    if (bit(m.live, r) && (out.empty() || out.back() != m.id_map[r])) out.push_back(m.id_map[r]);
  return out;
}

void VectorIndex::remove(std::span<const int64_t> chunk_ids) {
  auto& m = *impl_;
  std::vector<int64_t> rows;
  for (int64_t id : chunk_ids)
    if (auto r = row_of(id)) rows.push_back(*r);
  if (rows.empty()) return;
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  try {
    if (m.kind == VectorIndexKind::kFlat || m.kind == VectorIndexKind::kSq4) {
      faiss::IDSelectorBatch sel(rows.size(), rows.data());
      m.index->remove_ids(sel);
      // Physical: later rows shift down, and id_map with them.
      std::vector<int64_t> ids;
      ids.reserve(m.rows() - rows.size());
      size_t next = 0;
      for (size_t r = 0; r < m.rows(); ++r) {
        if (next < rows.size() && rows[next] == static_cast<int64_t>(r)) {
          ++next;
          continue;
        }
        ids.push_back(m.id_map[r]);
      }
      m.id_map = std::move(ids);
      m.live.assign((m.rows() + 7) / 8, 0);
      for (size_t r = 0; r < m.rows(); ++r) set_bit(m.live, r);
      m.live_count = static_cast<int64_t>(m.rows());
      RAG_ASSERT(m.index->ntotal == m.live_count);
      if (m.kind == VectorIndexKind::kSq4) m.sq_derive();  // the rows moved
      return;
    }
    if (m.kind == VectorIndexKind::kIvf) {
      faiss::IDSelectorArray sel(rows.size(), rows.data());  // the hashtable direct map takes only an array
      m.index->remove_ids(sel);
    }
  } catch (const faiss::FaissException& e) {
    fail(Errc::kInternal, "vector index: cannot remove {} vectors: {}", rows.size(), faiss_message(e));
  }
  for (int64_t r : rows) clear_bit(m.live, static_cast<size_t>(r));
  m.live_count -= static_cast<int64_t>(rows.size());
}

int VectorIndex::dim() const { return impl_->dim; }
VectorIndexKind VectorIndex::kind() const { return impl_->kind; }
int64_t VectorIndex::size() const { return impl_->live_count; }
int64_t VectorIndex::rows() const { return static_cast<int64_t>(impl_->rows()); }
double VectorIndex::dead_fraction() const {
  return impl_->rows() == 0 ? 0.0 : 1.0 - static_cast<double>(impl_->live_count) / static_cast<double>(impl_->rows());
}
const VectorIndexParams& VectorIndex::params() const { return impl_->params; }

std::string VectorIndex::describe() const {
  const auto& m = *impl_;
  nlohmann::json j = {{"metric", "inner_product"}};
  if (m.kind == VectorIndexKind::kHnsw) {
    const auto* hnsw = static_cast<const faiss::IndexHNSW*>(m.index.get());
    j["M"] = m.params.hnsw_m;
    j["ef_construction"] = hnsw->hnsw.efConstruction;
    j["ef_search"] = m.params.hnsw_ef_search;
  } else if (m.kind == VectorIndexKind::kIvf) {
    const auto* ivf = static_cast<const faiss::IndexIVF*>(m.index.get());
    j["lists"] = ivf->nlist;
    j["probe"] = m.params.ivf_probe;
  } else if (m.kind == VectorIndexKind::kSq4) {
    j["rescore"] = m.params.sq4_rescore;
  }
  j["exact_fraction"] = m.params.exact_fraction;
  j["exact_max_rows"] = m.params.exact_max_rows;
  return j.dump();
}

bool VectorIndex::needs_rebuild(VectorIndexKind wanted) const {
  const auto& m = *impl_;
  if (wanted == VectorIndexKind::kAuto) wanted = auto_vector_index_kind(m.live_count, m.params);
  if (wanted != m.kind) return true;
  // Dead HNSW rows still cost every search a detour; dead IVF rows are gone from the lists (only their id_map
  // slot remains), so they wait for another reason to rebuild.
  if (m.kind == VectorIndexKind::kHnsw && dead_fraction() > m.params.max_dead_fraction) return true;
  if (m.kind == VectorIndexKind::kIvf && m.params.ivf_lists <= 0) {
    // Trained on the first batch of a young index: retrain once the lists it would get now are many more.
    double lists = std::min(4 * std::sqrt(static_cast<double>(m.live_count)),
                            static_cast<double>(m.live_count) / kIvfMinPointsPerList);
    if (lists > 2.0 * m.ivf_lists) return true;
  }
  return false;
}

VectorFilter VectorIndex::filter(std::span<const int64_t> chunk_ids) const {
  const auto& m = *impl_;
  VectorFilter f;
  f.bitmap.assign((m.rows() + 7) / 8, 0);
  size_t r = 0;
  for (int64_t id : chunk_ids) {
    while (r < m.rows() && m.id_map[r] < id) ++r;
    for (size_t s = r; s < m.rows() && m.id_map[s] == id; ++s)
      if (bit(m.live, s)) {
        set_bit(f.bitmap, s);
        f.rows.push_back(static_cast<int64_t>(s));
      }
  }
  return f;
}

std::vector<ScoredChunk> VectorIndex::search_exact(std::span<const float> query, int k, const VectorFilter* filter) const {
  RAG_ASSERT(query.size() == static_cast<size_t>(impl_->dim) && k >= 1);
  return impl_->exact(query.data(), k, filter ? &filter->rows : nullptr);
}

std::vector<ScoredChunk> VectorIndex::search(std::span<const float> query, int k, const VectorFilter* filter) const {
  const auto& m = *impl_;
  RAG_ASSERT(query.size() == static_cast<size_t>(m.dim) && k >= 1);
  if (m.live_count == 0) return {};
  if (filter) RAG_ASSERT(filter->bitmap.size() == (m.rows() + 7) / 8);
  auto admitted = filter ? static_cast<int64_t>(filter->rows.size()) : m.live_count;
  if (admitted == 0) return {};
  const std::vector<int64_t>* subset = filter ? &filter->rows : nullptr;
  double share = static_cast<double>(admitted) / static_cast<double>(m.live_count);
  bool small = m.live_count <= m.params.exact_max_rows || admitted <= m.params.exact_max_rows;
  // flat: our own scan (FAISS scores one query with a generic dot product; nn::dot_f32 uses AVX2/AVX-512).
  // hnsw: exact over the admitted rows when few are admitted or the index is small: cheaper than a walk
  // and exact, where a filtered walk loses recall.
  if (m.kind == VectorIndexKind::kFlat || (m.kind == VectorIndexKind::kSq4 && small) ||
      (m.kind == VectorIndexKind::kHnsw && (small || (filter && share <= m.params.exact_fraction))))
    return m.exact(query.data(), k, subset);
  if (m.kind == VectorIndexKind::kSq4) return m.sq_search(query.data(), k, filter);

  // The selector: the filter's bitmap (which holds live rows only), else the live bitmap when rows are dead.
  std::optional<faiss::IDSelectorBitmap> sel;
  if (filter) sel.emplace(filter->bitmap.size(), filter->bitmap.data());
  else if (m.live_count < static_cast<int64_t>(m.rows())) sel.emplace(m.live.size(), m.live.data());
  int want = static_cast<int>(std::min<int64_t>(k, admitted));

  faiss::SearchParametersHNSW hnsw_params;
  faiss::SearchParametersIVF ivf_params;
  faiss::SearchParameters* params = &hnsw_params;
  if (m.kind == VectorIndexKind::kHnsw) {
    hnsw_params.efSearch = static_cast<int>(std::clamp<double>(std::max(m.params.hnsw_ef_search, 2 * want) / share,
                                                               want, kMaxEfSearch));
  } else {
    // IVF scans whole lists and tests the selector before scoring a vector, so a filter costs little; probing
    // every list is exact, and what a small or sparsely admitted index gets.
    const auto* ivf = static_cast<const faiss::IndexIVF*>(m.index.get());
    double nlist = static_cast<double>(ivf->nlist);
    ivf_params.nprobe = static_cast<size_t>(
        small ? nlist : std::clamp<double>(std::ceil(m.params.ivf_probe / std::sqrt(share)), 1, nlist));
    params = &ivf_params;
  }
  if (sel) params->sel = &*sel;

  std::vector<float> distances(static_cast<size_t>(want));
  std::vector<idx_t> labels(static_cast<size_t>(want));
  try {
    m.index->search(1, query.data(), want, distances.data(), labels.data(), params);
  } catch (const faiss::FaissException& e) {
    fail(Errc::kInternal, "vector index: search failed: {}", faiss_message(e));
  }
  std::vector<ScoredChunk> out;
  for (int i = 0; i < want; ++i) {
    idx_t r = labels[static_cast<size_t>(i)];
    if (r < 0 || static_cast<size_t>(r) >= m.rows() || !bit(m.live, static_cast<size_t>(r))) continue;
    out.push_back({m.id_map[static_cast<size_t>(r)], distances[static_cast<size_t>(i)]});
  }
  std::stable_sort(out.begin(), out.end(), [](const ScoredChunk& a, const ScoredChunk& b) {
    return a.score > b.score || (a.score == b.score && a.chunk_id < b.chunk_id);
  });
  return out;
}

std::string VectorIndex::save(const std::string& path) const {
  const auto& m = *impl_;
  faiss::IndexIDMap container;
  container.index = m.index.get();
  container.own_fields = false;
  container.d = m.dim;
  container.metric_type = faiss::METRIC_INNER_PRODUCT;
  container.is_trained = m.index->is_trained;
  container.ntotal = static_cast<idx_t>(m.rows());
  container.id_map.resize(m.rows());
  for (size_t r = 0; r < m.rows(); ++r) container.id_map[r] = bit(m.live, r) ? m.id_map[r] : -1;
  std::string tmp = path + ".tmp";
  // Our own FILE, not write_index(index, filename): FAISS closes the files it opens without checking fclose,
  // so a failure writing the last buffered bytes (a full disk) went unnoticed and a truncated index whose
  // hash the manifest vouched for was published.
  FILE* file = std::fopen(tmp.c_str(), "wb");
  if (!file) fail(Errc::kIo, "{}: cannot create: {}", tmp, std::strerror(errno));
  try {
    faiss::write_index(&container, file);
  } catch (const faiss::FaissException& e) {
    container.index = nullptr;
    std::fclose(file);
    fail(Errc::kIo, "{}: cannot write the vector index: {}", tmp, faiss_message(e));
  }
  container.index = nullptr;
  bool written = std::fflush(file) == 0 && !std::ferror(file);
  int error = errno;
  if (std::fclose(file) != 0 && written) written = false, error = errno;
  if (!written) fail(Errc::kIo, "{}: cannot write the vector index: {}", tmp, std::strerror(error));
  std::string hash = hash_file(tmp).hex();
  commit_temp_file(tmp, path);
  return hash;
}

std::unique_ptr<VectorIndex> VectorIndex::load(const std::string& path, const std::string& expected_hash,
                                               const VectorIndexParams& params, VectorIndexKind kind) {
  // One open file for the hash and the read, so a writer renaming a new file in between cannot slip bytes
  // past the check. FAISS trusts what it reads: only a file whose hash the manifest vouches for reaches it.
  FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) fail(errno == ENOENT ? Errc::kNotFound : Errc::kIo, "{}: cannot open: {}", path, std::strerror(errno));
  std::unique_ptr<FILE, int (*)(FILE*)> closer(file, std::fclose);
  return load(file, path, expected_hash, params, kind);
}

std::unique_ptr<VectorIndex> VectorIndex::load(std::FILE* file, const std::string& path,
                                               const std::string& expected_hash, const VectorIndexParams& params,
                                               VectorIndexKind kind) {
  if (std::fseek(file, 0, SEEK_SET) != 0) fail(Errc::kIo, "{}: cannot seek: {}", path, std::strerror(errno));
  {
    faiss::VectorIOReader reader;
    char buffer[1 << 16];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) reader.data.insert(reader.data.end(), buffer, buffer + n);
    if (std::ferror(file)) fail(Errc::kIo, "{}: read failed", path);
    std::string hash =
        hash_bytes(std::string_view(reinterpret_cast<const char*>(reader.data.data()), reader.data.size())).hex();
    if (hash != expected_hash)
      fail(Errc::kCorrupt, "{}: hash {} differs from the manifest's {}; run rag ingest to rebuild the vector index",
           path, hash, expected_hash);
    std::unique_ptr<faiss::Index> read;
    try {
      read.reset(faiss::read_index(&reader));
    } catch (const faiss::FaissException& e) {
      fail(Errc::kCorrupt, "{}: not a readable FAISS index: {}; run rag ingest to rebuild it", path, faiss_message(e));
    }
    auto* container = dynamic_cast<faiss::IndexIDMap*>(read.get());
    if (!container || !container->index)
      fail(Errc::kCorrupt, "{}: not a rag vector index (no id map); run rag ingest to rebuild it", path);
    auto impl = std::make_unique<Impl>();
    impl->params = params;
    impl->dim = container->d;
    impl->index.reset(container->index);
    container->own_fields = false;
    container->index = nullptr;
    if (auto* hnsw = dynamic_cast<faiss::IndexHNSWFlat*>(impl->index.get())) {
      impl->kind = VectorIndexKind::kHnsw;
      auto* stored = dynamic_cast<faiss::IndexFlatIP*>(hnsw->storage);
      if (!stored || stored->d != container->d)
        fail(Errc::kCorrupt, "{}: HNSW storage is not a flat inner-product index; run rag ingest to rebuild it", path);
      auto fast = std::make_unique<FastFlatIP>(stored->d);
      fast->codes.swap(stored->codes);
      fast->ntotal = stored->ntotal;
      delete hnsw->storage;
      hnsw->storage = fast.release();
      impl->params.hnsw_m = static_cast<faiss::IndexHNSW*>(impl->index.get())->hnsw.nb_neighbors(1);
    } else if (auto* ivf = dynamic_cast<faiss::IndexIVFFlat*>(impl->index.get())) {
      impl->kind = VectorIndexKind::kIvf;
      impl->ivf_lists = static_cast<int>(ivf->nlist);
      ivf->set_direct_map_type(faiss::DirectMap::Hashtable);
    } else if (dynamic_cast<faiss::IndexFlatIP*>(impl->index.get())) {
      impl->kind = kind == VectorIndexKind::kSq4 ? VectorIndexKind::kSq4 : VectorIndexKind::kFlat;
    } else {
      fail(Errc::kCorrupt, "{}: unexpected FAISS index type; run rag ingest to rebuild it", path);
    }
    if (kind != VectorIndexKind::kAuto && kind != impl->kind)
      fail(Errc::kCorrupt,
           "{}: the manifest names a {} index but the file holds a {} index; run rag ingest to rebuild it", path,
           vector_index_kind_name(kind), vector_index_kind_name(impl->kind));
    if (impl->index->metric_type != faiss::METRIC_INNER_PRODUCT || impl->index->d != impl->dim)
      fail(Errc::kCorrupt, "{}: index metric or dimension is not what rag writes; run rag ingest to rebuild it", path);
    // Dead rows are -1 on disk; in memory they take the previous row's id so id_map stays ascending.
    const auto& ids = container->id_map;
    impl->id_map.resize(ids.size());
    impl->live.assign((ids.size() + 7) / 8, 0);
    int64_t previous = 0;
    for (size_t r = 0; r < ids.size(); ++r) {
      if (ids[r] == -1) {
        impl->id_map[r] = previous;
        continue;
      }
      if (ids[r] <= previous) fail(Errc::kCorrupt, "{}: chunk ids are not ascending at row {}", path, r);
      impl->id_map[r] = previous = ids[r];
      set_bit(impl->live, r);
      ++impl->live_count;
    }
    bool consistent = impl->kind == VectorIndexKind::kHnsw ? impl->index->ntotal == static_cast<idx_t>(ids.size())
                                                            : impl->index->ntotal == impl->live_count;
    const bool physical = impl->kind == VectorIndexKind::kFlat || impl->kind == VectorIndexKind::kSq4;
    if (!consistent || (physical && impl->live_count != static_cast<int64_t>(ids.size())))
      fail(Errc::kCorrupt, "{}: {} rows in the index but {} in its id map; run rag ingest to rebuild it", path,
           impl->index->ntotal, ids.size());
    if (impl->kind == VectorIndexKind::kSq4) impl->sq_derive();
    return std::unique_ptr<VectorIndex>(new VectorIndex(std::move(impl)));
  }
}

}  // namespace rag::index
