#pragma once
// Shared pieces of the kernel tests: random QuantizedMatrix construction (random codes, scales, zero points,
// codebooks and outliers, no quantizer needed), the relative error metric, and the scheme typelists.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/policy/scheme.hpp"

namespace qsafe::test {

/// ||y - ref||_2 / ||ref||_2 (or ||y||_2 when ref is zero), accumulated in double.
inline double relative_error(const float* y, const float* ref, std::size_t n) {
    double diff = 0.0, norm = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(y[i]) - static_cast<double>(ref[i]);
        diff += d * d;
        norm += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
    }
    return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}
inline double relative_error(const RowMatrixF& y, const RowMatrixF& ref) {
    if (y.size() != ref.size()) return std::numeric_limits<double>::infinity();
    return relative_error(y.data(), ref.data(), static_cast<std::size_t>(y.size()));
}

struct TestShape {
    std::size_t rows, cols;
};

struct RandomMatrixOptions {
    float scale_magnitude = 0.05f;  // group scales drawn from [0.25, 1] * this
    bool zero = false;              // every weight decodes to 0 (codes = zero code) and no outliers
    std::size_t outlier_columns = 5;
    double sparse_fraction = 0.02;
    float outlier_magnitude = 1.0f;
};

/// A rows x cols matrix of scheme S with random contents; outlier positions hold the zero code.
template <QuantScheme S>
QuantizedMatrix<S> random_matrix(std::size_t rows, std::size_t cols, std::mt19937& rng,
                                 const RandomMatrixOptions& opt = {}) {
    auto m = QuantizedMatrix<S>::allocate(rows, cols);
    std::uniform_int_distribution<int> code_dist(0, S::levels - 1);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    std::uniform_real_distribution<float> scale_dist(0.25f, 1.0f);
    using F = typename S::scale_format;
    for (auto& s : m.scales) s = F::store(scale_dist(rng) * opt.scale_magnitude);
    if constexpr (S::asymmetric)
        for (auto& z : m.zeros) z = static_cast<std::uint8_t>(code_dist(rng));
    if constexpr (S::learned) {
        // Random sorted-ish entries in [-1, 1] with one entry pinned to 0.0 (outliers need an exact zero).
        for (std::size_t set = 0; set * S::levels < m.codebook.size(); ++set) {
            for (int i = 0; i < S::levels; ++i) m.codebook[set * S::levels + i] = to_fp16(unit(rng));
            m.codebook[set * S::levels + static_cast<std::size_t>(code_dist(rng))] = to_fp16(0.0f);
        }
    }
    // Outlier positions: a column set and a CSR pattern.
    std::vector<std::vector<std::uint16_t>> sparse_cols(rows);
    if constexpr (S::outlier_kind == OutlierKind::columns) {
        if (!opt.zero) {
            std::vector<std::uint32_t> all(cols);
            for (std::size_t c = 0; c < cols; ++c) all[c] = static_cast<std::uint32_t>(c);
            std::shuffle(all.begin(), all.end(), rng);
            const std::size_t k = std::min(opt.outlier_columns, cols);
            m.outlier_columns.columns.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k));
            std::sort(m.outlier_columns.columns.begin(), m.outlier_columns.columns.end());
            m.outlier_columns.values.resize(rows * k);
            for (auto& v : m.outlier_columns.values) v = to_fp16(unit(rng) * opt.outlier_magnitude);
        }
    }
    if constexpr (S::outlier_kind == OutlierKind::sparse) {
        std::bernoulli_distribution pick(opt.zero ? 0.0 : opt.sparse_fraction);
        auto& sp = m.sparse_outliers;
        sp.row_ptr.assign(rows + 1, 0);
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t c = 0; c < cols; ++c)
                if (pick(rng)) {
                    sp.col.push_back(static_cast<std::uint16_t>(c));
                    sp.value.push_back(to_fp16(unit(rng) * opt.outlier_magnitude));
                    sparse_cols[r].push_back(static_cast<std::uint16_t>(c));
                }
            sp.row_ptr[r + 1] = static_cast<std::uint32_t>(sp.col.size());
        }
    }
    std::vector<std::uint8_t> codes(m.padded_cols);
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < m.padded_cols; ++c) {
            const std::size_t g = std::min(c / m.group_size, m.groups_per_row - 1);
            codes[c] = opt.zero ? static_cast<std::uint8_t>(m.zero_code(r, g)) : static_cast<std::uint8_t>(code_dist(rng));
        }
        if constexpr (S::outlier_kind == OutlierKind::columns)
            for (std::uint32_t c : m.outlier_columns.columns)
                codes[c] = static_cast<std::uint8_t>(m.zero_code(r, c / m.group_size));
        for (std::uint16_t c : sparse_cols[r]) codes[c] = static_cast<std::uint8_t>(m.zero_code(r, c / m.group_size));
        pack_row(codes, S::bits, {m.row_codes(r), m.row_bytes});
    }
    return m;
}

inline RowMatrixF random_activations(std::size_t batch, std::size_t cols, std::mt19937& rng, float magnitude = 1.0f) {
    std::normal_distribution<float> dist(0.0f, magnitude);
    RowMatrixF x(static_cast<Eigen::Index>(batch), static_cast<Eigen::Index>(cols));
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = dist(rng);
    return x;
}

}  // namespace qsafe::test
