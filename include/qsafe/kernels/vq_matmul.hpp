#pragma once
// Products with a vector-quantized matrix (formats/vq_matrix.hpp) without dequantizing it:
//   vq_gemv(w, x, y)   y = W x       x: cols, y: rows
//   vq_gemm(w, X, Y)   Y = X W^T     X: batch x cols, Y: batch x rows
// Lookup path: the column scales are folded into the activations (x' = x * col_scale, zero-padded), then
// for every sub-vector position j and codebook m a table T[j][m][c] = <codebook_m[c], x'[j*dim, +dim)> of
// 256 dot products is built, and y_r = row_scale_r * sum_{j,m} T[j][m][code(r, j, m)] in the order j, m.
// A tile's codes for one (j, m) are 8 consecutive bytes, so on AVX2 one byte load feeds one 8-lane gather
// and each lane accumulates one row (or 8 scalar loads do, which is faster on Zen 3). Tables are visited in
// blocks of vq_block_steps so the block stays in cache while every tile of a thread reads it. Dense path
// (larger batches): a tile of rows is decoded once to fp32 and multiplied with every activation vector by
// FMA (on x86 with the panel kernel of kernels/dequantized_tile_kernel.hpp), which beats per-vector
// lookups once the decoding is shared (bench/bench_vq.cpp, docs/vector-quantization.md).
// Corrections (sparse fp16 outliers) are added per row after the codebook part, in storage order.
// Rows are split over threads in whole 8-row tiles; each output is computed by one thread with the same
// instructions whatever the thread count, so results are bit-identical for any number of threads.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <xsimd/xsimd.hpp>

#include "qsafe/core/aligned_buffer.hpp"
#include "qsafe/core/error.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/formats/vq_matrix.hpp"
#include "qsafe/kernels/matmul.hpp"

#if XSIMD_WITH_AVX2
#include <immintrin.h>
#endif

namespace qsafe {

/// How a VQ product is computed. `automatic` picks scalar lookups below vq_dense_min_batch(books) vectors and
/// the dense path from there on: on the AMD EPYC (Zen 3) development machine scalar table loads beat AVX2
/// gathers by 5-45 %, and decoding a tile once overtakes per-vector lookups at 2 vectors with one codebook
/// and at 4 with two (decoding costs one codeword load per book; docs/vector-quantization.md).
enum class VqPath { automatic, gather, scalar_lookup, dense };

/// Smallest batch for which `automatic` uses the dense path (measured with bench_vq).
constexpr std::size_t vq_dense_min_batch(std::size_t books) noexcept { return 2 * books; }

namespace kernels {

/// Codebooks as fp32, in the two layouts the kernels need.
struct VqDecodedBooks {
    aligned_vector<float> transposed;   // books x dim x 256: one codeword coordinate for 8 entries per batch
    aligned_vector<float> entry_major;  // books x 256 x dim: one codeword contiguous
};

inline VqDecodedBooks decode_books(const VqMatrix& w) {
    const std::size_t d = w.shape.dim, books = w.shape.books;
    VqDecodedBooks b;
    b.transposed.resize(books * d * vq_codebook_entries);
    b.entry_major.resize(books * vq_codebook_entries * d);
    for (std::size_t m = 0; m < books; ++m)
        for (std::size_t c = 0; c < vq_codebook_entries; ++c)
            for (std::size_t t = 0; t < d; ++t) {
                const float v = to_float(w.codeword(m, c)[t]);
                b.transposed[(m * d + t) * vq_codebook_entries + c] = v;
                b.entry_major[(m * vq_codebook_entries + c) * d + t] = v;
            }
    return b;
}

/// x' = x * col_scale for every activation vector, zero-padded to whole sub-vectors: batch x padded_cols.
inline aligned_vector<float> scaled_activations(const VqMatrix& w, ConstMatrixView x) {
    const std::size_t pc = w.padded_cols();
    aligned_vector<float> xs(x.rows * pc, 0.0f);
    for (std::size_t n = 0; n < x.rows; ++n)
        for (std::size_t c = 0; c < w.cols; ++c) xs[n * pc + c] = x(n, c) * to_float(w.col_scales[c]);
    return xs;
}

/// Lookup tables of one scaled activation vector: positions x books x 256, each entry a dot product over
/// the sub-vector's coordinates in order (fma from zero).
template <class Arch>
void build_vq_tables(const VqMatrix& w, const VqDecodedBooks& books, const float* xs, float* tables) noexcept {
    using fb = xsimd::batch<float, Arch>;
    static_assert(vq_codebook_entries % fb::size == 0);
    const std::size_t d = w.shape.dim, nb = w.shape.books, positions = w.positions();
    for (std::size_t j = 0; j < positions; ++j)
        for (std::size_t m = 0; m < nb; ++m) {
            float* table = tables + (j * nb + m) * vq_codebook_entries;
            const float* cb = books.transposed.data() + m * d * vq_codebook_entries;
            for (std::size_t c = 0; c < vq_codebook_entries; c += fb::size) {
                fb acc(0.0f);
                for (std::size_t t = 0; t < d; ++t)
                    acc = xsimd::fma(fb::load_aligned(cb + t * vq_codebook_entries + c), fb(xs[j * d + t]), acc);
                acc.store_aligned(table + c);
            }
        }
}

template <class Arch>
inline constexpr bool vq_has_gather = XSIMD_WITH_AVX2 && std::is_base_of_v<xsimd::avx2, Arch>;

/// Table steps (position x book) per pass over a thread's tiles: 32 tables of 1 KiB per vector stay in
/// L1/L2 while every tile reads them, instead of each tile walking all tables (1 MiB at 4096 columns, d=4).
inline constexpr std::size_t vq_block_steps = 32;

/// Adds the table entries of steps [k_begin, k_end) to the running sums of the 8 rows of `tile` (lane i =
/// row tile*8 + i). The sums continue across blocks, so the order is j, m whatever the blocking.
template <class Arch>
void lookup_tile_gather(const VqMatrix& w, std::size_t tile, const float* tables, std::size_t k_begin, std::size_t k_end,
                        float* sums) noexcept {
#if XSIMD_WITH_AVX2
    if constexpr (vq_has_gather<Arch>) {
        using fb = xsimd::batch<float, xsimd::avx2>;
        using ib = xsimd::batch<std::int32_t, xsimd::avx2>;
        const std::uint8_t* codes = w.codes.data() + tile * w.positions() * w.shape.books * vq_row_tile;
        fb acc = fb::load_unaligned(sums);
        for (std::size_t k = k_begin; k < k_end; ++k) {
            const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + k * vq_row_tile));
            const ib index(_mm256_cvtepu8_epi32(bytes));
            acc += fb::gather(tables + k * vq_codebook_entries, index);
        }
        acc.store_unaligned(sums);
        return;
    }
#endif
    (void)w, (void)tile, (void)tables, (void)k_begin, (void)k_end, (void)sums;
}

