#pragma once
// Per-weight importance scores and the choice of safety-critical weights.
//
// Wanda score (Sun et al., "A Simple and Effective Pruning Approach for LLMs"): s_ij = |w_ij| * ||X_j||_2,
// the weight's magnitude times the L2 norm of its input channel over the calibration tokens — how much the
// layer's output moves if the weight is perturbed, to first order, on that data. Computed on safety data
// (harmful prompts with the fp model's refusals) it finds weights the refusals depend on; computed on
// ordinary text it finds weights everything depends on. Following Wei et al. ("Assessing the Brittleness
// of Safety Alignment via Pruning and Low-Rank Modifications"), the safety-critical weights are those
// ranked high by the safety score that are *not* among the top-p % by the utility score: that isolates
// what matters for refusing rather than for language modelling in general.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "qsafe/calib/calibration_stats.hpp"
#include "qsafe/core/error.hpp"
#include "qsafe/core/matrix_view.hpp"

namespace qsafe {

/// Wanda scores of a rows x cols weight matrix (row-major, like the matrix) from its input statistics.
inline std::vector<float> wanda_scores(ConstMatrixView w, const LinearInputStats& inputs, const std::string& tensor = {}) {
    if (static_cast<std::size_t>(inputs.sum_sq.size()) != w.cols)
        throw shape_error("wanda scores of '" + tensor + "': statistics for " + std::to_string(inputs.sum_sq.size()) + " input channels, the matrix has " +
                          std::to_string(w.cols) + " columns");
    std::vector<float> norm(w.cols);
    for (std::size_t c = 0; c < w.cols; ++c) norm[c] = std::sqrt(std::max(inputs.sum_sq[static_cast<Eigen::Index>(c)], 0.0f));
    std::vector<float> s(w.rows * w.cols);
    for (std::size_t r = 0; r < w.rows; ++r)
        for (std::size_t c = 0; c < w.cols; ++c) s[r * w.cols + c] = std::abs(w(r, c)) * norm[c];
    return s;
}

/// Indices of the `count` largest scores (ties: lower index first), sorted ascending. Entries with
/// `allowed[i] == 0` are never chosen; an empty `allowed` allows all.
inline std::vector<std::size_t> top_scored(std::span<const float> scores, std::size_t count, std::span<const std::uint8_t> allowed = {}) {
    std::vector<std::size_t> order;
    order.reserve(scores.size());
    for (std::size_t i = 0; i < scores.size(); ++i)
        if (allowed.empty() || allowed[i]) order.push_back(i);
    count = std::min(count, order.size());
    if (count == 0) return {};
    std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count - 1), order.end(), [&](std::size_t a, std::size_t b) {
        return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    });
    order.resize(count);
    std::sort(order.begin(), order.end());
    return order;
}

inline std::size_t fraction_count(double fraction, std::size_t n) {
    if (!(fraction >= 0.0 && fraction <= 1.0)) throw config_error("fraction " + std::to_string(fraction) + " is not in [0, 1]");
    return static_cast<std::size_t>(std::llround(fraction * static_cast<double>(n)));
}

/// The round(fraction * n) weights with the highest safety score among those outside the top
/// `utility_exclusion` fraction by utility score (both score vectors over the same n weights).
inline std::vector<std::size_t> select_safety_critical(std::span<const float> safety, std::span<const float> utility, double fraction,
                                                       double utility_exclusion) {
    if (safety.size() != utility.size())
        throw shape_error("safety-critical weights: " + std::to_string(safety.size()) + " safety scores but " + std::to_string(utility.size()) +
                          " utility scores");
    const std::size_t n = safety.size();
    std::vector<std::uint8_t> allowed(n, 1);
    for (const std::size_t i : top_scored(utility, fraction_count(utility_exclusion, n))) allowed[i] = 0;
    return top_scored(safety, fraction_count(fraction, n), allowed);
}

/// The score at or above which the top `fraction` of all scores of `tensors` (taken together) lie: a global
/// threshold, as Q-resafe takes it, estimated from `sample_size` scores drawn uniformly at random (with
/// replacement, seeded) — exact when the tensors hold no more scores than that. +inf when fraction is 0
/// (nothing is chosen).
inline float sampled_top_threshold(std::span<const std::span<const float>> tensors, double fraction, std::size_t sample_size = 1'000'000,
                                   std::uint64_t seed = 0) {
    if (!(fraction >= 0.0 && fraction <= 1.0)) throw config_error("global fraction " + std::to_string(fraction) + " is not in [0, 1]");
    if (sample_size == 0) throw config_error("global threshold: the sample must hold at least one score");
    std::size_t total = 0;
    for (const auto& t : tensors) total += t.size();
    if (total == 0) throw config_error("global threshold: no scores");
    if (fraction == 0.0) return std::numeric_limits<float>::infinity();
    std::vector<float> sample;
    if (total <= sample_size) {
        sample.reserve(total);
        for (const auto& t : tensors) sample.insert(sample.end(), t.begin(), t.end());
    } else {
        // Cumulative sizes locate the tensor of each drawn position.
        std::vector<std::size_t> ends;
        for (const auto& t : tensors) ends.push_back((ends.empty() ? 0 : ends.back()) + t.size());
        std::mt19937_64 rng(seed);
        std::uniform_int_distribution<std::size_t> pick(0, total - 1);
        sample.reserve(sample_size);
        for (std::size_t k = 0; k < sample_size; ++k) {
            const std::size_t at = pick(rng);
            const auto t = static_cast<std::size_t>(std::upper_bound(ends.begin(), ends.end(), at) - ends.begin());
            sample.push_back(tensors[t][at - (t == 0 ? 0 : ends[t - 1])]);
        }
    }
    const std::size_t keep = std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(fraction * static_cast<double>(sample.size()))));
    std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(keep - 1), sample.end(), std::greater<float>());
    return sample[keep - 1];
}

/// Indices (ascending) of the scores at or above `threshold`.
inline std::vector<std::size_t> at_or_above(std::span<const float> scores, float threshold) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < scores.size(); ++i)
        if (scores[i] >= threshold) out.push_back(i);
    return out;
}

}  // namespace qsafe
