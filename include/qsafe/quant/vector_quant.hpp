#pragma once
// Vector (codebook) quantization of a weight matrix into a VqMatrix (formats/vq_matrix.hpp):
//   1. a per-row fp16 scale (the row's RMS) and a per-column fp16 scale (the RMS of the column after the
//      row scales) normalise the matrix, so one codebook serves every row and column;
//   2. every row is cut into sub-vectors of `dim` columns; a point's coordinate t carries the error
//      weight importance[c] * (row_scale * col_scale[c])^2, so the fit minimises the importance-weighted
//      squared error of the weights themselves (padding columns weigh zero);
//   3. the codebooks are fitted on a seeded subsample of at most max_fit_points sub-vectors
//      (importance-weighted k-means; for several books, residual k-means then alternating code updates
//      and least-squares codebook updates), rounded to fp16, and every sub-vector is encoded with them;
//   4. the outlier_fraction of positions with the largest weighted error are set aside (in SmolLM2 these
//      are the few very large weights of the rows that produce massive activations; k-means pulls them
//      towards the bulk and the model breaks);
//   5. each row scale is refitted by least squares for its codes (set-aside positions excluded) and the row
//      re-encoded, kept only if the row's weighted error falls;
//   6. the set-aside positions store an fp16 correction w - codebook value, so they come back almost exactly.
// Deterministic for a seed, whatever the thread count.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/formats/vq_matrix.hpp"
#include "qsafe/quant/additive_codebooks.hpp"
#include "qsafe/quant/kmeans_vector.hpp"
#include "qsafe/quant/quantize_options.hpp"
#include "qsafe/quant/rtn.hpp"

