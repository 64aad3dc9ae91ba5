#pragma once
// Integer kernel for uniform grids on x86 (AVX2 / AVX-512BW): a tile of RowTile weight rows times
// BatchTile activation vectors. Per 32-code chunk each row's codes are decoded once (shift + mask per
// plane, kernels/arch/x86_int8.hpp) and dotted with every activation vector of the tile (maddubs + madd, or
// vpdpbusd); the int32 sums are scaled by the chunk's activation scale into a per-group float accumulator,
// which is scaled by the group's weight scale at the end of the group. The zero point enters once per row:
//     y = sum_g s_g * (sum_{c in g} d_c * sum (q - o) x_q  -  (z_g - o) * sum_{c in g} d_c * sum x_q)
// (o = 128 for 8-bit codes, which are used signed, else 0).
#include <algorithm>
#include <cstddef>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/kernels/activation_buffers.hpp"
#include "qsafe/kernels/arch/x86_int8.hpp"

namespace qsafe::kernels {

#if XSIMD_WITH_AVX2
namespace detail {

/// sum_g s_g * (z_g - o) * group_sums[g] for row r: the zero-point (and 8-bit offset) term.
template <class Arch, QuantScheme S>
float int8_zero_term(const QuantizedMatrix<S>& w, std::size_t r, const float* group_sums) noexcept {
    using x86::f8;
    constexpr float offset = static_cast<float>(x86::int8_code_offset<S::bits>);
    constexpr float symmetric_zero = static_cast<float>(S::levels / 2);
    if constexpr (!S::asymmetric && S::levels / 2 == x86::int8_code_offset<S::bits>) return 0.0f;
    const std::size_t groups = w.groups_per_row;
    const auto* scales = w.scales.data() + r * groups;
    f8 acc(0.0f);
    std::size_t g = 0;
    for (; g + f8::size <= groups; g += f8::size) {
        f8 zero(symmetric_zero);
        if constexpr (S::asymmetric) zero = x86::load_u8x8(w.zeros.data() + r * groups + g);
        acc = xsimd::fma(x86::load_scales8(scales + g) * (zero - f8(offset)), f8::load_unaligned(group_sums + g), acc);
    }
    float sum = xsimd::hadd(acc);
    for (; g < groups; ++g) {
        const float zero = S::asymmetric ? static_cast<float>(w.zero_point(r, g)) : symmetric_zero;
        sum += x86::load_scale(scales[g]) * (zero - offset) * group_sums[g];
    }
    return sum;
}

}  // namespace detail

/// y(n0 + n, r0 + r) = row (r0 + r) . activation (n0 + n), without outliers, for r < RowTile, n < BatchTile.
template <class Arch, QuantScheme S, int RowTile, int BatchTile>
void int8_tile(const QuantizedMatrix<S>& w, std::size_t r0, const Int8Activations& a, std::size_t n0,
               MatrixView y) noexcept {
    using x86::f8;
    constexpr int bits = S::bits;
    constexpr PlaneSplit split = plane_split(bits);
    constexpr std::size_t low_step = x86::chunk_plane_bytes(split.low_bits);
    constexpr std::size_t high_step = x86::chunk_plane_bytes(split.high_bits);
    const std::size_t chunks = a.chunks;
    const std::size_t full_chunks = w.padded_cols / chunk_codes;
    const std::size_t per_group = a.chunks_per_group;
    const std::size_t groups = w.groups_per_row;

    const std::uint8_t* low[RowTile];
    const std::uint8_t* high[RowTile];
    for (int r = 0; r < RowTile; ++r) {
        low[r] = w.row_codes(r0 + static_cast<std::size_t>(r));
        high[r] = low[r] + w.padded_cols * static_cast<std::size_t>(split.low_bits) / 8;
    }

    f8 acc[RowTile][BatchTile];
    for (auto& row : acc)
        for (auto& v : row) v = f8(0.0f);

    if constexpr (!S::per_channel && S::group_size == chunk_codes) {
        // One chunk per group: fold weight and activation scales into one factor per chunk, computed eight
        // chunks at a time and broadcast from the stack (a load, not an ALU op) inside the chunk loop.
        for (std::size_t c0 = 0; c0 < chunks; c0 += f8::size) {
            const std::size_t count = std::min<std::size_t>(f8::size, chunks - c0);
            alignas(32) float factor[RowTile][BatchTile][f8::size];
            for (int r = 0; r < RowTile; ++r) {
                const auto* scales = w.scales.data() + (r0 + static_cast<std::size_t>(r)) * groups + c0;
                f8 s;
                if (count == f8::size) {
                    s = x86::load_scales8(scales);
                } else {
                    alignas(32) float tail[f8::size] = {};
                    for (std::size_t k = 0; k < count; ++k) tail[k] = x86::load_scale(scales[k]);
                    s = f8::load_aligned(tail);
                }
                for (int n = 0; n < BatchTile; ++n) {
                    const float* d = &a.d[(n0 + static_cast<std::size_t>(n)) * chunks + c0];
                    f8 dv;
                    if (count == f8::size) {
                        dv = f8::load_unaligned(d);
                    } else {
                        alignas(32) float tail[f8::size] = {};
                        std::copy(d, d + count, tail);
                        dv = f8::load_aligned(tail);
                    }
                    (s * dv).store_aligned(factor[r][n]);
                }
            }
            auto accumulate = [&](std::size_t c, int r, __m256i q) {
                for (int n = 0; n < BatchTile; ++n) {
                    const __m256i xq = x86::load_bytes(a.chunk(n0 + static_cast<std::size_t>(n), c));
                    acc[r][n] = xsimd::fma(x86::dot_chunk<bits>(q, xq), f8(factor[r][n][c - c0]), acc[r][n]);
                }
            };
            const std::size_t c_full = std::min(c0 + count, full_chunks);
            for (std::size_t c = c0; c < c_full; ++c)
                for (int r = 0; r < RowTile; ++r)
                    accumulate(c, r, x86::decode_chunk<bits>(low[r] + c * low_step, high[r] + c * high_step));
            if (c0 + count > full_chunks)
                for (int r = 0; r < RowTile; ++r)
                    accumulate(full_chunks, r,
                               x86::decode_half_chunk<bits>(low[r] + full_chunks * low_step,
                                                            high[r] + full_chunks * high_step));
        }
    } else {
        for (std::size_t g = 0; g < groups; ++g) {
            const std::size_t c_begin = g * per_group;
            const std::size_t c_end = std::min(c_begin + per_group, chunks);
            f8 part[RowTile][BatchTile];
            for (auto& row : part)
                for (auto& v : row) v = f8(0.0f);
            auto accumulate = [&](std::size_t c, int r, __m256i q) {
                for (int n = 0; n < BatchTile; ++n) {
                    const std::size_t nn = n0 + static_cast<std::size_t>(n);
                    const __m256i xq = x86::load_bytes(a.chunk(nn, c));
                    part[r][n] = xsimd::fma(x86::dot_chunk<bits>(q, xq), f8(a.scale(nn, c)), part[r][n]);
                }
            };
            const std::size_t c_full = std::min(c_end, full_chunks);
            for (std::size_t c = c_begin; c < c_full; ++c)
                for (int r = 0; r < RowTile; ++r)
                    accumulate(c, r, x86::decode_chunk<bits>(low[r] + c * low_step, high[r] + c * high_step));
            if (c_end > full_chunks)  // last chunk of a row with an odd number of units
                for (int r = 0; r < RowTile; ++r)
                    accumulate(full_chunks, r,
                               x86::decode_half_chunk<bits>(low[r] + full_chunks * low_step,
                                                            high[r] + full_chunks * high_step));
            for (int r = 0; r < RowTile; ++r) {
                const f8 s(x86::load_scale(w.scales[(r0 + static_cast<std::size_t>(r)) * groups + g]));
                for (int n = 0; n < BatchTile; ++n) acc[r][n] = xsimd::fma(s, part[r][n], acc[r][n]);
            }
        }
    }
    for (int r = 0; r < RowTile; ++r)
        for (int n = 0; n < BatchTile; ++n) {
            const std::size_t rr = r0 + static_cast<std::size_t>(r), nn = n0 + static_cast<std::size_t>(n);
            y(nn, rr) = xsimd::hadd(acc[r][n]) - detail::int8_zero_term<Arch>(w, rr, a.sums(nn));
        }
}
#endif  // XSIMD_WITH_AVX2

}  // namespace qsafe::kernels
