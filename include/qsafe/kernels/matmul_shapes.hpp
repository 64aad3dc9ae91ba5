#pragma once
// Validation done before any kernel runs (kernels are noexcept): operand shapes, and that the matrix's
// buffers have the sizes its dimensions promise, so a corrupt or hand-built matrix fails with a message
// instead of reading out of bounds.
#include <cstddef>
#include <string>

#include "qsafe/core/error.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"

namespace qsafe::detail {

inline std::string dims(std::size_t rows, std::size_t cols) { return std::to_string(rows) + "x" + std::to_string(cols); }

template <QuantScheme S>
void check_quantized_matrix(const QuantizedMatrix<S>& w, const char* op) {
    const std::string where = std::string(op) + ": weight matrix " + dims(w.rows, w.cols) + " ";
    const std::size_t padded = round_up(w.cols, codes_per_unit);
    const std::size_t group = S::per_channel ? padded : S::group_size;
    if (w.rows == 0 || w.cols == 0) throw shape_error(where + "is empty");
    if (w.padded_cols != padded || w.group_size != group || w.groups_per_row != (w.cols + group - 1) / group ||
        w.row_bytes != packed_row_bytes(padded, S::bits))
        throw shape_error(where + "has inconsistent padding/group fields (padded_cols " + std::to_string(w.padded_cols) +
                          ", group_size " + std::to_string(w.group_size) + ", groups_per_row " +
                          std::to_string(w.groups_per_row) + ", row_bytes " + std::to_string(w.row_bytes) + ")");
    const std::size_t n_groups = w.rows * w.groups_per_row;
    if (w.codes.size() != w.rows * w.row_bytes)
        throw shape_error(where + "has " + std::to_string(w.codes.size()) + " code bytes, expected " +
                          std::to_string(w.rows * w.row_bytes));
    if (w.scales.size() != n_groups)
        throw shape_error(where + "has " + std::to_string(w.scales.size()) + " scales, expected " + std::to_string(n_groups));
    if (S::asymmetric && w.zeros.size() != n_groups)
        throw shape_error(where + "has " + std::to_string(w.zeros.size()) + " zero points, expected " +
                          std::to_string(n_groups));
    if constexpr (S::learned) {
        const std::size_t expected =
            QuantizedMatrix<S>::codebook_sets(w.rows, w.groups_per_row) * static_cast<std::size_t>(S::levels);
        if (w.codebook.size() != expected)
            throw shape_error(where + "has " + std::to_string(w.codebook.size()) + " codebook entries, expected " +
                              std::to_string(expected));
    }
    if constexpr (S::outlier_kind == OutlierKind::columns) {
        const auto& oc = w.outlier_columns;
        if (oc.values.size() != w.rows * oc.columns.size())
            throw shape_error(where + "has " + std::to_string(oc.values.size()) + " outlier column values, expected " +
                              dims(w.rows, oc.columns.size()));
        for (std::uint32_t c : oc.columns)
            if (c >= w.cols) throw shape_error(where + "has outlier column " + std::to_string(c) + " out of range");
    }
    if constexpr (S::outlier_kind == OutlierKind::sparse) {
        const auto& sp = w.sparse_outliers;
        if (sp.row_ptr.size() != w.rows + 1 || sp.row_ptr.front() != 0 || sp.row_ptr.back() != sp.col.size() ||
            sp.value.size() != sp.col.size())
            throw shape_error(where + "has an inconsistent sparse outlier CSR (" + std::to_string(sp.row_ptr.size()) +
                              " row pointers, " + std::to_string(sp.col.size()) + " columns, " +
                              std::to_string(sp.value.size()) + " values)");
        for (std::size_t r = 0; r < w.rows; ++r)
            if (sp.row_ptr[r] > sp.row_ptr[r + 1])
                throw shape_error(where + "has decreasing sparse outlier row pointers at row " + std::to_string(r));
        for (std::uint16_t c : sp.col)
            if (c >= w.cols) throw shape_error(where + "has sparse outlier column " + std::to_string(c) + " out of range");
    }
}

template <QuantScheme S>
void check_gemm_shapes(const QuantizedMatrix<S>& w, ConstMatrixView x, MatrixView y, const char* op) {
    check_quantized_matrix(w, op);
    if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows || x.stride < x.cols || y.stride < y.cols ||
        (x.rows > 0 && x.data == nullptr) || (y.rows > 0 && y.data == nullptr))
        throw shape_error(std::string(op) + ": W is " + dims(w.rows, w.cols) + ", X is " + dims(x.rows, x.cols) +
                          " (stride " + std::to_string(x.stride) + "), Y is " + dims(y.rows, y.cols) + " (stride " +
                          std::to_string(y.stride) + "); need X batch x " + std::to_string(w.cols) + " and Y batch x " +
                          std::to_string(w.rows));
}

}  // namespace qsafe::detail
