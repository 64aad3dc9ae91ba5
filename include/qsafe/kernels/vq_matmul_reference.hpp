#pragma once
// Scalar reference of the VQ lookup product (kernels/vq_matmul.hpp), written from the format's definition
// for tests: tables of dot products per sub-vector position and codebook, summed per row in the order
// j, m, multiplied by the row scale, plus the fp16 corrections in storage order. Same arithmetic order as the SIMD lookup kernels; the tables use
// std::fma, so results match the SIMD kernels exactly when those fuse too (xsimd::fma on FMA3 targets).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/vq_matrix.hpp"

namespace qsafe {

/// Y = X W^T: X is batch x cols, Y is batch x rows. Sizes are the caller's responsibility.
inline void vq_gemm_reference(const VqMatrix& w, ConstMatrixView x, MatrixView y) {
    const std::size_t d = w.shape.dim, nb = w.shape.books, positions = w.positions();
    std::vector<float> xs(positions * d);
    std::vector<float> tables(positions * nb * vq_codebook_entries);
    for (std::size_t n = 0; n < x.rows; ++n) {
        std::fill(xs.begin(), xs.end(), 0.0f);
        for (std::size_t c = 0; c < w.cols; ++c) xs[c] = x(n, c) * to_float(w.col_scales[c]);
        for (std::size_t j = 0; j < positions; ++j)
            for (std::size_t m = 0; m < nb; ++m)
                for (std::size_t e = 0; e < vq_codebook_entries; ++e) {
                    float dot = 0.0f;
                    for (std::size_t t = 0; t < d; ++t) dot = std::fma(to_float(w.codeword(m, e)[t]), xs[j * d + t], dot);
                    tables[(j * nb + m) * vq_codebook_entries + e] = dot;
                }
        for (std::size_t r = 0; r < w.rows; ++r) {
            float acc = 0.0f;
            for (std::size_t j = 0; j < positions; ++j)
                for (std::size_t m = 0; m < nb; ++m) acc += tables[(j * nb + m) * vq_codebook_entries + w.code(r, j, m)];
            float corrections = 0.0f;
            for (std::uint32_t e = w.outlier_row_ptr[r]; e < w.outlier_row_ptr[r + 1]; ++e)
                corrections += to_float(w.outlier_value[e]) * x(n, w.outlier_col[e]);
            y(n, r) = to_float(w.row_scales[r]) * acc + corrections;
        }
    }
}

}  // namespace qsafe
