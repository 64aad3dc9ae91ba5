#pragma once
// Importance-weighted k-means over d-dimensional points, for VQ codebooks. Every coordinate of every point
// carries its own error weight (column importance times the squared scales that map the normalised point
// back to weights), so the objective is sum_p sum_t w_pt (v_pt - C[a_p][t])^2.
// Deterministic for a seed and independent of the thread count: k-means++ seeding draws from one seeded
// generator, the assignment step runs in parallel but each point is handled alone, and the centroid
// update sums in point order on one thread.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <xsimd/xsimd.hpp>

#include "qsafe/core/aligned_buffer.hpp"
#include "qsafe/core/parallel.hpp"

namespace qsafe {

/// n points of `dim` coordinates, each coordinate with an error weight >= 0.
struct WeightedVectors {
    std::size_t dim = 0;
    std::vector<float> values;   // n x dim
    std::vector<float> weights;  // n x dim
    std::size_t size() const noexcept { return dim == 0 ? 0 : values.size() / dim; }
    const float* point(std::size_t p) const noexcept { return values.data() + p * dim; }
    const float* weight(std::size_t p) const noexcept { return weights.data() + p * dim; }
};

/// A codebook of `entries` codewords (a multiple of 16) laid out coordinate-major for the SIMD search.
class SearchCodebook {
  public:
    SearchCodebook() = default;
    /// From an entry-major codebook (entries x dim).
    SearchCodebook(const std::vector<float>& entry_major, std::size_t dim) : dim_(dim), entries_(entry_major.size() / dim) {
        coords_.assign(dim_ * entries_, 0.0f);
        for (std::size_t c = 0; c < entries_; ++c)
            for (std::size_t t = 0; t < dim_; ++t) coords_[t * entries_ + c] = entry_major[c * dim_ + t];
    }
    std::size_t entries() const noexcept { return entries_; }
    std::size_t dim() const noexcept { return dim_; }

    /// dist[c] = sum_t weight[t] * (target[t] - C[c][t])^2 for every entry; dist must hold entries() floats, aligned.
    void distances(const float* target, const float* weight, float* dist) const noexcept {
        using fb = xsimd::batch<float>;
        for (std::size_t c = 0; c < entries_; c += fb::size) {
            fb acc(0.0f);
            for (std::size_t t = 0; t < dim_; ++t) {
                const fb diff = fb::load_aligned(coords_.data() + t * entries_ + c) - fb(target[t]);
                acc = xsimd::fma(fb(weight[t]), diff * diff, acc);
            }
            acc.store_aligned(dist + c);
        }
    }
    /// The nearest entry (the first one on ties) and its weighted squared distance. Each lane keeps the
    /// first minimum of its entries (strict <), then the lanes are merged by (distance, index).
    std::pair<std::size_t, float> nearest(const float* target, const float* weight) const noexcept {
        using fb = xsimd::batch<float>;
        constexpr std::size_t lanes = fb::size;
        alignas(64) float lane_index[lanes];
        for (std::size_t i = 0; i < lanes; ++i) lane_index[i] = static_cast<float>(i);
        fb index = fb::load_aligned(lane_index);  // entry numbers are exact in float (< 2^24)
        fb best(std::numeric_limits<float>::infinity()), best_index(0.0f);
        for (std::size_t c = 0; c < entries_; c += lanes) {
            fb acc(0.0f);
            for (std::size_t t = 0; t < dim_; ++t) {
                const fb diff = fb::load_aligned(coords_.data() + t * entries_ + c) - fb(target[t]);
                acc = xsimd::fma(fb(weight[t]), diff * diff, acc);
            }
            const auto better = acc < best;
            best = xsimd::select(better, acc, best);
            best_index = xsimd::select(better, index, best_index);
            index += fb(static_cast<float>(lanes));
        }
        alignas(64) float value[lanes], at[lanes];
        best.store_aligned(value);
        best_index.store_aligned(at);
        std::size_t pick = 0;
        for (std::size_t i = 1; i < lanes; ++i)
            if (value[i] < value[pick] || (value[i] == value[pick] && at[i] < at[pick])) pick = i;
        return {static_cast<std::size_t>(at[pick]), value[pick]};
    }