/// The same sums with scalar loads (any arch; also measured against the gather on AVX2).
inline void lookup_tile_scalar(const VqMatrix& w, std::size_t tile, const float* tables, std::size_t k_begin, std::size_t k_end,
                               float* sums) noexcept {
    const std::uint8_t* codes = w.codes.data() + tile * w.positions() * w.shape.books * vq_row_tile;
    float acc[vq_row_tile];
    std::copy(sums, sums + vq_row_tile, acc);
    for (std::size_t k = k_begin; k < k_end; ++k) {
        const float* table = tables + k * vq_codebook_entries;
        const std::uint8_t* c = codes + k * vq_row_tile;
        for (std::size_t i = 0; i < vq_row_tile; ++i) acc[i] += table[c[i]];
    }
    std::copy(acc, acc + vq_row_tile, sums);
}

/// The corrections of row r dotted with activation vector n (original, unscaled activations).
inline float outlier_dot(const VqMatrix& w, std::size_t r, ConstMatrixView x, std::size_t n) noexcept {
    float s = 0.0f;
    for (std::uint32_t e = w.outlier_row_ptr[r]; e < w.outlier_row_ptr[r + 1]; ++e) s += to_float(w.outlier_value[e]) * x(n, w.outlier_col[e]);
    return s;
}

