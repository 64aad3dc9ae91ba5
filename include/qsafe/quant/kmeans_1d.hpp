#pragma once
// Importance-weighted 1-D k-means (Lloyd) for learned scalar codebooks. Deterministic: initial centroids
// are weighted quantiles, the optional subsample uses a seeded generator, and one centroid can be pinned
// to exactly 0.0 so a codebook always represents zero (outlier positions rely on it).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "qsafe/core/half.hpp"

namespace qsafe {

struct KMeans1dOptions {
    std::size_t clusters = 16;
    int iterations = 25;
    bool pin_zero = true;           // centroid 0 is fixed at 0.0
    bool round_to_fp16 = true;      // centroids are stored in fp16: fit with the values that will be stored
    std::size_t max_points = 1u << 20;  // subsample above this many points
    std::uint64_t seed = 0x5eedULL;
};

/// Returns `clusters` centroids sorted ascending (0.0 included when pin_zero).
inline std::vector<float> kmeans_1d(std::span<const float> values, std::span<const float> weights,
                                    const KMeans1dOptions& opt) {
    struct Point {
        float x;
        float w;
    };
    std::vector<Point> pts;
    pts.reserve(std::min(values.size(), opt.max_points));
    const bool subsample = values.size() > opt.max_points;
    std::mt19937_64 rng(opt.seed);
    const double keep = subsample ? static_cast<double>(opt.max_points) / static_cast<double>(values.size()) : 1.0;
    std::uniform_real_distribution<double> coin(0.0, 1.0);
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (subsample && coin(rng) >= keep) continue;
        const float w = weights.empty() ? 1.0f : weights[i];
        if (w > 0.0f) pts.push_back({values[i], w});
    }
    const std::size_t k = opt.clusters;
    std::vector<float> c(k, 0.0f);
    if (pts.empty()) {
        for (std::size_t i = 0; i < k; ++i) c[i] = static_cast<float>(i) / static_cast<float>(k);  // distinct, 0 first
        return c;
    }
    std::sort(pts.begin(), pts.end(), [](const Point& a, const Point& b) { return a.x < b.x; });
    // Weighted-quantile initialisation.
    double total = 0.0;
    for (const auto& p : pts) total += p.w;
    {
        double acc = 0.0;
        std::size_t j = 0;
        for (std::size_t i = 0; i < k; ++i) {
            const double target = total * (static_cast<double>(i) + 0.5) / static_cast<double>(k);
            while (j + 1 < pts.size() && acc + pts[j].w < target) acc += pts[j++].w;
            c[i] = pts[j].x;
        }
    }
    auto finish = [&](std::vector<float>& cc) {
        if (opt.pin_zero) {
            // Replace the centroid nearest to zero by an exact zero.
            std::size_t nearest = 0;
            for (std::size_t i = 1; i < k; ++i)
                if (std::abs(cc[i]) < std::abs(cc[nearest])) nearest = i;
            cc[nearest] = 0.0f;
        }
        if (opt.round_to_fp16)
            for (auto& v : cc) v = round_to_fp16(v);
        std::sort(cc.begin(), cc.end());
        // Keep entries distinct so every code has its own value.
        for (std::size_t i = 1; i < k; ++i)
            if (cc[i] <= cc[i - 1]) cc[i] = std::nextafter(cc[i - 1], 1e30f);
        if (opt.round_to_fp16)
            for (std::size_t i = 1; i < k; ++i)
                while (round_to_fp16(cc[i]) <= cc[i - 1]) cc[i] = std::nextafter(cc[i], 1e30f);
        if (opt.round_to_fp16)
            for (auto& v : cc) v = round_to_fp16(v);
    };
    finish(c);
    std::vector<double> sum(k), wsum(k);
    for (int it = 0; it < opt.iterations; ++it) {
        std::fill(sum.begin(), sum.end(), 0.0);
        std::fill(wsum.begin(), wsum.end(), 0.0);
        std::size_t ci = 0;  // points are sorted: the nearest centroid index is non-decreasing
        for (const auto& p : pts) {
            while (ci + 1 < k && std::abs(c[ci + 1] - p.x) <= std::abs(c[ci] - p.x)) ++ci;
            sum[ci] += static_cast<double>(p.w) * p.x;
            wsum[ci] += p.w;
        }
        bool moved = false;
        for (std::size_t i = 0; i < k; ++i) {
            if (opt.pin_zero && c[i] == 0.0f) continue;
            if (wsum[i] > 0.0) {
                const auto nc = static_cast<float>(sum[i] / wsum[i]);
                moved = moved || nc != c[i];
                c[i] = nc;
            }
        }
        finish(c);
        if (!moved) break;
    }
    return c;
}

}  // namespace qsafe
