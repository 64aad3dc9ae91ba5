#pragma once
// GPTQ (Frantar et al., 2022): quantize a weight matrix column by column and, after each column, spread its
// rounding error over the columns not yet quantized so that the layer's output error on the calibration
// inputs, tr(dW H dW^T) with H = X^T X, stays small. As in the reference implementation:
//   - H is dampened by damp_fraction * mean(diag H) on its diagonal (1 % by default); channels that were
//     never active (H_jj = 0) get H_jj = 1 so the matrix stays invertible;
//   - the upper Cholesky factor U of H^-1 gives the update: err_j = (w_j - q_j) / U_jj, and
//     w_k -= err_j * U_jk for the later columns k;
//   - "lazy batch" updates: inside a block of block_size columns the update is applied column by column,
//     to the rest of the matrix once per block (one matrix product);
//   - act-order (optional) processes columns by decreasing H_jj;
//   - a group's scale and zero point are fitted (per row, with the scheme's GroupCodec) when the group's
//     first column is reached, on the weights as updated so far. Groups stay contiguous in the original
//     column order, so the result is an ordinary QuantizedMatrix<S> that every kernel runs unchanged.
// Outliers (QUIK / SpQR style): fp16 outlier columns are processed last, so they absorb the error of every
// quantized column before they are rounded to fp16; sparse fp16 outliers are rounded to fp16 in place and
// pass their (tiny) error on like any other weight. Learned codebooks are fitted once on the original weights.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "qsafe/core/error.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/quant/group_codec.hpp"
#include "qsafe/quant/quantize_options.hpp"
#include "qsafe/quant/rtn.hpp"

namespace qsafe {

struct GptqOptions {
    double damp_fraction = 0.01;
    std::size_t block_size = 128;
    bool act_order = false;
};

namespace detail {

/// Upper Cholesky factor U of the inverse of the dampened Hessian (U^T U = H^-1). Retries with 10x the
/// damping when H is not positive definite (e.g. too few calibration tokens for the layer's width).
/// Computed without forming H^-1: with J the reversal permutation and J H J = L L^T (lower Cholesky),
/// H^-1 = J L^-T L^-1 J = U^T U for U = J L^-1 J, which is upper triangular with a positive diagonal, so
/// it is the factor. One Cholesky and one triangular inverse instead of an inverse and a second Cholesky.
inline Eigen::MatrixXf gptq_inverse_factor(Eigen::MatrixXd h, double damp_fraction, const std::string& label) {
    const auto n = h.rows();
    for (Eigen::Index j = 0; j < n; ++j)
        if (h(j, j) <= 0.0) h(j, j) = 1.0;
    const double mean_diag = h.diagonal().mean();
    double damp = damp_fraction * mean_diag;
    const Eigen::MatrixXd reversed = h.reverse();
    for (int attempt = 0; attempt < 4; ++attempt, damp *= 10.0) {
        Eigen::MatrixXd hd = reversed;
        hd.diagonal().array() += damp;
        Eigen::LLT<Eigen::MatrixXd> llt(hd);
        if (llt.info() != Eigen::Success) continue;
        // L^-1 in blocks of 64 columns: columns c0.. of L^-1 are zero above row c0, so each block solves
        // only the trailing triangle (a third of the work of a full solve), blocks in parallel.
        const Eigen::MatrixXd l = llt.matrixL();
        Eigen::MatrixXd l_inverse = Eigen::MatrixXd::Zero(n, n);
        constexpr Eigen::Index block = 64;
        parallel_for_dynamic(static_cast<std::size_t>((n + block - 1) / block), [&](std::size_t b) {
            const Eigen::Index c0 = static_cast<Eigen::Index>(b) * block, width = std::min(block, n - c0);
            auto columns = l_inverse.block(c0, c0, n - c0, width);
            columns.topRows(width).setIdentity();
            l.bottomRightCorner(n - c0, n - c0).triangularView<Eigen::Lower>().solveInPlace(columns);
        });
        if (!l_inverse.allFinite()) continue;
        return l_inverse.reverse().triangularView<Eigen::Upper>().toDenseMatrix().cast<float>();
    }
    throw numeric_error(label + ": GPTQ: the calibration Hessian is not positive definite even with damping " + std::to_string(damp));
}

}  // namespace detail

/// Quantizes w (rows = outputs, cols = inputs) under scheme S with GPTQ; `hessian` is X^T X (cols x cols)
/// of the layer's calibration inputs (any positive multiple of it gives the same result).
template <QuantScheme S>
QuantizedMatrix<S> quantize_gptq(ConstMatrixView w, const Eigen::MatrixXf& hessian, const GptqOptions& gopt,
                                 const QuantizeOptions& opt = {}) {
    detail::check_quantizable(w, opt);
    const std::string label = detail::tensor_label(opt);
    const std::size_t rows = w.rows, cols = w.cols;
    if (static_cast<std::size_t>(hessian.rows()) != cols || static_cast<std::size_t>(hessian.cols()) != cols)
        throw shape_error(label + ": GPTQ: Hessian is " + std::to_string(hessian.rows()) + "x" + std::to_string(hessian.cols()) +
                          ", the matrix has " + std::to_string(cols) + " columns");
    if (!hessian.allFinite()) throw numeric_error(label + ": GPTQ: the Hessian has non-finite entries");
    if (gopt.block_size == 0) throw config_error(label + ": GPTQ: block size must be positive");

    auto m = QuantizedMatrix<S>::allocate(rows, cols);
    const std::vector<std::uint8_t> excluded_mask = detail::extract_outliers<S>(w, opt, m);
    const std::uint8_t* excluded = excluded_mask.empty() ? nullptr : excluded_mask.data();
    std::vector<std::uint8_t> outlier_column(cols, 0);
    if constexpr (S::outlier_kind == OutlierKind::columns)
        for (auto c : m.outlier_columns.columns) outlier_column[c] = 1;

    // Codecs: one for the tensor, or (per-group learned codebooks) one per (row, group), fitted up front.
    std::vector<GroupCodec<S>> codecs;
    constexpr bool per_group_tables = S::learned && detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group;
    if constexpr (per_group_tables) {
        codecs.reserve(rows * m.groups_per_row);
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t g = 0; g < m.groups_per_row; ++g) {
                const std::size_t b = g * m.group_size, e = std::min(b + m.group_size, cols);
                const auto table = detail::fit_learned_table<S>(w, excluded, r, r + 1, b, e, m.group_size, opt);
                for (std::size_t i = 0; i < table.size(); ++i)
                    m.codebook[(r * m.groups_per_row + g) * S::levels + i] = to_fp16(table[i]);
                codecs.emplace_back(table);
            }
    } else {
        std::vector<float> table;
        if constexpr (S::learned) {
            table = detail::fit_learned_table<S>(w, excluded, 0, rows, 0, cols, m.group_size, opt);
            for (std::size_t i = 0; i < table.size(); ++i) m.codebook[i] = to_fp16(table[i]);
        }
        codecs.emplace_back(table);
    }
    auto codec_for = [&](std::size_t r, std::size_t g) -> const GroupCodec<S>& {
        if constexpr (per_group_tables) return codecs[r * m.groups_per_row + g];
        else return codecs[0];
    };