template <class Arch>
void lookup_product(const VqMatrix& w, ConstMatrixView x, MatrixView y, bool gather) {
    const std::size_t pc = w.padded_cols(), batch = x.rows;
    const std::size_t steps = w.positions() * w.shape.books;
    const std::size_t table_floats = steps * vq_codebook_entries;
    const VqDecodedBooks books = decode_books(w);
    const aligned_vector<float> xs = scaled_activations(w, x);
    aligned_vector<float> tables(batch * table_floats);
    // Each table is written by one thread; its arithmetic does not depend on the split.
    parallel_for(batch, [&](std::size_t n) { build_vq_tables<Arch>(w, books, xs.data() + n * pc, tables.data() + n * table_floats); });
    parallel_for_ranges(w.tiles(), 1, [&](std::size_t t_begin, std::size_t t_end) {
        // Running sums: tile x vector x 8 lanes.
        std::vector<float> sums((t_end - t_begin) * batch * vq_row_tile, 0.0f);
        for (std::size_t k0 = 0; k0 < steps; k0 += vq_block_steps) {
            const std::size_t k1 = std::min(k0 + vq_block_steps, steps);
            for (std::size_t tile = t_begin; tile < t_end; ++tile)
                for (std::size_t n = 0; n < batch; ++n) {
                    float* s = sums.data() + ((tile - t_begin) * batch + n) * vq_row_tile;
                    const float* tables_n = tables.data() + n * table_floats;
                    if (gather && vq_has_gather<Arch>) lookup_tile_gather<Arch>(w, tile, tables_n, k0, k1, s);
                    else lookup_tile_scalar(w, tile, tables_n, k0, k1, s);
                }
        }
        for (std::size_t tile = t_begin; tile < t_end; ++tile) {
            const std::size_t r0 = tile * vq_row_tile, nr = std::min(vq_row_tile, w.rows - r0);
            for (std::size_t n = 0; n < batch; ++n) {
                const float* s = sums.data() + ((tile - t_begin) * batch + n) * vq_row_tile;
                for (std::size_t i = 0; i < nr; ++i) y(n, r0 + i) = to_float(w.row_scales[r0 + i]) * s[i] + outlier_dot(w, r0 + i, x, n);
            }
        }
    });
}

/// Decodes the tile's rows (codeword sums, books in order) into 8 rows of `out_stride` floats. D is the
/// sub-vector length when known at compile time (0: read it from w), so the common d = 4, 8 copies unroll.
template <std::size_t D>
void decode_tile_as(const VqMatrix& w, const VqDecodedBooks& books, std::size_t tile, float* out, std::size_t out_stride) noexcept {
    const std::size_t d = D == 0 ? w.shape.dim : D, nb = w.shape.books, positions = w.positions();
    const std::uint8_t* codes = w.codes.data() + tile * positions * nb * vq_row_tile;
    const float* entries = books.entry_major.data();
    // Row by row: writing the 8 rows in turn would hit one cache set (rows are 4 KiB multiples apart).
    for (std::size_t i = 0; i < vq_row_tile; ++i) {
        float* row = out + i * out_stride;
        for (std::size_t j = 0; j < positions; ++j) {
            const float* first = entries + static_cast<std::size_t>(codes[(j * nb) * vq_row_tile + i]) * d;
            if constexpr (D != 0) {
                // Fixed-length copies and adds on unaliased pointers compile to one or two vector moves.
                float* __restrict dst = row + j * D;
                if (nb == 1) {
                    std::memcpy(dst, first, D * sizeof(float));
                } else {
                    const float* __restrict second = entries + (vq_codebook_entries + codes[(j * nb + 1) * vq_row_tile + i]) * D;
                    for (std::size_t t = 0; t < D; ++t) dst[t] = first[t] + second[t];
                    for (std::size_t m = 2; m < nb; ++m) {
                        const float* __restrict cw = entries + (m * vq_codebook_entries + codes[(j * nb + m) * vq_row_tile + i]) * D;
                        for (std::size_t t = 0; t < D; ++t) dst[t] += cw[t];
                    }
                }
            } else {
                float* dst = row + j * d;
                for (std::size_t t = 0; t < d; ++t) dst[t] = first[t];
                for (std::size_t m = 1; m < nb; ++m) {
                    const float* cw = entries + (m * vq_codebook_entries + codes[(j * nb + m) * vq_row_tile + i]) * d;
                    for (std::size_t t = 0; t < d; ++t) dst[t] += cw[t];
                }
            }
        }
    }
}

inline void decode_tile(const VqMatrix& w, const VqDecodedBooks& books, std::size_t tile, float* out, std::size_t out_stride) noexcept {
    switch (w.shape.dim) {
        case 4: decode_tile_as<4>(w, books, tile, out, out_stride); break;
        case 8: decode_tile_as<8>(w, books, tile, out, out_stride); break;
        default: decode_tile_as<0>(w, books, tile, out, out_stride); break;
    }
}

