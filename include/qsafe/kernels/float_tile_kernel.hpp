#pragma once
// Exact (fp32 activation) kernel on x86 for every codebook: the same chunk decoding and tiling as the
// integer kernel, then codes -> levels (q - z for uniform grids; a table lookup for NF4, FP4, learned and
// user tables: one permute for <= 8 entries, two permutes + blend for 16, a gather beyond) and fma with the
// permuted fp32 activations; per-group accumulators are scaled by the group scale at the end of the group.
// Compiled for AVX-512 (xsimd::avx512bw), the same algorithm runs on 512-bit vectors (float_tile_512).
#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/kernels/activation_buffers.hpp"
#include "qsafe/kernels/arch/x86_intrinsics.hpp"

namespace qsafe::kernels {

#if XSIMD_WITH_AVX2
namespace detail {

inline constexpr std::size_t max_table_levels = 256;

/// Level values of one group of one row, held the way the lookup wants them.
template <class Arch, QuantScheme S>
struct GroupLevels {
    static constexpr int levels = S::levels;
    x86::f8 offset = x86::f8(0.0f);                 // uniform grids: the zero point
    x86::f8 low = x86::f8(0.0f), high = x86::f8(0.0f);        // tables of <= 16 entries
    alignas(32) float table[S::uniform ? 1 : levels];  // larger tables (gathered)

    void load_table(const float* values) noexcept {
        if constexpr (levels <= 8) {
            alignas(32) float padded[8] = {};
            std::copy(values, values + levels, padded);
            low = x86::f8::load_aligned(padded);
        } else if constexpr (levels == 16) {
            low = x86::f8::load_unaligned(values);
            high = x86::f8::load_unaligned(values + 8);
        } else {
            std::copy(values, values + levels, table);
        }
    }
    void load_fp16_table(const fp16_t* values) noexcept {
        alignas(32) float f[levels];
        for (int i = 0; i + 8 <= levels; i += 8) x86::load_fp16x8(values + i).store_aligned(f + i);
        for (int i = levels / 8 * 8; i < levels; ++i) f[i] = x86::fp16_to_float(values[i]);
        load_table(f);
    }
    x86::f8 operator()(__m256i codes) const noexcept {
        if constexpr (S::uniform) return x86::to_float(codes) - offset;
        else if constexpr (levels <= 8) return x86::lookup8(low, codes);
        else if constexpr (levels == 16) return x86::lookup16(low, high, codes);
        else return x86::lookup_gather(table, codes);
    }
};

template <class Arch, QuantScheme S>
void prepare_group_levels(const QuantizedMatrix<S>& w, std::size_t r, std::size_t g, GroupLevels<Arch, S>& out) noexcept {
    if constexpr (S::uniform) {
        out.offset = x86::f8(S::asymmetric ? static_cast<float>(w.zero_point(r, g)) : static_cast<float>(S::levels / 2));
    } else if constexpr (qsafe::detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group) {
        out.load_fp16_table(w.codebook_for(r, g));
    }
}

/// The tile's row decoders, and each row's levels where one table serves the whole row (fixed tables,
/// per-tensor learned codebooks; per-group levels are prepared group by group).
template <QuantScheme S, int RowTile, class Levels>
void start_rows(const QuantizedMatrix<S>& w, std::size_t r0, x86::RowChunks<S::bits> (&rows)[RowTile], Levels (&levels)[RowTile]) noexcept {
    for (int r = 0; r < RowTile; ++r) {
        rows[r] = x86::RowChunks<S::bits>(w.row_codes(r0 + static_cast<std::size_t>(r)), w.padded_cols);
        if constexpr (S::table) {
            levels[r].load_table(S::codebook::values.data());
        } else if constexpr (S::learned && qsafe::detail::codebook_scope<typename S::codebook>() != CodebookScope::per_group) {
            levels[r].load_fp16_table(w.codebook.data());
        }
    }
}

}  // namespace detail

#if defined(__AVX512BW__) && defined(__AVX512VL__)
namespace detail {
/// The 512-bit form of GroupLevels: 16 levels per instruction; tables of up to 16 entries in one permute,
/// up to 32 in a two-source permute, larger ones gathered.
template <QuantScheme S>
struct GroupLevels512 {
    static constexpr int levels = S::levels;
    __m512 offset = _mm512_setzero_ps();
    __m512 low = _mm512_setzero_ps(), high = _mm512_setzero_ps();
    alignas(64) float table[S::uniform ? 1 : levels];

