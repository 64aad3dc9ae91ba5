#pragma once
// Adds the fp16 outlier weights' contribution to a block of outputs, exactly, with the fp32 activations
// (their positions in the packed codes decode to 0.0, so the quantized product did not count them).
#include <cstddef>
#include <cstdint>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"

namespace qsafe::kernels {

/// y(n, r) += sum over row r's outliers of value * x(n, column), for r in [r_begin, r_end) and every n.
template <class Arch, QuantScheme S>
void add_outlier_products(const QuantizedMatrix<S>& w, std::size_t r_begin, std::size_t r_end, ConstMatrixView x,
                          MatrixView y) noexcept {
    if constexpr (S::outlier_kind == OutlierKind::columns) {
        const auto& oc = w.outlier_columns;
        const std::size_t k = oc.count();
        if (k == 0) return;
        constexpr std::size_t block = 64;
        float values[block];
        for (std::size_t r = r_begin; r < r_end; ++r) {
            for (std::size_t i0 = 0; i0 < k; i0 += block) {
                const std::size_t m = k - i0 < block ? k - i0 : block;
                for (std::size_t i = 0; i < m; ++i) values[i] = to_float(oc.values[r * k + i0 + i]);
                for (std::size_t n = 0; n < x.rows; ++n) {
                    const float* xn = x.row(n);
                    float sum = 0.0f;
                    for (std::size_t i = 0; i < m; ++i) sum += values[i] * xn[oc.columns[i0 + i]];
                    y(n, r) += sum;
                }
            }
        }
    } else if constexpr (S::outlier_kind == OutlierKind::sparse) {
        const auto& sp = w.sparse_outliers;
        for (std::size_t r = r_begin; r < r_end; ++r) {
            for (std::size_t n = 0; n < x.rows; ++n) {
                const float* xn = x.row(n);
                float sum = 0.0f;
                for (std::uint32_t e = sp.row_ptr[r]; e < sp.row_ptr[r + 1]; ++e) sum += to_float(sp.value[e]) * xn[sp.col[e]];
                y(n, r) += sum;
            }
        }
    } else {
        (void)w, (void)r_begin, (void)r_end, (void)x, (void)y;
    }
}

}  // namespace qsafe::kernels