    // Processing order: by decreasing H_jj with act-order, outlier columns last.
    std::vector<std::size_t> order(cols);
    std::iota(order.begin(), order.end(), std::size_t{0});
    if (gopt.act_order)
        std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
            return hessian(static_cast<Eigen::Index>(a), static_cast<Eigen::Index>(a)) >
                   hessian(static_cast<Eigen::Index>(b), static_cast<Eigen::Index>(b));
        });
    std::stable_partition(order.begin(), order.end(), [&](std::size_t c) { return !outlier_column[c]; });
    std::vector<std::size_t> position(cols);
    for (std::size_t j = 0; j < cols; ++j) position[order[j]] = j;

    const auto n = static_cast<Eigen::Index>(cols);
    Eigen::MatrixXd hp(n, n);
    for (Eigen::Index a = 0; a < n; ++a)
        for (Eigen::Index b = 0; b < n; ++b)
            hp(a, b) = hessian(static_cast<Eigen::Index>(order[static_cast<std::size_t>(a)]),
                               static_cast<Eigen::Index>(order[static_cast<std::size_t>(b)]));
    const Eigen::MatrixXf u = detail::gptq_inverse_factor(std::move(hp), gopt.damp_fraction, label);

    std::vector<std::uint8_t> codes(rows * m.padded_cols, 0);
    std::vector<float> chosen(rows * cols, 0.0f);  // the value each weight ends up as (row-major, original order)
    std::vector<GroupParams<S>> params(rows * m.groups_per_row);

    // Rows never exchange errors, so fixed chunks of rows run the whole algorithm independently (in
    // parallel; each chunk's products are the same whatever the thread count, so the result is too).
    constexpr std::size_t rows_per_chunk = 64;
    const auto block = static_cast<Eigen::Index>(gopt.block_size);
    auto quantize_rows = [&](std::size_t row0, std::size_t row1) {
        const auto nr = static_cast<Eigen::Index>(row1 - row0);
        Eigen::MatrixXf wp(nr, n);  // column-major: column j = original column order[j], updated as we go
        for (Eigen::Index j = 0; j < n; ++j)
            for (Eigen::Index r = 0; r < nr; ++r)
                wp(r, j) = w(row0 + static_cast<std::size_t>(r), order[static_cast<std::size_t>(j)]);
        std::vector<std::uint8_t> group_fitted(m.groups_per_row, 0);
        std::vector<float> group_values(m.group_size);
        Eigen::MatrixXf w1, err1;
        for (Eigen::Index i1 = 0; i1 < n; i1 += block) {
            const Eigen::Index count = std::min(block, n - i1);
            w1 = wp.middleCols(i1, count);
            err1.resize(nr, count);
            auto current = [&](Eigen::Index r, std::size_t c) {
                const auto j = static_cast<Eigen::Index>(position[c]);
                return (j >= i1 && j < i1 + count) ? w1(r, j - i1) : wp(r, j);
            };
            for (Eigen::Index i = 0; i < count; ++i) {
                const std::size_t c = order[static_cast<std::size_t>(i1 + i)];
                const std::size_t g = c / m.group_size;
                const std::size_t g0 = g * m.group_size, g1 = std::min(g0 + m.group_size, cols);
                if (!outlier_column[c] && !group_fitted[g]) {
                    for (Eigen::Index r = 0; r < nr; ++r) {
                        const std::size_t row = row0 + static_cast<std::size_t>(r);
                        for (std::size_t cc = g0; cc < g1; ++cc) group_values[cc - g0] = current(r, cc);
                        params[row * m.groups_per_row + g] = codec_for(row, g).fit(
                            group_values.data(), opt.importance.empty() ? nullptr : opt.importance.data() + g0,
                            excluded ? excluded + row * cols + g0 : nullptr, g1 - g0, opt);
                    }
                    group_fitted[g] = 1;
                }
                const float d = u(i1 + i, i1 + i);
                for (Eigen::Index r = 0; r < nr; ++r) {
                    const std::size_t row = row0 + static_cast<std::size_t>(r);
                    const float value = w1(r, i);
                    float q;
                    if (excluded && excluded[row * cols + c]) {
                        q = to_float(to_fp16(value));
                    } else {
                        const auto& p = params[row * m.groups_per_row + g];
                        const unsigned code = codec_for(row, g).encode(value, p);
                        codes[row * m.padded_cols + c] = static_cast<std::uint8_t>(code);
                        q = codec_for(row, g).decode(code, p);
                    }
                    chosen[row * cols + c] = q;
                    err1(r, i) = (value - q) / d;
                }
                if (i + 1 < count)
                    w1.rightCols(count - i - 1).noalias() -= err1.col(i) * u.row(i1 + i).segment(i1 + i + 1, count - i - 1);
            }
            if (i1 + count < n) wp.rightCols(n - i1 - count).noalias() -= err1 * u.block(i1, i1 + count, count, n - i1 - count);
        }
    };
    const std::size_t chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    parallel_for(chunks, [&](std::size_t k) {
        quantize_rows(k * rows_per_chunk, std::min(rows, (k + 1) * rows_per_chunk));
    });

    // Store: scales / zeros, codes (excluded positions and padding get the group's zero code), outliers.
    for (std::size_t r = 0; r < rows; ++r) {
        unsigned last_zero = 0;
        for (std::size_t g = 0; g < m.groups_per_row; ++g) {
            const auto& p = params[r * m.groups_per_row + g];
            m.scales[r * m.groups_per_row + g] = p.stored_scale;
            if constexpr (S::asymmetric) m.zeros[r * m.groups_per_row + g] = static_cast<std::uint8_t>(p.zero);
            last_zero = codec_for(r, g).zero_code(p);
            const std::size_t g0 = g * m.group_size, g1 = std::min(g0 + m.group_size, cols);
            if (excluded)
                for (std::size_t c = g0; c < g1; ++c)
                    if (excluded[r * cols + c]) codes[r * m.padded_cols + c] = static_cast<std::uint8_t>(last_zero);
        }
        for (std::size_t c = cols; c < m.padded_cols; ++c) codes[r * m.padded_cols + c] = static_cast<std::uint8_t>(last_zero);
        pack_row({codes.data() + r * m.padded_cols, m.padded_cols}, S::bits, {m.row_codes(r), m.row_bytes});
    }
    if constexpr (S::outlier_kind == OutlierKind::columns) {
        const std::size_t k = m.outlier_columns.count();
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t i = 0; i < k; ++i) m.outlier_columns.values[r * k + i] = to_fp16(chosen[r * cols + m.outlier_columns.columns[i]]);
    }
    if constexpr (S::outlier_kind == OutlierKind::sparse) {
        auto& csr = m.sparse_outliers;
        for (std::size_t r = 0; r < rows; ++r)
            for (std::uint32_t e = csr.row_ptr[r]; e < csr.row_ptr[r + 1]; ++e) csr.value[e] = to_fp16(chosen[r * cols + csr.col[e]]);
    }
    return m;
}

}  // namespace qsafe