    void load_table(const float* values) noexcept {
        if constexpr (levels <= 32) {
            alignas(64) float padded[32] = {};
            std::copy(values, values + levels, padded);
            low = _mm512_load_ps(padded);
            high = _mm512_load_ps(padded + 16);
        } else {
            std::copy(values, values + levels, table);
        }
    }
    void load_fp16_table(const fp16_t* values) noexcept {
        alignas(64) float f[levels];
        for (int i = 0; i < levels; ++i) f[i] = x86::fp16_to_float(values[i]);
        load_table(f);
    }
    __m512 operator()(__m512i codes) const noexcept {
        if constexpr (S::uniform) return _mm512_sub_ps(_mm512_cvtepi32_ps(codes), offset);
        else if constexpr (levels <= 16) return _mm512_permutexvar_ps(codes, low);
        else if constexpr (levels <= 32) return _mm512_permutex2var_ps(low, codes, high);
        else return _mm512_i32gather_ps(codes, table, 4);
    }
};

template <QuantScheme S>
void prepare_group_levels(const QuantizedMatrix<S>& w, std::size_t r, std::size_t g, GroupLevels512<S>& out) noexcept {
    if constexpr (S::uniform) {
        out.offset = _mm512_set1_ps(S::asymmetric ? static_cast<float>(w.zero_point(r, g)) : static_cast<float>(S::levels / 2));
    } else if constexpr (qsafe::detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group) {
        out.load_fp16_table(w.codebook_for(r, g));
    }
}

/// float_tile on 512-bit vectors (AVX-512 units): a decoded 32-code chunk becomes two vectors of 16 levels
/// instead of four of 8 — half the conversions, lookups and FMAs per weight. The activations' chunk order is
/// the same (register bytes 0-15, then 16-31), so the permuted activations are shared with the 256-bit kernel.
template <QuantScheme S, int RowTile, int BatchTile>
void float_tile_512(const QuantizedMatrix<S>& w, std::size_t r0, const PermutedActivations& a, std::size_t n0,
                    MatrixView y) noexcept {
    constexpr int bits = S::bits;
    constexpr bool per_group_levels =
        S::uniform || (S::learned && qsafe::detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group);
    const std::size_t chunks = a.chunks;
    const std::size_t full_chunks = w.padded_cols / chunk_codes;
    const std::size_t groups = w.groups_per_row;
    const std::size_t per_group = S::per_channel ? chunks : w.group_size / chunk_codes;

    x86::RowChunks<bits> rows[RowTile];
    GroupLevels512<S> levels[RowTile];
    start_rows(w, r0, rows, levels);

    __m512 acc[RowTile][BatchTile];
    for (auto& row : acc)
        for (auto& v : row) v = _mm512_setzero_ps();

    for (std::size_t g = 0; g < groups; ++g) {
        const std::size_t c_begin = g * per_group;
        const std::size_t c_end = std::min(c_begin + per_group, chunks);
        if constexpr (per_group_levels)
            for (int r = 0; r < RowTile; ++r) prepare_group_levels(w, r0 + static_cast<std::size_t>(r), g, levels[r]);
        __m512 part[RowTile][BatchTile];
        for (auto& row : part)
            for (auto& v : row) v = _mm512_setzero_ps();
        auto accumulate = [&](std::size_t c, int r, __m256i q) {
            const __m512 v0 = levels[r](_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q)));
            const __m512 v1 = levels[r](_mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1)));
            for (int n = 0; n < BatchTile; ++n) {
                const float* x = a.chunk(n0 + static_cast<std::size_t>(n), c);
                part[r][n] = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + 16), _mm512_fmadd_ps(v0, _mm512_loadu_ps(x), part[r][n]));
            }
        };
        const std::size_t c_full = std::min(c_end, full_chunks);
        for (std::size_t c = c_begin; c < c_full; ++c)
            for (int r = 0; r < RowTile; ++r) accumulate(c, r, rows[r].decode(c));
        if (c_end > full_chunks)
            for (int r = 0; r < RowTile; ++r) accumulate(full_chunks, r, rows[r].decode_half(full_chunks));
        for (int r = 0; r < RowTile; ++r) {
            const __m512 s = _mm512_set1_ps(x86::load_scale(w.scales[(r0 + static_cast<std::size_t>(r)) * groups + g]));
            for (int n = 0; n < BatchTile; ++n) acc[r][n] = _mm512_fmadd_ps(s, part[r][n], acc[r][n]);
        }
    }
    for (int r = 0; r < RowTile; ++r)
        for (int n = 0; n < BatchTile; ++n)
            y(n0 + static_cast<std::size_t>(n), r0 + static_cast<std::size_t>(r)) = _mm512_reduce_add_ps(acc[r][n]);
}
}  // namespace detail
#endif  // __AVX512BW__ && __AVX512VL__

