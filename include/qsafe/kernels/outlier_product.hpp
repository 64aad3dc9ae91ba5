#pragma once
// Adds the fp16 outlier weights' contribution to a block of outputs, exactly, with the fp32 activations
// (their positions in the packed codes decode to 0.0, so the quantized product did not count them).
// Outlier columns: the activations of a block of 64 outlier columns are gathered once per batch tile, and
// each row's 64 fp16 values are converted (F16C where available) and dotted with them in SIMD.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <xsimd/xsimd.hpp>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/kernels/arch/x86_intrinsics.hpp"

namespace qsafe::kernels {

namespace detail {
template <class Arch>
float fp16_value(fp16_t h) noexcept {
#if XSIMD_WITH_AVX2
    if constexpr (has_x86_kernels<Arch>) return x86::fp16_to_float(h);
#endif
    return to_float(h);
}

/// out[0, m) = values[0, m) as floats.
template <class Arch>
void fp16_block_to_float(const fp16_t* values, std::size_t m, float* out) noexcept {
    std::size_t i = 0;
#if XSIMD_WITH_AVX2
    if constexpr (has_x86_kernels<Arch>)
        for (; i + 8 <= m; i += 8) x86::load_fp16x8(values + i).store_unaligned(out + i);
#endif
    for (; i < m; ++i) out[i] = fp16_value<Arch>(values[i]);
}
}  // namespace detail

/// y(n, r) += sum over row r's outliers of value * x(n, column), for r in [r_begin, r_end) and every n.
template <class Arch, QuantScheme S>
void add_outlier_products(const QuantizedMatrix<S>& w, std::size_t r_begin, std::size_t r_end, ConstMatrixView x,
                          MatrixView y) noexcept {
    if constexpr (S::outlier_kind == OutlierKind::columns) {
        using fb = xsimd::batch<float, Arch>;
        const auto& oc = w.outlier_columns;
        const std::size_t k = oc.count();
        constexpr std::size_t block = 64, batch_tile = 16;
        static_assert(block % fb::size == 0, "outlier block must hold whole batches");
        alignas(64) float gathered[batch_tile][block];
        alignas(64) float values[block];
        for (std::size_t i0 = 0; i0 < k; i0 += block) {
            const std::size_t m = std::min(block, k - i0);
            for (std::size_t n0 = 0; n0 < x.rows; n0 += batch_tile) {
                const std::size_t nb = std::min(batch_tile, x.rows - n0);
                for (std::size_t n = 0; n < nb; ++n) {
                    for (std::size_t i = 0; i < m; ++i) gathered[n][i] = x(n0 + n, oc.columns[i0 + i]);
                    std::fill(gathered[n] + m, gathered[n] + block, 0.0f);
                }
                std::fill(values + m, values + block, 0.0f);
                for (std::size_t r = r_begin; r < r_end; ++r) {
                    detail::fp16_block_to_float<Arch>(oc.values.data() + r * k + i0, m, values);
                    for (std::size_t n = 0; n < nb; ++n) {
                        fb sum(0.0f);
                        for (std::size_t i = 0; i < block; i += fb::size)
                            sum = xsimd::fma(fb::load_aligned(values + i), fb::load_aligned(gathered[n] + i), sum);
                        y(n0 + n, r) += xsimd::hadd(sum);
                    }
                }
            }
        }
    } else if constexpr (S::outlier_kind == OutlierKind::sparse) {
        const auto& sp = w.sparse_outliers;
        for (std::size_t r = r_begin; r < r_end; ++r) {
            for (std::size_t n = 0; n < x.rows; ++n) {
                const float* xn = x.row(n);
                float sum = 0.0f;
                for (std::uint32_t e = sp.row_ptr[r]; e < sp.row_ptr[r + 1]; ++e)
                    sum += detail::fp16_value<Arch>(sp.value[e]) * xn[sp.col[e]];
                y(n, r) += sum;
            }
        }
    } else {
        (void)w, (void)r_begin, (void)r_end, (void)x, (void)y;
    }
}

}  // namespace qsafe::kernels
