#pragma once
// The two fp32 matrix products of the full-precision path: a layer's outputs for a batch of tokens
// (Y = X·Wᵀ, the reference model's prefill and calibration) and the Gram matrix of calibration inputs
// (H += XᵀX). Eigen computes them by default. When QSAFE_WITH_CBLAS is defined — the qsafe::openblas target
// defines it and links OpenBLAS — they go to CBLAS instead: OpenBLAS's kernels run about 1.5× Eigen's on an
// AVX2 machine (docs/calibrated-quantization.md), and calibration is made of little else.
//
// Both back ends split a product into fixed tiles (outputs × tokens for a layer, column blocks for the Gram
// matrix) that qsafe's own threads take one at a time; each tile is one single-threaded product (OpenBLAS's
// OpenMP build runs single-threaded inside a parallel region), computed the same way whichever thread
// takes it, so results do not depend on the thread count. (OpenBLAS's own threading would be ~4 % faster
// here, but its results change with the thread count.)
#include <algorithm>
#include <cstddef>

#include <Eigen/Core>

#if defined(QSAFE_WITH_CBLAS)
#include <cblas.h>
#endif

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"

namespace qsafe::fp32_blas {

/// Which implementation the products use ("cblas" or "eigen"), for logs and reports.
inline const char* backend_name() noexcept {
#if defined(QSAFE_WITH_CBLAS)
    return "cblas";
#else
    return "eigen";
#endif
}

namespace detail {

#if defined(QSAFE_WITH_CBLAS)
inline constexpr std::size_t output_tile = 96;  // OpenBLAS: ~95 % of its own threading's rate (Zen 3)
#else
inline constexpr std::size_t output_tile = 64;
#endif
inline constexpr std::size_t token_tile = 256;
inline constexpr std::size_t gram_column_block = 96;

/// y (tokens × n, row stride ldy) = x (tokens × k, ldx) · wᵀ (w: n × k, ldw), on the calling thread.
inline void gemm_nt_tile(const float* x, std::size_t ldx, const float* w, std::size_t ldw, float* y, std::size_t ldy,
                         std::size_t tokens, std::size_t n, std::size_t k) {
#if defined(QSAFE_WITH_CBLAS)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(tokens), static_cast<int>(n), static_cast<int>(k), 1.0f,
                x, static_cast<int>(ldx), w, static_cast<int>(ldw), 0.0f, y, static_cast<int>(ldy));
#else
    using Stride = Eigen::OuterStride<>;
    const Eigen::Map<const RowMatrixF, 0, Stride> xm(x, static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(k),
                                                     Stride(static_cast<Eigen::Index>(ldx)));
    const Eigen::Map<const RowMatrixF, 0, Stride> wm(w, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(k),
                                                     Stride(static_cast<Eigen::Index>(ldw)));
    Eigen::Map<RowMatrixF, 0, Stride> ym(y, static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(n),
                                         Stride(static_cast<Eigen::Index>(ldy)));
    ym.noalias() = xm * wm.transpose();
#endif
}

/// h(c0.., c0..c0+width) += x(:, c0..)ᵀ x(:, c0..c0+width) for column-major h (n × n) and row-major x
/// (tokens × n, row stride ldx): one block column of the lower triangle, its diagonal block in full.
inline void gram_block_column(const float* x, std::size_t ldx, std::size_t tokens, float* h, std::size_t n, std::size_t c0,
                              std::size_t width) {
    const std::size_t height = n - c0;
#if defined(QSAFE_WITH_CBLAS)
    // Row-major tokens × n is column-major n × tokens (= A): the block is A(c0.., :) · A(c0..c0+width, :)ᵀ.
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, static_cast<int>(height), static_cast<int>(width), static_cast<int>(tokens),
                1.0f, x + c0, static_cast<int>(ldx), x + c0, static_cast<int>(ldx), 1.0f, h + c0 * n + c0, static_cast<int>(n));
#else
    using Stride = Eigen::OuterStride<>;
    const Eigen::Map<const RowMatrixF, 0, Stride> xm(x, static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(n),
                                                     Stride(static_cast<Eigen::Index>(ldx)));
    Eigen::Map<Eigen::MatrixXf> hm(h, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
    const auto c0i = static_cast<Eigen::Index>(c0), hi = static_cast<Eigen::Index>(height), wi = static_cast<Eigen::Index>(width);
    hm.block(c0i, c0i, hi, wi).noalias() += xm.rightCols(hi).transpose() * xm.middleCols(c0i, wi);
#endif
}

}  // namespace detail

/// y = x · wᵀ: x is tokens × k, w is n × k (a layer's weights, rows = outputs), y is tokens × n; all
/// row-major with the given row strides.
inline void gemm_nt(ConstMatrixView x, const float* w, std::size_t n, std::size_t w_stride, MatrixView y) {
    const std::size_t tokens = x.rows, k = x.cols;
    if (tokens == 0 || n == 0) return;
    const std::size_t out_tiles = (n + detail::output_tile - 1) / detail::output_tile;
    const std::size_t token_tiles = (tokens + detail::token_tile - 1) / detail::token_tile;
    parallel_for_dynamic(out_tiles * token_tiles, [&](std::size_t tile) {
        const std::size_t o0 = tile / token_tiles * detail::output_tile, on = std::min(detail::output_tile, n - o0);
        const std::size_t t0 = tile % token_tiles * detail::token_tile, tn = std::min(detail::token_tile, tokens - t0);
        detail::gemm_nt_tile(x.data + t0 * x.stride, x.stride, w + o0 * w_stride, w_stride, y.data + t0 * y.stride + o0, y.stride,
                             tn, on, k);
    });
}

/// Adds xᵀx to the lower triangle (diagonal included) of the column-major n × n matrix h, where x is
/// tokens × n row-major. The strict upper triangle is scratch: parts of it may be overwritten.
inline void gram_lower_add(ConstMatrixView x, float* h, std::size_t n) {
    if (x.rows == 0 || n == 0) return;
    // Block columns of decreasing height, taken by whichever thread is free (static halves of a triangle are
    // uneven); the tallest come first.
    const std::size_t blocks = (n + detail::gram_column_block - 1) / detail::gram_column_block;
    parallel_for_dynamic(blocks, [&](std::size_t b) {
        const std::size_t c0 = b * detail::gram_column_block;
        detail::gram_block_column(x.data, x.stride, x.rows, h, n, c0, std::min(detail::gram_column_block, n - c0));
    });
}

}  // namespace qsafe::fp32_blas
