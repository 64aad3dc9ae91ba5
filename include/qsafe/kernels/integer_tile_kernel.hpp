#pragma once
// Integer kernel for uniform grids on x86 (AVX2 / AVX-512BW): a tile of RowTile weight rows times
// BatchTile activation vectors quantized per 32-chunk to int8 or int16 (kernels/activation_buffers.hpp).
// Per chunk each row's codes are decoded once (shift + mask per plane, kernels/arch/x86_intrinsics.hpp),
// made signed (q - z, the group's zero point, for fewer than 8 bits; q - 128 for 8 bits) and dotted with
// every activation vector of the tile (int8: maddubs + madd or vpdpbusd; int16: the codes widened once,
// then madd or vpdpwssd); the int32 sums, converted to float, are multiplied by (weight scale of the
// chunk's group x activation scale of the chunk) into one accumulator per row and vector:
//     y = sum_c s_g(c) * d_c * sum (q - z) x_q
// 8-bit codes span 0..255, so q - z does not fit a signed byte; their zero point enters once per row:
//     y = sum_c s_g(c) * d_c * sum (q - 128) x_q  -  sum_g s_g (z_g - 128) * sum_{c in g} d_c * sum x_q
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/kernels/activation_buffers.hpp"
#include "qsafe/kernels/arch/x86_intrinsics.hpp"

namespace qsafe::kernels {

#if XSIMD_WITH_AVX2
namespace detail {

/// The zero-point term of row r for every vector of the batch tile, for codes used in the integer product
/// as q - Offset: out[n] = sum_g s_g * (z_g - Offset) * group_sums(n0 + n)[g], each group's coefficient
/// computed once per row and tile.
template <class Arch, QuantScheme S, int Offset, int BatchTile, class Code>
void code_zero_terms(const QuantizedMatrix<S>& w, std::size_t r, const QuantizedActivations<Code>& a, std::size_t n0,
                     float (&out)[BatchTile]) noexcept {
    using x86::f8;
    constexpr float offset = static_cast<float>(Offset);
    constexpr float symmetric_zero = static_cast<float>(S::levels / 2);
    const std::size_t groups = w.groups_per_row;
    const auto* scales = w.scales.data() + r * groups;
    f8 acc[BatchTile];
    for (auto& v : acc) v = f8(0.0f);
    std::size_t g = 0;
    for (; g + f8::size <= groups; g += f8::size) {
        f8 zero(symmetric_zero);
        if constexpr (S::asymmetric) zero = x86::load_u8x8(w.zeros.data() + r * groups + g);
        const f8 coefficient = x86::load_scales8(scales + g) * (zero - f8(offset));
        for (int n = 0; n < BatchTile; ++n)
            acc[n] = xsimd::fma(coefficient, f8::load_unaligned(a.sums(n0 + static_cast<std::size_t>(n)) + g), acc[n]);
    }
    for (int n = 0; n < BatchTile; ++n) out[n] = xsimd::hadd(acc[n]);
    for (; g < groups; ++g) {
        const float zero = S::asymmetric ? static_cast<float>(w.zero_point(r, g)) : symmetric_zero;
        const float coefficient = x86::load_scale(scales[g]) * (zero - offset);
        for (int n = 0; n < BatchTile; ++n) out[n] += coefficient * a.sums(n0 + static_cast<std::size_t>(n))[g];
    }
}

/// Which weight group each 32-code chunk of a row belongs to, and the scales of eight consecutive chunks as
/// one vector. Chunks per group are 1, 2 or 4 for the usual group sizes (32, 64, 128), or the whole row per
/// channel: then chunk c's group is c >> shift and the eight scales of a window are one permute of a load.
template <QuantScheme S>
struct ChunkGroups {
    std::size_t per_group;
    std::size_t groups;
    bool one_group;
    bool shiftable;
    int shift;
    __m256i lane_group;  // lane k's offset from the window's first group to its chunk's group

    ChunkGroups(const QuantizedMatrix<S>& w, std::size_t chunks_per_group) noexcept
        : per_group(chunks_per_group),
          groups(w.groups_per_row),
          one_group(groups == 1),
          shiftable(one_group || std::has_single_bit(per_group)),
          shift(one_group || !shiftable ? 0 : std::countr_zero(per_group)),
          lane_group(one_group ? _mm256_setzero_si256()
                               : _mm256_srli_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), shift)) {}

    std::size_t of(std::size_t c) const noexcept { return one_group ? 0 : shiftable ? c >> shift : c / per_group; }

    /// The weight scales of chunks c0 .. c0 + count - 1 (count <= 8) of `row`, lanes beyond count zero or
    /// repeated. Built in registers (scalar stores then a vector load would stall store forwarding on every
    /// tile); near the end of the scale buffer, one scale at a time.
    x86::f8 scales8(const QuantizedMatrix<S>& w, std::size_t row, std::size_t c0, std::size_t count) const noexcept {
        const std::size_t first_scale = row * groups + of(c0);
        if (shiftable && first_scale + x86::f8::size <= w.scales.size())
            return _mm256_permutevar8x32_ps(x86::load_scales8(w.scales.data() + first_scale), lane_group);
        alignas(32) float chunk_scale[x86::f8::size] = {};
        for (std::size_t k = 0; k < count; ++k) chunk_scale[k] = x86::load_scale(w.scales[first_scale + of(c0 + k) - of(c0)]);
        return x86::f8::load_aligned(chunk_scale);
    }
};

}  // namespace detail

