#pragma once
// Quantized matrix products on the packed storage, for every scheme:
//   gemv(w, x, y [, options])   y = W x              x: cols, y: rows
//   gemm(w, X, Y [, options])   Y = X W^T            X: batch x cols (one activation vector per row), Y: batch x rows
// Each overload also takes an xsimd arch tag first (gemv(xsimd::avx2{}, ...)) to pick the instruction set;
// without it the TU's xsimd::default_arch is used. Shapes and the matrix's buffers are validated first
// (qsafe::shape_error); the kernels never throw. Work is split over output rows with core/parallel.hpp in
// static, 4-row aligned ranges, and each output is computed by one thread with the same instructions
// whatever the thread count, so results are bit-identical for any number of threads.
// Kernels (kernels/*_kernel.hpp): an integer kernel (int16 or int8 activations) for uniform grids — on AVX-512BW
// for 4- and 8-bit codes one working on pairs of chunks in 512-bit registers — and an exact fp32
// kernel for every codebook on x86 (AVX2, AVX-512BW) when groups are whole 32-code chunks, an exact fp32
// kernel on dequantized row tiles for large batches there, and a portable xsimd kernel otherwise. Weights
// are read once per call: a tile of rows is finished for the whole batch before the next tile is touched.
#include <concepts>
#include <cstddef>
#include <span>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <xsimd/xsimd.hpp>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/kernels/activation_buffers.hpp"
#include "qsafe/kernels/arch/x86_intrinsics.hpp"
#include "qsafe/kernels/dequantized_tile_kernel.hpp"
#include "qsafe/kernels/float_tile_kernel.hpp"
#include "qsafe/kernels/integer_tile_kernel.hpp"
#include "qsafe/kernels/matmul_options.hpp"
#include "qsafe/kernels/matmul_shapes.hpp"
#include "qsafe/kernels/outlier_product.hpp"
#include "qsafe/kernels/paired_integer_tile_kernel.hpp"
#include "qsafe/kernels/portable_kernel.hpp"