/// Dot products of Rows decoded rows with Vecs scaled activation vectors of n floats (a multiple of the
/// batch width, zero-padded).
template <class Arch, int Rows, int Vecs>
void dense_micro(const float* rows, const float* const* xs, std::size_t n, std::size_t row_stride, float (&out)[Rows][Vecs]) noexcept {
    using fb = xsimd::batch<float, Arch>;
    fb acc[Rows][Vecs];
    for (int i = 0; i < Rows; ++i)
        for (int v = 0; v < Vecs; ++v) acc[i][v] = fb(0.0f);
    for (std::size_t k = 0; k < n; k += fb::size) {
        fb xv[Vecs];
        for (int v = 0; v < Vecs; ++v) xv[v] = fb::load_aligned(xs[v] + k);
        for (int i = 0; i < Rows; ++i) {
            const fb wv = fb::load_aligned(rows + static_cast<std::size_t>(i) * row_stride + k);
            for (int v = 0; v < Vecs; ++v) acc[i][v] = xsimd::fma(wv, xv[v], acc[i][v]);
        }
    }
    for (int i = 0; i < Rows; ++i)
        for (int v = 0; v < Vecs; ++v) out[i][v] = xsimd::hadd(acc[i][v]);
}

#if XSIMD_WITH_AVX2
/// The dense product on x86: two 8-row tiles decoded into one 16-row fp32 tile, packed k-major and multiplied
/// with the whole batch by the register-blocked panel kernel of the scalar-quantized schemes
/// (kernels/dequantized_tile_kernel.hpp). xs: batch x stride scaled activations, stride a multiple of 8.
inline void dense_product_panels(const VqMatrix& w, const VqDecodedBooks& books, ConstMatrixView x, const aligned_vector<float>& xs,
                                 std::size_t stride, MatrixView y) {
    constexpr std::size_t rows = kernels::dequantized_tile_rows;
    static_assert(rows == 2 * vq_row_tile, "a panel holds two VQ tiles");
    const std::size_t batch = x.rows, tiles = w.tiles();
    const std::size_t scratch_floats = 2 * rows * stride + batch * rows;
    aligned_vector<float> scratch(static_cast<std::size_t>(num_threads()) * scratch_floats, 0.0f);  // tile padding stays zero
    parallel_for_ranges(tiles, 2, [&](std::size_t t_begin, std::size_t t_end) {
        float* decoded = scratch.data() + static_cast<std::size_t>(omp_get_thread_num()) * scratch_floats;
        float* panel = decoded + rows * stride;
        float* out = panel + rows * stride;
        for (std::size_t tile = t_begin; tile < t_end; tile += 2) {
            decode_tile(w, books, tile, decoded, stride);
            if (tile + 1 < tiles) decode_tile(w, books, tile + 1, decoded + vq_row_tile * stride, stride);
            else std::fill(decoded + vq_row_tile * stride, decoded + rows * stride, 0.0f);
            kernels::detail::pack_k_major(decoded, stride, panel);
            kernels::panel_times_vectors(panel, stride, xs.data(), stride, batch, out);
            const std::size_t r0 = tile * vq_row_tile, nr = std::min(rows, w.rows - r0);
            for (std::size_t n = 0; n < batch; ++n)
                for (std::size_t i = 0; i < nr; ++i)
                    y(n, r0 + i) = to_float(w.row_scales[r0 + i]) * out[n * rows + i] + outlier_dot(w, r0 + i, x, n);
        }
    });
}
#endif

template <class Arch>
void dense_product(const VqMatrix& w, ConstMatrixView x, MatrixView y) {
    using fb = xsimd::batch<float, Arch>;
    const VqDecodedBooks books = decode_books(w);
    // Rows of the decoded tile and of the activations start on batch boundaries (aligned loads).
    const std::size_t pc = w.padded_cols();
    const std::size_t stride = (pc + fb::size - 1) / fb::size * fb::size;
    aligned_vector<float> xs(x.rows * stride, 0.0f);
    {
        const aligned_vector<float> packed = scaled_activations(w, x);
        for (std::size_t n = 0; n < x.rows; ++n) std::copy(packed.begin() + static_cast<std::ptrdiff_t>(n * pc),
                                                           packed.begin() + static_cast<std::ptrdiff_t>((n + 1) * pc), xs.begin() + static_cast<std::ptrdiff_t>(n * stride));
    }
#if XSIMD_WITH_AVX2
    if constexpr (kernels::has_x86_kernels<Arch>) {
        // 8-float strides for the panel kernel even when Arch's batches are wider (AVX-512).
        if (stride % 8 == 0) return dense_product_panels(w, books, x, xs, stride, y);
    }
#endif
    constexpr int row_block = 4, vec_block = 2;
    parallel_for_ranges(w.tiles(), 1, [&](std::size_t t_begin, std::size_t t_end) {
        aligned_vector<float> decoded(vq_row_tile * stride, 0.0f);  // the padding past padded_cols stays zero
        for (std::size_t tile = t_begin; tile < t_end; ++tile) {
            decode_tile(w, books, tile, decoded.data(), stride);
            const std::size_t r0 = tile * vq_row_tile, nr = std::min(vq_row_tile, w.rows - r0);
            for (std::size_t i0 = 0; i0 < vq_row_tile; i0 += row_block) {
                std::size_t n = 0;
                auto emit = [&]<int Vecs>(std::size_t n0) {
                    const float* xv[Vecs];
                    for (int v = 0; v < Vecs; ++v) xv[v] = xs.data() + (n0 + static_cast<std::size_t>(v)) * stride;
                    float out[row_block][Vecs];
                    dense_micro<Arch, row_block, Vecs>(decoded.data() + i0 * stride, xv, stride, stride, out);
                    for (int i = 0; i < row_block; ++i) {
                        const std::size_t r = i0 + static_cast<std::size_t>(i);
                        if (r >= nr) break;
                        for (int v = 0; v < Vecs; ++v)
                            y(n0 + static_cast<std::size_t>(v), r0 + r) =
                                to_float(w.row_scales[r0 + r]) * out[i][v] + outlier_dot(w, r0 + r, x, n0 + static_cast<std::size_t>(v));
                    }
                };
                for (; n + vec_block <= x.rows; n += vec_block) emit.template operator()<vec_block>(n);
                for (; n < x.rows; ++n) emit.template operator()<1>(n);
            }
        }
    });
}