/// y(n0 + n, r0 + r) = row (r0 + r) . activation (n0 + n), without outliers, for r < RowTile, n < BatchTile.
/// Chunks are taken eight at a time: for each the weight scale of its group times the activation scale of
/// the chunk is one factor (computed as vectors and broadcast from the stack inside the chunk loop, a load
/// rather than an ALU op), so the accumulators are the only registers held across chunks: RowTile x
/// BatchTile of them, which for the 2 x 4 tile leaves room for codes and activations in AVX2's sixteen.
template <class Arch, QuantScheme S, int RowTile, int BatchTile, class Code>
void integer_tile(const QuantizedMatrix<S>& w, std::size_t r0, const QuantizedActivations<Code>& a, std::size_t n0,
                  MatrixView y) noexcept {
    using x86::f8;
    constexpr int bits = S::bits;
    const std::size_t chunks = a.chunks;
    const std::size_t full_chunks = w.padded_cols / chunk_codes;
    const std::size_t per_group = a.chunks_per_group;

    x86::RowChunks<bits> rows[RowTile];
    for (int r = 0; r < RowTile; ++r) rows[r] = x86::RowChunks<bits>(w.row_codes(r0 + static_cast<std::size_t>(r)), w.padded_cols);

    f8 acc[RowTile][BatchTile];
    for (auto& row : acc)
        for (auto& v : row) v = f8(0.0f);

    const detail::ChunkGroups<S> chunk_groups(w, per_group);
    for (std::size_t c0 = 0; c0 < chunks; c0 += f8::size) {
        const std::size_t count = std::min<std::size_t>(f8::size, chunks - c0);
        alignas(32) float factor[RowTile][BatchTile][f8::size];
        std::uint8_t zero[RowTile][f8::size];
        for (int r = 0; r < RowTile; ++r) {
            const std::size_t row = r0 + static_cast<std::size_t>(r);
            const f8 s = chunk_groups.scales8(w, row, c0, count);
            for (std::size_t k = 0; k < count; ++k)
                zero[r][k] = static_cast<std::uint8_t>(
                    S::asymmetric ? w.zero_point(row, chunk_groups.of(c0 + k)) : S::levels / 2);
            for (int n = 0; n < BatchTile; ++n)
                (s * f8::load_unaligned(&a.d[(n0 + static_cast<std::size_t>(n)) * chunks + c0])).store_aligned(factor[r][n]);
        }
        auto accumulate = [&](std::size_t c, int r, __m256i q) {
            const __m256i wq = x86::signed_codes<bits>(q, zero[r][c - c0]);
            if constexpr (std::is_same_v<Code, std::int16_t>) {
                const x86::WideSignedCodes wide = x86::widen_signed_codes(wq);
                for (int n = 0; n < BatchTile; ++n)
                    acc[r][n] = xsimd::fma(x86::dot_wide_chunk(wide, a.chunk(n0 + static_cast<std::size_t>(n), c)),
                                           f8(factor[r][n][c - c0]), acc[r][n]);
            } else {
                for (int n = 0; n < BatchTile; ++n) {
                    const __m256i xq = x86::load_bytes(a.chunk(n0 + static_cast<std::size_t>(n), c));
                    acc[r][n] = xsimd::fma(x86::dot_signed_chunk(wq, xq), f8(factor[r][n][c - c0]), acc[r][n]);
                }
            }
        };
        const std::size_t c_full = std::min(c0 + count, full_chunks);
        for (std::size_t c = c0; c < c_full; ++c)
            for (int r = 0; r < RowTile; ++r)
                accumulate(c, r, rows[r].decode(c));
        if (c0 + count > full_chunks)  // last chunk of a row with an odd number of 16-code units
            for (int r = 0; r < RowTile; ++r)
                accumulate(full_chunks, r, rows[r].decode_half(full_chunks));
    }
    for (int r = 0; r < RowTile; ++r) {
        const std::size_t rr = r0 + static_cast<std::size_t>(r);
        float zero_terms[BatchTile] = {};
        if constexpr (S::bits == 8 && (S::asymmetric || S::levels / 2 != x86::int8_code_offset<8>))
            detail::code_zero_terms<Arch, S, x86::int8_code_offset<8>>(w, rr, a, n0, zero_terms);
        for (int n = 0; n < BatchTile; ++n) y(n0 + static_cast<std::size_t>(n), rr) = xsimd::hadd(acc[r][n]) - zero_terms[n];
    }
}
#endif  // XSIMD_WITH_AVX2

}  // namespace qsafe::kernels
