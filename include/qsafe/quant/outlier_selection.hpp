#pragma once
// Choosing which weights bypass the grid: whole input columns (QUIK / LLM.int8 style) or individual weights
// (SpQR style, or a caller's importance score such as a safety-criticality score). Ties break by index so
// the choice is deterministic.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/core/matrix_view.hpp"

namespace qsafe {

/// The k columns with the largest score (column_scores, or the weight column L2 norm), sorted ascending.
inline std::vector<std::uint32_t> select_outlier_columns(ConstMatrixView w, std::size_t k,
                                                         std::span<const float> column_scores) {
    k = std::min(k, w.cols);
    std::vector<double> score(w.cols, 0.0);
    if (!column_scores.empty()) {
        if (column_scores.size() != w.cols)
            throw shape_error("outlier columns: " + std::to_string(column_scores.size()) + " column scores for " +
                              std::to_string(w.cols) + " columns");
        for (std::size_t c = 0; c < w.cols; ++c) score[c] = column_scores[c];
    } else {
        for (std::size_t r = 0; r < w.rows; ++r)
            for (std::size_t c = 0; c < w.cols; ++c) score[c] += static_cast<double>(w(r, c)) * w(r, c);
    }
    std::vector<std::uint32_t> order(w.cols);
    std::iota(order.begin(), order.end(), 0u);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                      [&](std::uint32_t a, std::uint32_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); });
    order.resize(k);
    std::sort(order.begin(), order.end());
    return order;
}

/// Row-major flat indices (r * cols + c) of the round(fraction * rows * cols) weights with the largest score
/// (weight_scores, or |w|), sorted ascending.
inline std::vector<std::size_t> select_sparse_outliers(ConstMatrixView w, double fraction,
                                                       std::span<const float> weight_scores) {
    if (!(fraction >= 0.0 && fraction <= 1.0))
        throw config_error("sparse outliers: fraction " + std::to_string(fraction) + " is not in [0, 1]");
    const std::size_t n = w.rows * w.cols;
    if (!weight_scores.empty() && weight_scores.size() != n)
        throw shape_error("sparse outliers: " + std::to_string(weight_scores.size()) + " weight scores for " +
                          std::to_string(n) + " weights");
    const auto k = static_cast<std::size_t>(std::llround(fraction * static_cast<double>(n)));
    if (k == 0) return {};
    auto score = [&](std::size_t i) -> float {
        return weight_scores.empty() ? std::abs(w(i / w.cols, i % w.cols)) : weight_scores[i];
    };
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k - 1), order.end(),
                     [&](std::size_t a, std::size_t b) {
                         const float sa = score(a), sb = score(b);
                         return sa > sb || (sa == sb && a < b);
                     });
    order.resize(k);
    std::sort(order.begin(), order.end());
    return order;
}

}  // namespace qsafe
