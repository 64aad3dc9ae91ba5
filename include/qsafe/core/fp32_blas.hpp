#pragma once
// The two fp32 matrix products of the full-precision path: a layer's outputs for a batch of tokens
// (Y = X·Wᵀ, the reference model's prefill and calibration) and the Gram matrix of calibration inputs
// (H += XᵀX). Eigen computes them by default. When QSAFE_WITH_CBLAS is defined — the qsafe::openblas target
// defines it and links OpenBLAS — they go to CBLAS instead: OpenBLAS's kernels run about 1.5× Eigen's on an
// AVX2 machine (docs/calibrated-quantization.md), and calibration is made of little else.
//
// Both back ends give results that do not depend on the thread count: they split a product along its rows
// and columns, never along the summed dimension, so every output is the same sequence of operations.
// Call these from serial code: they parallelise themselves (the OpenMP build of OpenBLAS uses qsafe's thread
// count and runs single-threaded inside a parallel region; a pthreads OpenBLAS would add its own threads).
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

/// y = x · wᵀ: x is tokens × k, w is n × k (a layer's weights, rows = outputs), y is tokens × n; all
/// row-major with the given row strides.
inline void gemm_nt(ConstMatrixView x, const float* w, std::size_t n, std::size_t w_stride, MatrixView y) {
    const std::size_t tokens = x.rows, k = x.cols;
    if (tokens == 0 || n == 0) return;
#if defined(QSAFE_WITH_CBLAS)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(tokens), static_cast<int>(n), static_cast<int>(k), 1.0f,
                x.data, static_cast<int>(x.stride), w, static_cast<int>(w_stride), 0.0f, y.data, static_cast<int>(y.stride));
#else
    using Stride = Eigen::OuterStride<>;
    const Eigen::Map<const RowMatrixF, 0, Stride> xm(x.data, static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(k),
                                                    Stride(static_cast<Eigen::Index>(x.stride)));
    const Eigen::Map<const RowMatrixF, 0, Stride> wm(w, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(k),
                                                    Stride(static_cast<Eigen::Index>(w_stride)));
    Eigen::Map<RowMatrixF, 0, Stride> ym(y.data, static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(n),
                                        Stride(static_cast<Eigen::Index>(y.stride)));
    // Tiles of 64 outputs × 256 tokens: long prompts give every thread an equal share even for layers with
    // few 64-row blocks (k/v projections have 3), and a tile is the same Eigen product whatever the thread count.
    constexpr std::size_t out_block = 64, token_block = 256;
    const std::size_t out_blocks = (n + out_block - 1) / out_block, token_blocks = (tokens + token_block - 1) / token_block;
    parallel_for(out_blocks * token_blocks, [&](std::size_t tile) {
        const std::size_t o0 = tile / token_blocks * out_block, on = std::min(out_block, n - o0);
        const std::size_t t0 = tile % token_blocks * token_block, tn = std::min(token_block, tokens - t0);
        const auto o0i = static_cast<Eigen::Index>(o0), oni = static_cast<Eigen::Index>(on);
        const auto t0i = static_cast<Eigen::Index>(t0), tni = static_cast<Eigen::Index>(tn);
        ym.block(t0i, o0i, tni, oni).noalias() = xm.middleRows(t0i, tni) * wm.middleRows(o0i, oni).transpose();
    });
#endif
}

/// Adds xᵀx to the lower triangle (diagonal included) of the column-major n × n matrix h, where x is
/// tokens × n row-major. The strict upper triangle is scratch: parts of it may be overwritten.
inline void gram_lower_add(ConstMatrixView x, float* h, std::size_t n) {
    if (x.rows == 0 || n == 0) return;
#if defined(QSAFE_WITH_CBLAS)
    // Row-major tokens × n is column-major n × tokens: h += x' x'ᵀ with x' = that matrix.
    cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, static_cast<int>(n), static_cast<int>(x.rows), 1.0f, x.data,
                static_cast<int>(x.stride), 1.0f, h, static_cast<int>(n));
#else
    using Stride = Eigen::OuterStride<>;
    const Eigen::Map<const RowMatrixF, 0, Stride> xm(x.data, static_cast<Eigen::Index>(x.rows), static_cast<Eigen::Index>(n),
                                                    Stride(static_cast<Eigen::Index>(x.stride)));
    Eigen::Map<Eigen::MatrixXf> hm(h, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
    // Column blocks of decreasing height handed to whichever thread is free (static halves of a triangle
    // are uneven). The 64 × 64 diagonal blocks are computed whole, upper part included.
    constexpr Eigen::Index block = 64;
    const auto ni = static_cast<Eigen::Index>(n);
    const Eigen::Index nb = (ni + block - 1) / block;
    parallel_for_dynamic(static_cast<std::size_t>(nb), [&](std::size_t i) {
        const Eigen::Index c0 = static_cast<Eigen::Index>(i) * block, width = std::min(block, ni - c0);
        hm.block(c0, c0, ni - c0, width).noalias() += xm.rightCols(ni - c0).transpose() * xm.middleCols(c0, width);
    });
#endif
}

}  // namespace qsafe::fp32_blas
