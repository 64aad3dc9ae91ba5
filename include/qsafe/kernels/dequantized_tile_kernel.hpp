#pragma once
// Batched products on dequantized row tiles (x86, fp32 activations). The chunk kernels decode a row's codes
// again for every tile of 1-4 activation vectors, which is right for one vector but makes decoding the
// bottleneck of large batches. Here 16 rows are decoded once into an fp32 tile that stays in cache (level
// x scale, in the chunk order of the permuted activations), transposed into a k-major panel, and an
// outer-product kernel (6 vectors x 16 rows: 12 accumulators, per column two weight loads and one broadcast
// per vector; on AVX-512 12 vectors x one 16-float register) multiplies it with every vector of the batch. The product is exact in the same sense as the
// fp32 chunk kernel: the dequantized weights are dequantize()'s values, only the summation order differs.
//
// Each output is one accumulator running over k in the same order whatever the tile it is computed in, so
// an output does not depend on the batch size, on its position in the batch or on the thread count.
#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "qsafe/core/aligned_buffer.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/kernels/activation_buffers.hpp"
#include "qsafe/kernels/arch/x86_intrinsics.hpp"
#include "qsafe/kernels/float_tile_kernel.hpp"

namespace qsafe::kernels {

/// Rows decoded at a time (two 8-float halves of the panel); thread ranges are multiples of it. They are
/// decoded panel_depth (256) columns at a time: 16 KiB for the tile and as much for its panel, in L1.
inline constexpr std::size_t dequantized_tile_rows = 16;

#if XSIMD_WITH_AVX2
namespace detail {

/// Chunks c_begin .. c_end of rows r0 .. r0 + count of w as fp32 (level x group scale) in chunk order,
/// (c_end - c_begin) x 32 floats per row (the padding codes of the last chunk get finite values; their
/// activations are zero).
template <class Arch, QuantScheme S>
void dequantize_row_tile(const QuantizedMatrix<S>& w, std::size_t r0, std::size_t count, std::size_t c_begin, std::size_t c_end,
                         float* out) noexcept {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    constexpr bool wide = std::is_base_of_v<xsimd::avx512bw, Arch>;  // 16 levels per instruction
    using Levels = std::conditional_t<wide, GroupLevels512<S>, GroupLevels<Arch, S>>;
#else
    constexpr bool wide = false;
    using Levels = GroupLevels<Arch, S>;
#endif
    using x86::f8;
    constexpr bool per_group_levels =
        S::uniform || (S::learned && qsafe::detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group);
    const std::size_t full_chunks = w.padded_cols / chunk_codes;
    const std::size_t groups = w.groups_per_row;
    const std::size_t per_group = S::per_channel ? c_end : w.group_size / chunk_codes;
    const std::size_t width = (c_end - c_begin) * chunk_codes;
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t r = r0 + i;
        const x86::RowChunks<S::bits> row(w.row_codes(r), w.padded_cols);
        Levels levels;
        if constexpr (S::table) levels.load_table(S::codebook::values.data());
        else if constexpr (S::learned && !per_group_levels) levels.load_fp16_table(w.codebook.data());
        float* dst = out + i * width - c_begin * chunk_codes;  // chunk c lands at dst + c * 32
        auto store = [&](std::size_t c, __m256i q, float scale) {
            float* d = dst + c * chunk_codes;
            if constexpr (wide) {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
                const __m512 s = _mm512_set1_ps(scale);
                _mm512_store_ps(d, _mm512_mul_ps(levels(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q))), s));
                _mm512_store_ps(d + 16, _mm512_mul_ps(levels(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1))), s));
#endif
            } else {
                const x86::WideCodes parts = x86::widen_codes(q);
                for (int k = 0; k < 4; ++k) (levels(parts.part[k]) * f8(scale)).store_aligned(d + 8 * static_cast<std::size_t>(k));
            }
        };
        for (std::size_t g = S::per_channel ? 0 : c_begin / per_group; g < groups && g * per_group < c_end; ++g) {
            const std::size_t g_begin = std::max(g * per_group, c_begin);
            const std::size_t g_end = std::min(g * per_group + per_group, c_end);
            if constexpr (per_group_levels) prepare_group_levels(w, r, g, levels);
            const float scale = x86::load_scale(w.scales[r * groups + g]);
            const std::size_t c_full = std::min(g_end, full_chunks);
            for (std::size_t c = g_begin; c < c_full; ++c) store(c, row.decode(c), scale);
            if (g_end > full_chunks) store(full_chunks, row.decode_half(full_chunks), scale);
        }
    }
}