/// y(n0 + n, r0 + r) = row (r0 + r) . activation (n0 + n), without outliers, fp32 activations.
template <class Arch, QuantScheme S, int RowTile, int BatchTile>
void float_tile(const QuantizedMatrix<S>& w, std::size_t r0, const PermutedActivations& a, std::size_t n0,
                MatrixView y) noexcept {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    if constexpr (std::is_base_of_v<xsimd::avx512bw, Arch>) return detail::float_tile_512<S, RowTile, BatchTile>(w, r0, a, n0, y);
#endif
    using x86::f8;
    constexpr int bits = S::bits;
    constexpr bool per_group_levels =
        S::uniform || (S::learned && qsafe::detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group);
    const std::size_t chunks = a.chunks;
    const std::size_t full_chunks = w.padded_cols / chunk_codes;
    const std::size_t groups = w.groups_per_row;
    const std::size_t per_group = S::per_channel ? chunks : w.group_size / chunk_codes;

    x86::RowChunks<bits> rows[RowTile];
    detail::GroupLevels<Arch, S> levels[RowTile];
    detail::start_rows(w, r0, rows, levels);

    f8 acc[RowTile][BatchTile];
    for (auto& row : acc)
        for (auto& v : row) v = f8(0.0f);

    for (std::size_t g = 0; g < groups; ++g) {
        const std::size_t c_begin = g * per_group;
        const std::size_t c_end = std::min(c_begin + per_group, chunks);
        if constexpr (per_group_levels)
            for (int r = 0; r < RowTile; ++r)
                detail::prepare_group_levels(w, r0 + static_cast<std::size_t>(r), g, levels[r]);
        f8 part[RowTile][BatchTile];
        for (auto& row : part)
            for (auto& v : row) v = f8(0.0f);
        auto accumulate = [&](std::size_t c, int r, __m256i q) {
            const x86::WideCodes wide = x86::widen_codes(q);
            f8 value[4];
            for (int k = 0; k < 4; ++k) value[k] = levels[r](wide.part[k]);
            for (int n = 0; n < BatchTile; ++n) {
                const float* x = a.chunk(n0 + static_cast<std::size_t>(n), c);
                f8 sum = part[r][n];
                for (int k = 0; k < 4; ++k) sum = xsimd::fma(value[k], f8::load_aligned(x + 8 * k), sum);
                part[r][n] = sum;
            }
        };
        const std::size_t c_full = std::min(c_end, full_chunks);
        for (std::size_t c = c_begin; c < c_full; ++c)
            for (int r = 0; r < RowTile; ++r)
                accumulate(c, r, rows[r].decode(c));
        if (c_end > full_chunks)
            for (int r = 0; r < RowTile; ++r)
                accumulate(full_chunks, r, rows[r].decode_half(full_chunks));
        for (int r = 0; r < RowTile; ++r) {
            const f8 s(x86::load_scale(w.scales[(r0 + static_cast<std::size_t>(r)) * groups + g]));
            for (int n = 0; n < BatchTile; ++n) acc[r][n] = xsimd::fma(s, part[r][n], acc[r][n]);
        }
    }
    for (int r = 0; r < RowTile; ++r)
        for (int n = 0; n < BatchTile; ++n)
            y(n0 + static_cast<std::size_t>(n), r0 + static_cast<std::size_t>(r)) = xsimd::hadd(acc[r][n]);
}
#endif  // XSIMD_WITH_AVX2

}  // namespace qsafe::kernels