namespace qsafe {

/// An xsimd architecture tag (xsimd::avx2, xsimd::avx512bw, xsimd::sse4_2, xsimd::default_arch, ...).
template <class A>
concept XsimdArch = requires {
    { A::name() } -> std::convertible_to<const char*>;
    { A::version() } -> std::convertible_to<unsigned>;
};

namespace kernels {

/// The integer paths' `_pairs` forms are the 512-bit kernel on two chunks per register
/// (kernels/paired_integer_tile_kernel.hpp): the same arithmetic and accuracy as the 256-bit one.
enum class KernelPath { int16_chunks, int8_chunks, int16_chunk_pairs, int8_chunk_pairs, fp32_chunks, dequantized_tiles, portable };

/// The per-vector kernel a product of this scheme runs on Arch with the given activation precision (small
/// batches; see kernel_path_for for the batch-dependent choice).
template <class Arch, QuantScheme S>
constexpr KernelPath kernel_path(ActivationPrecision precision) noexcept {
    if constexpr (has_x86_kernels<Arch> && (S::per_channel || S::group_size % chunk_codes == 0)) {
        if (S::uniform && precision == ActivationPrecision::int8)
            return runs_pair_kernel<Arch, S, std::int8_t>() ? KernelPath::int8_chunk_pairs : KernelPath::int8_chunks;
        if (S::uniform && precision != ActivationPrecision::fp32)
            return runs_pair_kernel<Arch, S, std::int16_t>() ? KernelPath::int16_chunk_pairs : KernelPath::int16_chunks;
        return KernelPath::fp32_chunks;
    } else {
        (void)precision;
        return KernelPath::portable;
    }
}

/// The kernel a product of `batch` vectors runs: large batches with fp32 or automatic activations go to
/// dequantized tiles wherever the x86 chunk kernels exist.
template <class Arch, QuantScheme S>
constexpr KernelPath kernel_path_for(const MatmulOptions& options, std::size_t batch) noexcept {
    const KernelPath path = kernel_path<Arch, S>(options.activations);
    const bool fp32_allowed = options.activations == ActivationPrecision::fp32 || options.activations == ActivationPrecision::automatic;
    if (path != KernelPath::portable && fp32_allowed && batch >= options.dequantized_tiles_min_batch)
        return KernelPath::dequantized_tiles;
    return path;
}

constexpr const char* kernel_path_name(KernelPath p) noexcept {
    switch (p) {
        case KernelPath::dequantized_tiles: return "dequantized-tiles";
        case KernelPath::int16_chunks: return "int16-chunks";
        case KernelPath::int8_chunks: return "int8-chunks";
        case KernelPath::int16_chunk_pairs: return "int16-chunk-pairs";
        case KernelPath::int8_chunk_pairs: return "int8-chunk-pairs";
        case KernelPath::fp32_chunks: return "fp32-chunks";
        default: return "portable";
    }
}

/// Row tiles: 4 rows for batch 1, 2 rows x 4 activation vectors otherwise. Thread ranges are multiples of
/// row_grain so the tiling (and hence every output's arithmetic) does not depend on the thread count.
inline constexpr std::size_t row_grain = 4;

template <class Tile>
void run_tiles(std::size_t r_begin, std::size_t r_end, std::size_t batch, Tile&& tile) noexcept {
    std::size_t r = r_begin;
    if (batch == 1) {
        for (; r + 4 <= r_end; r += 4) tile.template operator()<4, 1>(r, 0);
        for (; r < r_end; ++r) tile.template operator()<1, 1>(r, 0);
        return;
    }
    auto batch_tiles = [&]<int RowTile>(std::size_t row) {
        std::size_t n = 0;
        for (; n + 4 <= batch; n += 4) tile.template operator()<RowTile, 4>(row, n);
        if (n + 2 <= batch) {
            tile.template operator()<RowTile, 2>(row, n);
            n += 2;
        }
        if (n < batch) tile.template operator()<RowTile, 1>(row, n);
    };
    for (; r + 2 <= r_end; r += 2) batch_tiles.template operator()<2>(r);
    for (; r < r_end; ++r) batch_tiles.template operator()<1>(r);
}

/// Runs the product after validation. Allocates the prepared activations, then the noexcept kernels.
template <class Arch, QuantScheme S>
void run_matmul(const QuantizedMatrix<S>& w, ConstMatrixView x, MatrixView y, const MatmulOptions& options) {
    if (x.rows == 0) return;
    constexpr bool chunk_kernels = kernel_path<Arch, S>(ActivationPrecision::fp32) != KernelPath::portable;
    if constexpr (chunk_kernels) {
#if XSIMD_WITH_AVX2
        const ChunkOrder order = chunk_order(S::bits);
        const KernelPath path = kernel_path_for<Arch, S>(options, x.rows);
        auto integer_product = [&]<class Code>(QuantizedActivations<Code>& acts) {
            const std::size_t chunks = (x.cols + chunk_codes - 1) / chunk_codes;
            constexpr bool pairs = runs_pair_kernel<Arch, S, Code>();
            quantize_activations<Arch>(x, order, S::per_channel ? chunks : S::group_size / chunk_codes, w.groups_per_row, acts,
                                       pairs ? paired_chunk_count(w) : 0);
            parallel_for_ranges(w.rows, row_grain, [&](std::size_t begin, std::size_t end) {
                run_tiles(begin, end, x.rows, [&]<int RowTile, int BatchTile>(std::size_t r0, std::size_t n0) {
#if QSAFE_HAS_X86_PAIR_KERNEL
                    if constexpr (pairs) paired_integer_tile<Arch, S, RowTile, BatchTile>(w, r0, acts, n0, y);
                    else
#endif
                        integer_tile<Arch, S, RowTile, BatchTile>(w, r0, acts, n0, y);
                });
                add_outlier_products<Arch>(w, begin, end, x, y);
            });
        };
        if (path == KernelPath::dequantized_tiles) {
            PermutedActivations acts;
            permute_activations<Arch>(x, order, acts);
            const std::size_t tile_floats = dequantized_tile_floats(acts.batch);
            aligned_vector<float> tiles(static_cast<std::size_t>(num_threads()) * tile_floats);
            parallel_for_ranges(w.rows, dequantized_tile_rows, [&](std::size_t begin, std::size_t end) {
                float* tile = tiles.data() + static_cast<std::size_t>(omp_get_thread_num()) * tile_floats;
                dequantized_rows<Arch>(w, begin, end, acts, tile, y);
                add_outlier_products<Arch>(w, begin, end, x, y);
            });
        } else if (path == KernelPath::int16_chunks || path == KernelPath::int16_chunk_pairs) {
            Int16Activations acts;
            integer_product(acts);
        } else if (path == KernelPath::int8_chunks || path == KernelPath::int8_chunk_pairs) {
            Int8Activations acts;
            integer_product(acts);
        } else {
            PermutedActivations acts;
            permute_activations<Arch>(x, order, acts);
            parallel_for_ranges(w.rows, row_grain, [&](std::size_t begin, std::size_t end) {
                run_tiles(begin, end, x.rows, [&]<int RowTile, int BatchTile>(std::size_t r0, std::size_t n0) {
                    float_tile<Arch, S, RowTile, BatchTile>(w, r0, acts, n0, y);
                });
                add_outlier_products<Arch>(w, begin, end, x, y);
            });
        }
#endif
    } else {
        (void)options;
        PaddedActivations acts;
        pad_activations<Arch>(x, w.padded_cols, acts);
        parallel_for_ranges(w.rows, row_grain, [&](std::size_t begin, std::size_t end) {
            portable_rows<Arch>(w, begin, end, acts, y);
            add_outlier_products<Arch>(w, begin, end, x, y);
        });
    }
}

}  // namespace kernels

/// Y = X W^T on the instruction set Arch. X: batch x cols, Y: batch x rows.
template <XsimdArch Arch, QuantScheme S>
void gemm(Arch, const QuantizedMatrix<S>& w, ConstMatrixView x, MatrixView y, const MatmulOptions& options = {}) {
    detail::check_gemm_shapes(w, x, y, "qsafe::gemm");
    kernels::run_matmul<Arch>(w, x, y, options);
}

template <QuantScheme S>
void gemm(const QuantizedMatrix<S>& w, ConstMatrixView x, MatrixView y, const MatmulOptions& options = {}) {
    gemm(xsimd::default_arch{}, w, x, y, options);
}

/// y = W x on the instruction set Arch. x: cols entries, y: rows entries.
template <XsimdArch Arch, QuantScheme S>
void gemv(Arch, const QuantizedMatrix<S>& w, std::span<const float> x, std::span<float> y,
          const MatmulOptions& options = {}) {
    detail::check_quantized_matrix(w, "qsafe::gemv");
    if (x.size() != w.cols || y.size() != w.rows)
        throw shape_error("qsafe::gemv: W is " + detail::dims(w.rows, w.cols) + ", x has " + std::to_string(x.size()) +
                          " entries (need " + std::to_string(w.cols) + "), y has " + std::to_string(y.size()) +
                          " (need " + std::to_string(w.rows) + ")");
    kernels::run_matmul<Arch>(w, ConstMatrixView(x.data(), 1, w.cols), MatrixView(y.data(), 1, w.rows), options);
}

template <QuantScheme S>
void gemv(const QuantizedMatrix<S>& w, std::span<const float> x, std::span<float> y, const MatmulOptions& options = {}) {
    gemv(xsimd::default_arch{}, w, x, y, options);
}

}  // namespace qsafe
