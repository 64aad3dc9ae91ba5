#pragma once
// Round-to-nearest quantization of an fp32 weight matrix under any scheme: the reference quantizer that
// every other method is compared with. Optional per-group clip search and per-column importance weighting
// (QuantizeOptions); outliers chosen first and kept in fp16; learned codebooks fitted by k-means.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/quant/group_codec.hpp"
#include "qsafe/quant/kmeans_1d.hpp"
#include "qsafe/quant/outlier_selection.hpp"
#include "qsafe/quant/quantize_options.hpp"

namespace qsafe {

namespace detail {

inline std::string tensor_label(const QuantizeOptions& opt) {
    return opt.tensor_name.empty() ? std::string("weight matrix") : "tensor '" + opt.tensor_name + "'";
}

inline void check_quantizable(ConstMatrixView w, const QuantizeOptions& opt) {
    if (w.rows == 0 || w.cols == 0) throw shape_error(tensor_label(opt) + ": empty matrix");
    for (std::size_t r = 0; r < w.rows; ++r)
        for (std::size_t c = 0; c < w.cols; ++c)
            if (!std::isfinite(w(r, c)))
                throw numeric_error(tensor_label(opt) + ": non-finite weight " + std::to_string(w(r, c)) + " at row " +
                                    std::to_string(r) + ", column " + std::to_string(c));
    if (!opt.importance.empty() && opt.importance.size() != w.cols)
        throw shape_error(tensor_label(opt) + ": importance has " + std::to_string(opt.importance.size()) +
                          " entries for " + std::to_string(w.cols) + " columns");
    for (float v : opt.importance)
        if (!(v >= 0.0f) || !std::isfinite(v)) throw numeric_error(tensor_label(opt) + ": importance must be finite and >= 0");
}

/// Chooses and stores the outliers of the scheme's policy; returns the per-weight "stored elsewhere" mask.
template <QuantScheme S>
std::vector<std::uint8_t> extract_outliers(ConstMatrixView w, const QuantizeOptions& opt, QuantizedMatrix<S>& m) {
    std::vector<std::uint8_t> excluded;
    if constexpr (S::outlier_kind == OutlierKind::columns) {
        excluded.assign(w.rows * w.cols, 0);
        const std::size_t k = opt.outlier_columns.value_or(S::outliers::default_columns);
        m.outlier_columns.columns = select_outlier_columns(w, k, opt.column_scores);
        const std::size_t kk = m.outlier_columns.columns.size();
        m.outlier_columns.values.assign(w.rows * kk, fp16_t{});
        for (std::size_t r = 0; r < w.rows; ++r)
            for (std::size_t i = 0; i < kk; ++i) {
                const std::size_t c = m.outlier_columns.columns[i];
                m.outlier_columns.values[r * kk + i] = to_fp16(w(r, c));
                excluded[r * w.cols + c] = 1;
            }
    } else if constexpr (S::outlier_kind == OutlierKind::sparse) {
        if (w.cols > 65536)
            throw config_error(tensor_label(opt) + ": sparse outliers need at most 65536 columns (16-bit indices), got " +
                               std::to_string(w.cols));
        excluded.assign(w.rows * w.cols, 0);
        const double fraction = opt.outlier_fraction.value_or(S::outliers::default_fraction);
        const auto chosen = select_sparse_outliers(w, fraction, opt.weight_scores);
        auto& csr = m.sparse_outliers;
        csr.row_ptr.assign(w.rows + 1, 0);
        csr.col.resize(chosen.size());
        csr.value.resize(chosen.size());
        for (std::size_t e = 0; e < chosen.size(); ++e) {
            const std::size_t r = chosen[e] / w.cols, c = chosen[e] % w.cols;
            ++csr.row_ptr[r + 1];
            csr.col[e] = static_cast<std::uint16_t>(c);
            csr.value[e] = to_fp16(w(r, c));
            excluded[chosen[e]] = 1;
        }
        for (std::size_t r = 0; r < w.rows; ++r) csr.row_ptr[r + 1] += csr.row_ptr[r];
    }
    return excluded;
}

/// Per-group absmax of the included weights (the normalisation a learned codebook is fitted in).
template <QuantScheme S>
float group_abs_max(ConstMatrixView w, const std::uint8_t* excluded, std::size_t r, std::size_t begin, std::size_t end) {
    float m = 0.0f;
    for (std::size_t c = begin; c < end; ++c)
        if (!excluded || !excluded[r * w.cols + c]) m = std::max(m, std::abs(w(r, c)));
    return m;
}

/// Fits a learned codebook to w / absmax of the given groups (all groups of the tensor, or one group).
template <QuantScheme S>
std::vector<float> fit_learned_table(ConstMatrixView w, const std::uint8_t* excluded, std::size_t row_begin,
                                     std::size_t row_end, std::size_t col_begin, std::size_t col_end,
                                     std::size_t group_size, const QuantizeOptions& opt) {
    std::vector<float> values, weights;
    values.reserve((row_end - row_begin) * (col_end - col_begin));
    for (std::size_t r = row_begin; r < row_end; ++r) {
        for (std::size_t g0 = col_begin; g0 < col_end; g0 += group_size) {
            const std::size_t g1 = std::min(g0 + group_size, col_end);
            const float amax = group_abs_max<S>(w, excluded, r, g0, g1);
            if (amax == 0.0f) continue;
            for (std::size_t c = g0; c < g1; ++c) {
                if (excluded && excluded[r * w.cols + c]) continue;
                values.push_back(w(r, c) / amax);
                weights.push_back(opt.importance.empty() ? 1.0f : opt.importance[c]);
            }
        }
    }
    KMeans1dOptions km;
    km.clusters = static_cast<std::size_t>(S::levels);
    km.iterations = opt.kmeans_iterations;
    km.seed = opt.seed;
    return kmeans_1d(values, weights, km);
}

/// Leaves a group's fitted parameters as they are (round-to-nearest).
struct KeepFittedParams {
    template <QuantScheme S>
    GroupParams<S> operator()(const GroupCodec<S>&, const float*, const std::uint8_t*, std::size_t, GroupParams<S> p) const noexcept {
        return p;
    }
};

/// Quantizes row r with the given codec(s); codec_for(g) returns the GroupCodec of group g. `refine` may
/// improve each group's fitted parameters (HQQ does) before the codes are chosen.
template <QuantScheme S, class CodecFor, class Refine = KeepFittedParams>
void quantize_row(ConstMatrixView w, const std::uint8_t* excluded, const QuantizeOptions& opt, std::size_t r,
                  QuantizedMatrix<S>& m, CodecFor&& codec_for, const Refine& refine = {}) {
    std::vector<std::uint8_t> codes(m.padded_cols, 0);
    const float* row = w.row(r);
    const std::uint8_t* row_excluded = excluded ? excluded + r * w.cols : nullptr;
    unsigned last_zero_code = 0;
    for (std::size_t g = 0; g < m.groups_per_row; ++g) {
        const std::size_t begin = g * m.group_size;
        const std::size_t end = std::min(begin + m.group_size, m.cols);
        const auto& codec = codec_for(g);
        const std::uint8_t* group_excluded = row_excluded ? row_excluded + begin : nullptr;
        const GroupParams<S> p = refine(
            codec, row + begin, group_excluded, end - begin,
            codec.fit(row + begin, opt.importance.empty() ? nullptr : opt.importance.data() + begin, group_excluded, end - begin, opt));
        m.scales[r * m.groups_per_row + g] = p.stored_scale;
        if constexpr (S::asymmetric) m.zeros[r * m.groups_per_row + g] = static_cast<std::uint8_t>(p.zero);
        const unsigned zc = codec.zero_code(p);
        for (std::size_t c = begin; c < end; ++c)
            codes[c] = static_cast<std::uint8_t>(row_excluded && row_excluded[c] ? zc : codec.encode(row[c], p));
        last_zero_code = zc;
    }
    for (std::size_t c = m.cols; c < m.padded_cols; ++c) codes[c] = static_cast<std::uint8_t>(last_zero_code);
    pack_row(codes, S::bits, {m.row_codes(r), m.row_bytes});
}

}  // namespace detail

namespace detail {
/// Round-to-nearest with each group's parameters passed through `refine` (KeepFittedParams: plain RTN).
template <QuantScheme S, class Refine>
QuantizedMatrix<S> quantize_groupwise(ConstMatrixView w, const QuantizeOptions& opt, const Refine& refine) {
    detail::check_quantizable(w, opt);
    auto m = QuantizedMatrix<S>::allocate(w.rows, w.cols);
    const std::vector<std::uint8_t> excluded_mask = detail::extract_outliers<S>(w, opt, m);
    const std::uint8_t* excluded = excluded_mask.empty() ? nullptr : excluded_mask.data();

    if constexpr (S::learned && detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group) {
        parallel_for(w.rows, [&](std::size_t r) {
            std::vector<GroupCodec<S>> codecs;
            codecs.reserve(m.groups_per_row);
            for (std::size_t g = 0; g < m.groups_per_row; ++g) {
                const std::size_t begin = g * m.group_size, end = std::min(begin + m.group_size, m.cols);
                const auto table = detail::fit_learned_table<S>(w, excluded, r, r + 1, begin, end, m.group_size, opt);
                for (std::size_t i = 0; i < table.size(); ++i)
                    m.codebook[(r * m.groups_per_row + g) * S::levels + i] = to_fp16(table[i]);
                codecs.emplace_back(table);
            }
            detail::quantize_row<S>(w, excluded, opt, r, m, [&](std::size_t g) -> const GroupCodec<S>& { return codecs[g]; }, refine);
        });
    } else {
        std::vector<float> table;
        if constexpr (S::learned) {
            table = detail::fit_learned_table<S>(w, excluded, 0, w.rows, 0, w.cols, m.group_size, opt);
            for (std::size_t i = 0; i < table.size(); ++i) m.codebook[i] = to_fp16(table[i]);
        }
        const GroupCodec<S> codec(table);
        parallel_for(w.rows, [&](std::size_t r) {
            detail::quantize_row<S>(w, excluded, opt, r, m, [&](std::size_t) -> const GroupCodec<S>& { return codec; }, refine);
        });
    }
    return m;
}

}  // namespace detail

/// Quantizes a row-major fp32 matrix (rows = outputs, cols = inputs) by round-to-nearest under scheme S.
template <QuantScheme S>
QuantizedMatrix<S> quantize_rtn(ConstMatrixView w, const QuantizeOptions& opt = {}) {
    return detail::quantize_groupwise<S>(w, opt, detail::KeepFittedParams{});
}

}  // namespace qsafe