namespace qsafe {

struct VqConfig {
    VqShape shape{4, 1};
    bool column_scales = true;
    /// Sub-vectors used to fit the codebooks (a seeded subsample above this; every sub-vector is encoded).
    std::size_t max_fit_points = 1u << 16;
    /// Alternating code / codebook rounds for additive books (measured on SmolLM2's ffn_up: 0 -> 3 rounds
    /// lowers the relative error from 0.0935 to 0.0918 at beam 4; more rounds gain < 0.001).
    int rounds = 3;
    AdditiveSearchOptions search{};
    /// Least-squares refits of the row scales (each followed by a re-encoding of the row).
    int scale_refits = 1;
    /// Fraction of the weights corrected in fp16 (QuantizeOptions::outlier_fraction overrides it).
    double outlier_fraction = 0.005;
};

namespace detail {

/// The normalised sub-vectors of rows [r_begin, r_end) with their error weights (positions per row).
inline WeightedVectors vq_points(ConstMatrixView w, std::size_t r_begin, std::size_t r_end, std::size_t dim,
                                 const std::vector<float>& row_scale, const std::vector<float>& col_scale,
                                 const std::vector<float>& importance, const std::vector<std::uint8_t>& set_aside = {}) {
    const std::size_t positions = vq_positions(w.cols, dim);
    WeightedVectors pts;
    pts.dim = dim;
    pts.values.assign((r_end - r_begin) * positions * dim, 0.0f);
    pts.weights.assign(pts.values.size(), 0.0f);
    for (std::size_t r = r_begin; r < r_end; ++r)
        for (std::size_t c = 0; c < w.cols; ++c) {
            const float s = row_scale[r] * col_scale[c];
            if (s == 0.0f) continue;  // reconstructed as zero whatever the code
            const std::size_t i = (r - r_begin) * positions * dim + c;
            pts.values[i] = w(r, c) / s;
            pts.weights[i] = set_aside.empty() || !set_aside[r * w.cols + c] ? importance[c] * s * s : 0.0f;
        }
    return pts;
}

/// The sum of a code set's codewords (books in order), as dequantize() forms it.
inline void codeword_sum(const AdditiveCodebooks& cb, const std::uint8_t* codes, float* out) noexcept {
    for (std::size_t t = 0; t < cb.dim; ++t) out[t] = 0.0f;
    for (std::size_t m = 0; m < cb.books; ++m)
        for (std::size_t t = 0; t < cb.dim; ++t) out[t] += cb.codeword(m, codes[m])[t];
}

inline void check_vq_config(const VqConfig& config, const QuantizeOptions& opt, std::size_t cols) {
    if (config.shape.dim == 0 || config.shape.dim > 64 || config.shape.books == 0 || config.shape.books > 8)
        throw config_error(tensor_label(opt) + ": VQ needs a sub-vector length in [1, 64] and 1 to 8 codebooks, got d=" +
                           std::to_string(config.shape.dim) + " with " + std::to_string(config.shape.books));
    const double fraction = opt.outlier_fraction.value_or(config.outlier_fraction);
    if (!(fraction >= 0.0 && fraction <= 1.0))
        throw config_error(tensor_label(opt) + ": VQ outlier fraction must be in [0, 1], got " + std::to_string(fraction));
    if (fraction > 0.0 && cols > 65536)
        throw config_error(tensor_label(opt) + ": VQ outliers need at most 65536 columns (16-bit indices), got " + std::to_string(cols));
}

}  // namespace detail

/// Vector-quantizes w (rows = outputs, cols = inputs). Throws numeric_error naming opt.tensor_name on
/// NaN/Inf weights or importance, shape_error on an empty matrix or an importance of the wrong length.
inline VqMatrix quantize_vq(ConstMatrixView w, const VqConfig& config, const QuantizeOptions& opt = {}) {
    detail::check_quantizable(w, opt);
    detail::check_vq_config(config, opt, w.cols);
    const std::size_t rows = w.rows, cols = w.cols, d = config.shape.dim, nb = config.shape.books;
    const std::size_t positions = detail::vq_positions(cols, d);
    VqMatrix q = VqMatrix::allocate(rows, cols, config.shape);

    // Importance, normalised to mean 1 (only ratios matter; keeps the fit's sums well scaled).
    std::vector<float> importance(cols, 1.0f);
    if (!opt.importance.empty()) {
        double mean = 0.0;
        for (float v : opt.importance) mean += v;
        mean /= static_cast<double>(cols);
        for (std::size_t c = 0; c < cols; ++c)
            importance[c] = mean > 0.0 ? static_cast<float>(opt.importance[c] / mean) : 1.0f;
    }

    // Scales: row RMS, then column RMS of the row-normalised matrix; both as stored in fp16.
    std::vector<float> row_scale(rows), col_scale(cols, 1.0f);
    for (std::size_t r = 0; r < rows; ++r) {
        double ss = 0.0;
        for (std::size_t c = 0; c < cols; ++c) ss += static_cast<double>(w(r, c)) * w(r, c);
        row_scale[r] = round_to_fp16(static_cast<float>(std::sqrt(ss / static_cast<double>(cols))));
    }
    if (config.column_scales) {
        std::vector<double> ss(cols, 0.0);
        std::size_t used = 0;
        for (std::size_t r = 0; r < rows; ++r) {
            if (row_scale[r] == 0.0f) continue;
            ++used;
            for (std::size_t c = 0; c < cols; ++c) {
                const double v = static_cast<double>(w(r, c)) / row_scale[r];
                ss[c] += v * v;
            }
        }
        for (std::size_t c = 0; c < cols; ++c)
            col_scale[c] = used == 0 ? 1.0f : round_to_fp16(static_cast<float>(std::sqrt(ss[c] / static_cast<double>(used))));
    }

    // Fit on a seeded subsample of the sub-vectors.
    const WeightedVectors all = detail::vq_points(w, 0, rows, d, row_scale, col_scale, importance);
    const std::vector<std::size_t> chosen = subsample_indices(all.size(), config.max_fit_points, opt.seed);
    WeightedVectors sample;
    sample.dim = d;
    sample.values.reserve(chosen.size() * d);
    sample.weights.reserve(chosen.size() * d);
    for (std::size_t p : chosen) {
        sample.values.insert(sample.values.end(), all.point(p), all.point(p) + d);
        sample.weights.insert(sample.weights.end(), all.weight(p), all.weight(p) + d);
    }
    AdditiveFitOptions fit;
    fit.books = nb;
    fit.entries = vq_codebook_entries;
    fit.kmeans_iterations = std::max(opt.kmeans_iterations, 1);
    fit.rounds = config.rounds;
    fit.search = config.search;
    fit.seed = opt.seed;
    AdditiveCodebooks cb = fit_additive_codebooks(sample, fit);
    for (float& v : cb.values) v = round_to_fp16(v);  // encode with the codebooks as stored

    // Encode everything, then refit each row's scale for its codes and re-encode the row.
    std::vector<std::uint8_t> codes;
    encode_additive(all, cb, config.search, codes);

    // The reconstruction of (r, c) exactly as VqMatrix::dequantize forms it, without corrections.
    auto reconstruct = [&](std::size_t r, std::size_t c, float scale) {
        const std::uint8_t* code = codes.data() + (r * positions + c / d) * nb;
        float v = 0.0f;
        for (std::size_t m = 0; m < nb; ++m) v += cb.codeword(m, code[m])[c % d];
        return scale * (col_scale[c] * v);
    };
    // Set aside the positions with the largest weighted error (ties by position).
    const std::size_t n_outliers = vq_outlier_count(rows, cols, opt.outlier_fraction.value_or(config.outlier_fraction));
    std::vector<std::uint8_t> set_aside;
    if (n_outliers > 0) {
        std::vector<std::pair<float, std::size_t>> err(rows * cols);
        parallel_for(rows, [&](std::size_t r) {
            for (std::size_t c = 0; c < cols; ++c) {
                const float diff = w(r, c) - reconstruct(r, c, row_scale[r]);
                err[r * cols + c] = {importance[c] * diff * diff, r * cols + c};
            }
        });
        const auto worse = [](const std::pair<float, std::size_t>& a, const std::pair<float, std::size_t>& b) {
            return a.first > b.first || (a.first == b.first && a.second < b.second);
        };
        std::nth_element(err.begin(), err.begin() + static_cast<std::ptrdiff_t>(n_outliers - 1), err.end(), worse);
        set_aside.assign(rows * cols, 0);
        for (std::size_t i = 0; i < n_outliers; ++i) set_aside[err[i].second] = 1;
    }
    auto counts = [&](std::size_t r, std::size_t c) { return set_aside.empty() || !set_aside[r * cols + c]; };

    for (int refit = 0; refit < config.scale_refits; ++refit) {
        parallel_for_ranges(rows, 16, [&](std::size_t r_begin, std::size_t r_end) {
            std::vector<float> sum(d);
            std::vector<float> trial_scale(row_scale);
            for (std::size_t r = r_begin; r < r_end; ++r) {
                if (row_scale[r] == 0.0f) continue;
                // Weighted error of row r for a scale and codes.
                auto row_error = [&](float scale, const std::uint8_t* row_codes) {
                    double e = 0.0;
                    for (std::size_t j = 0; j < positions; ++j) {
                        detail::codeword_sum(cb, row_codes + j * nb, sum.data());
                        for (std::size_t t = 0; t < d && j * d + t < cols; ++t) {
                            const std::size_t c = j * d + t;
                            if (!counts(r, c)) continue;
                            const double diff = w(r, c) - static_cast<double>(scale) * (col_scale[c] * sum[t]);
                            e += importance[c] * diff * diff;
                        }
                    }
                    return e;
                };
                const std::uint8_t* current = codes.data() + r * positions * nb;
                double num = 0.0, den = 0.0;
                for (std::size_t j = 0; j < positions; ++j) {
                    detail::codeword_sum(cb, current + j * nb, sum.data());
                    for (std::size_t t = 0; t < d && j * d + t < cols; ++t) {
                        const std::size_t c = j * d + t;
                        if (!counts(r, c)) continue;
                        const double q = static_cast<double>(col_scale[c]) * sum[t];
                        num += importance[c] * w(r, c) * q;
                        den += importance[c] * q * q;
                    }
                }
                if (!(den > 0.0)) continue;
                const float scale = round_to_fp16(static_cast<float>(num / den));
                if (!(scale > 0.0f) || !std::isfinite(scale)) continue;
                trial_scale[r] = scale;
                const WeightedVectors row = detail::vq_points(w, r, r + 1, d, trial_scale, col_scale, importance, set_aside);
                std::vector<std::uint8_t> row_codes;
                encode_additive(row, cb, config.search, row_codes);
                if (row_error(scale, row_codes.data()) < row_error(row_scale[r], current)) {
                    row_scale[r] = scale;
                    std::copy(row_codes.begin(), row_codes.end(), codes.begin() + static_cast<std::ptrdiff_t>(r * positions * nb));
                }
                trial_scale[r] = row_scale[r];
            }
        });
    }

    for (std::size_t r = 0; r < rows; ++r) q.row_scales[r] = to_fp16(row_scale[r]);
    for (std::size_t c = 0; c < cols; ++c) q.col_scales[c] = to_fp16(col_scale[c]);
    for (std::size_t i = 0; i < cb.values.size(); ++i) q.codebooks[i] = to_fp16(cb.values[i]);
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < positions; ++j)
            for (std::size_t m = 0; m < nb; ++m) q.set_code(r, j, m, codes[(r * positions + j) * nb + m]);
    // Corrections of the set-aside positions, row by row in column order.
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < cols && !set_aside.empty(); ++c)
            if (set_aside[r * cols + c]) {
                q.outlier_col.push_back(static_cast<std::uint16_t>(c));
                q.outlier_value.push_back(to_fp16(w(r, c) - reconstruct(r, c, to_float(q.row_scales[r]))));
            }
        q.outlier_row_ptr[r + 1] = static_cast<std::uint32_t>(q.outlier_col.size());
    }
    return q;
}

}  // namespace qsafe