  private:
    std::size_t dim_ = 0;
    std::size_t entries_ = 0;
    aligned_vector<float> coords_;  // dim x entries
};

struct KMeansVectorOptions {
    std::size_t clusters = 256;  // a multiple of 16
    int iterations = 25;
    std::uint64_t seed = 0x5eedULL;
};

namespace detail {

/// Weighted squared distance between a point and a codeword.
inline double weighted_distance(const float* v, const float* w, const float* c, std::size_t dim) noexcept {
    double s = 0.0;
    for (std::size_t t = 0; t < dim; ++t) {
        const double d = static_cast<double>(v[t]) - c[t];
        s += static_cast<double>(w[t]) * d * d;
    }
    return s;
}

/// k-means++ seeding with weighted squared distances; returns clusters x dim (entry-major).
inline std::vector<float> kmeans_plus_plus(const WeightedVectors& pts, std::size_t k, std::mt19937_64& rng) {
    const std::size_t n = pts.size(), d = pts.dim;
    std::vector<float> centers(k * d, 0.0f);
    std::vector<double> d2(n, std::numeric_limits<double>::infinity());
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    // The first center: drawn in proportion to the point's total weight.
    std::vector<double> mass(n);
    for (std::size_t p = 0; p < n; ++p) {
        double s = 0.0;
        for (std::size_t t = 0; t < d; ++t) s += pts.weight(p)[t];
        mass[p] = s;
    }
    auto draw = [&](const std::vector<double>& m) -> std::size_t {
        const double total = std::accumulate(m.begin(), m.end(), 0.0);
        if (!(total > 0.0)) return static_cast<std::size_t>(rng() % n);
        double target = unit(rng) * total;
        for (std::size_t p = 0; p < n; ++p) {
            target -= m[p];
            if (target < 0.0 && m[p] > 0.0) return p;
        }
        std::size_t last = n - 1;  // rounding left a sliver: the last point with mass
        while (last > 0 && !(m[last] > 0.0)) --last;
        return last;
    };
    for (std::size_t c = 0; c < k; ++c) {
        const std::size_t chosen = draw(c == 0 ? mass : d2);
        std::copy(pts.point(chosen), pts.point(chosen) + d, centers.begin() + static_cast<std::ptrdiff_t>(c * d));
        const float* center = centers.data() + c * d;
        for (std::size_t p = 0; p < n; ++p) d2[p] = std::min(d2[p], weighted_distance(pts.point(p), pts.weight(p), center, d));
    }
    return centers;
}

}  // namespace detail

/// Assigns every point to its nearest codeword (in parallel; each point alone). Returns the total error.
inline double assign_nearest(const WeightedVectors& pts, const SearchCodebook& book, std::vector<std::uint8_t>& codes,
                             std::vector<float>* errors = nullptr) {
    const std::size_t n = pts.size();
    codes.resize(n);
    std::vector<float> err(n);
    parallel_for_ranges(n, 1024, [&](std::size_t begin, std::size_t end) {
        for (std::size_t p = begin; p < end; ++p) {
            const auto [c, e] = book.nearest(pts.point(p), pts.weight(p));
            codes[p] = static_cast<std::uint8_t>(c);
            err[p] = e;
        }
    });
    double total = 0.0;
    for (float e : err) total += e;  // in point order: the same sum for any thread count
    if (errors) *errors = std::move(err);
    return total;
}

/// Weighted k-means with 8-bit codes: returns clusters x dim centroids (entry-major) fitted by k-means++
/// seeding and Lloyd iterations. Empty clusters are re-seeded at the worst-fitted points.
inline std::vector<float> kmeans_vectors(const WeightedVectors& pts, const KMeansVectorOptions& opt) {
    const std::size_t n = pts.size(), d = pts.dim, k = opt.clusters;
    std::mt19937_64 rng(opt.seed);
    if (n == 0) return std::vector<float>(k * d, 0.0f);
    std::vector<float> centers = detail::kmeans_plus_plus(pts, k, rng);
    std::vector<std::uint8_t> codes;
    std::vector<float> errors;
    std::vector<double> sum(k * d), wsum(k * d);
    std::vector<double> members(k);
    double previous = std::numeric_limits<double>::infinity();
    for (int it = 0; it < opt.iterations; ++it) {
        const double total = assign_nearest(pts, SearchCodebook(centers, d), codes, &errors);
        std::fill(sum.begin(), sum.end(), 0.0);
        std::fill(wsum.begin(), wsum.end(), 0.0);
        std::fill(members.begin(), members.end(), 0.0);
        for (std::size_t p = 0; p < n; ++p) {
            const std::size_t c = codes[p];
            for (std::size_t t = 0; t < d; ++t) {
                const double w = pts.weight(p)[t];
                sum[c * d + t] += w * pts.point(p)[t];
                wsum[c * d + t] += w;
                members[c] += w;
            }
        }
        std::vector<std::size_t> empty;
        for (std::size_t c = 0; c < k; ++c) {
            if (!(members[c] > 0.0)) {
                empty.push_back(c);
                continue;
            }
            for (std::size_t t = 0; t < d; ++t)
                if (wsum[c * d + t] > 0.0) centers[c * d + t] = static_cast<float>(sum[c * d + t] / wsum[c * d + t]);
        }
        if (!empty.empty()) {
            // Worst-fitted points first (ties by index), one per empty cluster.
            std::vector<std::size_t> order(n);
            std::iota(order.begin(), order.end(), std::size_t{0});
            const std::size_t take = std::min(empty.size(), n);
            std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(take), order.end(),
                              [&](std::size_t a, std::size_t b) { return errors[a] > errors[b] || (errors[a] == errors[b] && a < b); });
            for (std::size_t i = 0; i < take; ++i)
                std::copy(pts.point(order[i]), pts.point(order[i]) + d, centers.begin() + static_cast<std::ptrdiff_t>(empty[i] * d));
        }
        // Lloyd never increases the error; stop once it no longer falls noticeably.
        if (empty.empty() && total >= previous * (1.0 - 1e-5)) break;
        previous = total;
    }
    return centers;
}

/// A deterministic subsample of at most max_points point indices (sorted), drawn with the seed.
inline std::vector<std::size_t> subsample_indices(std::size_t n, std::size_t max_points, std::uint64_t seed) {
    std::vector<std::size_t> idx(n);
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    if (n <= max_points) return idx;
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < max_points; ++i) std::swap(idx[i], idx[i + static_cast<std::size_t>(rng() % (n - i))]);
    idx.resize(max_points);
    std::sort(idx.begin(), idx.end());
    return idx;
}

}  // namespace qsafe
