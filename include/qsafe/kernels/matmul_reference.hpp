#pragma once
// Scalar references of the quantized products, written for clarity: every weight is decoded on the fly from
// the packed codes (no whole-matrix dequantization), multiplied in double precision, and outliers are added
// exactly. The SIMD kernels in kernels/matmul.hpp are tested against these.
#include <cstddef>
#include <cstdint>
#include <span>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/policy/scheme.hpp"

namespace qsafe {

namespace detail {

/// y_r = sum_c w(r, c) * x[c] for one row r, in double.
template <QuantScheme S>
double reference_row_dot(const QuantizedMatrix<S>& w, std::size_t r, const float* x) {
    double acc = 0.0;
    std::uint8_t codes[codes_per_unit];
    for (std::size_t unit = 0; unit * codes_per_unit < w.cols; ++unit) {
        unpack_unit(w.row_codes(r), w.padded_cols, S::bits, unit, codes);
        for (std::size_t j = 0; j < codes_per_unit; ++j) {
            const std::size_t c = unit * codes_per_unit + j;
            if (c >= w.cols) break;
            const std::size_t g = c / w.group_size;
            const double weight = static_cast<double>(w.scale(r, g)) * static_cast<double>(w.level(r, g, codes[j]));
            acc += weight * static_cast<double>(x[c]);
        }
    }
    if constexpr (S::outlier_kind == OutlierKind::columns) {
        const std::size_t k = w.outlier_columns.count();
        for (std::size_t i = 0; i < k; ++i)
            acc += static_cast<double>(to_float(w.outlier_columns.values[r * k + i])) *
                   static_cast<double>(x[w.outlier_columns.columns[i]]);
    }
    if constexpr (S::outlier_kind == OutlierKind::sparse) {
        const auto& sp = w.sparse_outliers;
        for (std::uint32_t e = sp.row_ptr[r]; e < sp.row_ptr[r + 1]; ++e)
            acc += static_cast<double>(to_float(sp.value[e])) * static_cast<double>(x[sp.col[e]]);
    }
    return acc;
}

}  // namespace detail

/// y = W x: x has w.cols entries, y has w.rows entries. Sizes are the caller's responsibility.
template <QuantScheme S>
void gemv_reference(const QuantizedMatrix<S>& w, std::span<const float> x, std::span<float> y) {
    for (std::size_t r = 0; r < w.rows; ++r) y[r] = static_cast<float>(detail::reference_row_dot(w, r, x.data()));
}

/// Y = X W^T: X is batch x cols (one activation vector per row), Y is batch x rows.
template <QuantScheme S>
void gemm_reference(const QuantizedMatrix<S>& w, ConstMatrixView x, MatrixView y) {
    for (std::size_t b = 0; b < x.rows; ++b)
        for (std::size_t r = 0; r < w.rows; ++r) y(b, r) = static_cast<float>(detail::reference_row_dot(w, r, x.row(b)));
}

}  // namespace qsafe