/// The row-major tile (tile_rows rows of `width` floats) as a k-major panel: panel[k * 16 + j] = row j, column k.
/// 8 x 8 blocks are transposed in registers.
inline void pack_k_major(const float* tile, std::size_t width, float* panel) noexcept {
    static_assert(dequantized_tile_rows == 16, "the panel holds two 8-row halves");
    for (std::size_t half = 0; half < 2; ++half) {
        const float* src = tile + half * 8 * width;
        for (std::size_t k0 = 0; k0 < width; k0 += 8) {
            __m256 r[8];
            for (std::size_t j = 0; j < 8; ++j) r[j] = _mm256_load_ps(src + j * width + k0);
            x86::transpose8x8(r);
            for (std::size_t i = 0; i < 8; ++i) _mm256_store_ps(panel + (k0 + i) * 16 + half * 8, r[i]);
        }
    }
}

/// acc(n, j) += panel column j . activation n over `depth` columns (from zero when `first`), for Vectors
/// activation vectors and the 16 rows of the panel. acc rows are 16 floats apart. Each output is one fma
/// chain over k in order, the same arithmetic in both forms below (so AVX2 and AVX-512 units agree bit for bit).
template <int Vectors>
void panel_product(const float* panel, std::size_t depth, const float* const* x, bool first, float* acc) noexcept {
#if defined(__AVX512F__)
    // A panel column is one 512-bit register: per column one weight load and one broadcast per vector feed
    // Vectors accumulators (32 registers hold 12 accumulators with room to spare).
    __m512 sum[Vectors];
    for (int n = 0; n < Vectors; ++n) sum[n] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + 16 * n);
    for (std::size_t k = 0; k < depth; ++k) {
        const __m512 w = _mm512_load_ps(panel + k * 16);
        for (int n = 0; n < Vectors; ++n) sum[n] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[n][k]), sum[n]);
    }
    for (int n = 0; n < Vectors; ++n) _mm512_storeu_ps(acc + 16 * n, sum[n]);
#else
    // Per column two weight loads and one broadcast per vector feed 2 x Vectors accumulators.
    using x86::f8;
    f8 sum[Vectors][2];
    for (int n = 0; n < Vectors; ++n) {
        sum[n][0] = first ? f8(0.0f) : f8::load_unaligned(acc + 16 * n);
        sum[n][1] = first ? f8(0.0f) : f8::load_unaligned(acc + 16 * n + 8);
    }
    for (std::size_t k = 0; k < depth; ++k) {
        const f8 w0 = f8::load_aligned(panel + k * 16);
        const f8 w1 = f8::load_aligned(panel + k * 16 + 8);
        for (int n = 0; n < Vectors; ++n) {
            const f8 xv(x[n][k]);
            sum[n][0] = xsimd::fma(w0, xv, sum[n][0]);
            sum[n][1] = xsimd::fma(w1, xv, sum[n][1]);
        }
    }
    for (int n = 0; n < Vectors; ++n) {
        sum[n][0].store_unaligned(acc + 16 * n);
        sum[n][1].store_unaligned(acc + 16 * n + 8);
    }
#endif
}

#if defined(__AVX512F__)
inline constexpr int panel_vectors = 12;  // 12 accumulators: enough FMAs in flight for two 512-bit FMA ports
#else
inline constexpr int panel_vectors = 6;  // 12 accumulators + 2 weights + 1 broadcast: 15 of 16 registers
#endif
/// Columns per pass over the batch: the panel's 16 x 256 floats (16 KiB) stay in L1 and 64 vectors' 256
/// columns (64 KiB) in L2 however wide the matrix.
inline constexpr std::size_t panel_depth = 256;

template <int Vectors>
void panel_product_tail(int vectors, const float* panel, std::size_t depth, const float* const* x, bool first,
                        float* acc) noexcept {
    if constexpr (Vectors > 0) {
        if (vectors == Vectors) return panel_product<Vectors>(panel, depth, x, first, acc);
        panel_product_tail<Vectors - 1>(vectors, panel, depth, x, first, acc);
    }
}

}  // namespace detail