template <class Arch>
void run_vq_product(const VqMatrix& w, ConstMatrixView x, MatrixView y, VqPath path) {
    if (x.rows == 0) return;
    if (path == VqPath::automatic) path = x.rows >= vq_dense_min_batch(w.shape.books) ? VqPath::dense : VqPath::scalar_lookup;
    if (path == VqPath::dense) dense_product<Arch>(w, x, y);
    else lookup_product<Arch>(w, x, y, path == VqPath::gather);
}

inline void check_vq_matrix(const VqMatrix& w, const char* what) {
    if (w.rows == 0 || w.cols == 0 || w.shape.dim == 0 || w.shape.books == 0 || w.row_scales.size() != w.rows ||
        w.col_scales.size() != w.cols || w.codebooks.size() != w.shape.books * vq_codebook_entries * w.shape.dim ||
        w.codes.size() != w.tiles() * vq_row_tile * w.positions() * w.shape.books || w.outlier_row_ptr.size() != w.rows + 1 ||
        w.outlier_row_ptr.back() != w.outlier_col.size() || w.outlier_value.size() != w.outlier_col.size())
        throw shape_error(std::string(what) + ": VQ matrix buffers do not match its shape " + std::to_string(w.rows) + "x" +
                          std::to_string(w.cols));
}

}  // namespace kernels

/// Y = X W^T on the instruction set Arch. X: batch x cols, Y: batch x rows.
template <XsimdArch Arch>
void vq_gemm(Arch, const VqMatrix& w, ConstMatrixView x, MatrixView y, VqPath path = VqPath::automatic) {
    kernels::check_vq_matrix(w, "qsafe::vq_gemm");
    if (x.cols != w.cols || y.cols != w.rows || x.rows != y.rows)
        throw shape_error("qsafe::vq_gemm: X is " + std::to_string(x.rows) + "x" + std::to_string(x.cols) + ", W is " +
                          std::to_string(w.rows) + "x" + std::to_string(w.cols) + ", Y is " + std::to_string(y.rows) + "x" +
                          std::to_string(y.cols));
    kernels::run_vq_product<Arch>(w, x, y, path);
}

inline void vq_gemm(const VqMatrix& w, ConstMatrixView x, MatrixView y, VqPath path = VqPath::automatic) {
    vq_gemm(xsimd::default_arch{}, w, x, y, path);
}

/// y = W x on the instruction set Arch. x: cols entries, y: rows entries.
template <XsimdArch Arch>
void vq_gemv(Arch, const VqMatrix& w, std::span<const float> x, std::span<float> y, VqPath path = VqPath::automatic) {
    kernels::check_vq_matrix(w, "qsafe::vq_gemv");
    if (x.size() != w.cols || y.size() != w.rows)
        throw shape_error("qsafe::vq_gemv: W is " + std::to_string(w.rows) + "x" + std::to_string(w.cols) + ", x has " +
                          std::to_string(x.size()) + " entries, y has " + std::to_string(y.size()));
    kernels::run_vq_product<Arch>(w, ConstMatrixView(x.data(), 1, w.cols), MatrixView(y.data(), 1, w.rows), path);
}

inline void vq_gemv(const VqMatrix& w, std::span<const float> x, std::span<float> y, VqPath path = VqPath::automatic) {
    vq_gemv(xsimd::default_arch{}, w, x, y, path);
}

}  // namespace qsafe