/// out(n, j) (+)= sum over k < depth of panel(k, j) * x_n[k] for the 16 rows of a k-major panel of at most
/// panel_depth columns and `batch` vectors x_n = x + n * ldx (32-byte aligned); from zero when `first`.
/// out is batch x 16.
inline void panel_block_times_vectors(const float* panel, std::size_t depth, const float* x, std::size_t ldx, std::size_t batch,
                                      bool first, float* out) noexcept {
    // Groups of panel_vectors (6, or 12 on AVX-512); a short tail is merged with the last full group and split
    // in two halves (64 = 9 x 6 + 5 + 5, not 10 x 6 + 4): a group of 4 has only 8 accumulators, too few to
    // hide the FMA latency. Which group an output falls in does not change its arithmetic.
    constexpr std::size_t full = detail::panel_vectors;
    const std::size_t tail = batch % full;
    const std::size_t even_end = (tail != 0 && tail < full - 1 && batch > full) ? batch - tail - full : batch - tail;
    auto group = [&](std::size_t n, std::size_t vectors) {
        const float* xs[full];
        for (std::size_t v = 0; v < vectors; ++v) xs[v] = x + (n + v) * ldx;
        detail::panel_product_tail<detail::panel_vectors>(static_cast<int>(vectors), panel, depth, xs, first,
                                                         out + n * dequantized_tile_rows);
    };
    std::size_t n = 0;
    for (; n < even_end; n += full) group(n, full);
    const std::size_t rest = batch - n;  // 0 .. 5, or 7 .. 10 split in two
    if (rest > full) {
        group(n, (rest + 1) / 2);
        group(n + (rest + 1) / 2, rest / 2);
    } else if (rest > 0) {
        group(n, rest);
    }
}

/// out(n, j) = sum over k < width of panel(k, j) * x_n[k] for a whole k-major panel: panel_depth columns at
/// a time for the whole batch, so each output is one running sum over k in order.
inline void panel_times_vectors(const float* panel, std::size_t width, const float* x, std::size_t ldx, std::size_t batch,
                                float* out) noexcept {
    for (std::size_t k0 = 0; k0 < width; k0 += detail::panel_depth)
        panel_block_times_vectors(panel + k0 * dequantized_tile_rows, std::min(detail::panel_depth, width - k0), x + k0, ldx, batch,
                                  k0 == 0, out);
}

/// Floats of one thread's scratch for a batch of `batch` vectors: a 16 x panel_depth tile, its panel, and
/// the tile's outputs for the whole batch.
inline std::size_t dequantized_tile_floats(std::size_t batch) noexcept {
    return 2 * dequantized_tile_rows * detail::panel_depth + batch * dequantized_tile_rows;
}

/// Rows r_begin .. r_end of Y = X W^T from permuted fp32 activations, 16 rows at a time, each decoded and
/// multiplied panel_depth columns at a time so that the tile and its panel (16 KiB each) stay in L1 and
/// the batch's columns of the block in L2, however wide the matrix; `scratch` holds
/// dequantized_tile_floats(a.batch) floats (32-byte aligned). The running sums are those of
/// panel_times_vectors: every output is one sum over k in order.
template <class Arch, QuantScheme S>
void dequantized_rows(const QuantizedMatrix<S>& w, std::size_t r_begin, std::size_t r_end, const PermutedActivations& a,
                      float* scratch, MatrixView y) noexcept {
    constexpr std::size_t tile_rows = dequantized_tile_rows;
    constexpr std::size_t block_chunks = detail::panel_depth / chunk_codes;
    const std::size_t width = a.chunks * chunk_codes;
    float* tile = scratch;
    float* panel = tile + tile_rows * detail::panel_depth;
    float* out = panel + tile_rows * detail::panel_depth;  // batch x 16
    for (std::size_t t0 = r_begin; t0 < r_end; t0 += tile_rows) {
        const std::size_t count = std::min(tile_rows, r_end - t0);
        for (std::size_t c0 = 0; c0 < a.chunks; c0 += block_chunks) {
            const std::size_t c1 = std::min(c0 + block_chunks, a.chunks);
            const std::size_t depth = (c1 - c0) * chunk_codes;
            detail::dequantize_row_tile<Arch>(w, t0, count, c0, c1, tile);
            std::fill(tile + count * depth, tile + tile_rows * depth, 0.0f);  // rows past the range
            detail::pack_k_major(tile, depth, panel);
            panel_block_times_vectors(panel, depth, a.x.data() + c0 * chunk_codes, width, a.batch, c0 == 0, out);
        }
        for (std::size_t n = 0; n < a.batch; ++n) std::copy(out + n * tile_rows, out + n * tile_rows + count, y.row(n) + t0);
    }
}
#endif  // XSIMD_WITH_AVX2

}  // namespace qsafe::kernels
