#pragma once
// Integer kernel on 512-bit registers for symmetric 4-bit uniform grids — llama.cpp's Q4_0 among them —
// (AVX-512BW; vpdpbusd / vpdpwssd where the unit has VNNI): the 256-bit kernel's product
// (kernels/integer_tile_kernel.hpp) two chunks at a time.
// A pair of chunks is one register of codes in pair order (kernels/chunk_layout.hpp) — for 4 bits one
// broadcast load, a shift and a mask; the activations are stored in the same order, so nothing else is
// permuted. The codes stay unsigned, and the zero point (the grid's midpoint z = 8) enters through the
// activations' chunk sums, eight chunks per vector operation:
//     y = sum_c f_c * sum q x_q  -  z * sum_c f_c * sum x_q,      f_c = s_g(c) * d_c
// Per pair, row and vector that is one dot product, one int32 -> float conversion and one fma with the two
// chunks' factors spread over the lanes: about a third of the 256-bit kernel's instructions per code, which
// is what decoding at batch 1 is bound by once the weights stream at memory speed.
// Chunks outside whole pairs (an odd last chunk, a half chunk) run through 256-bit registers.
// Measured against the 256-bit kernel in the same binary (one thread, 1536 x 576 and 576 x 1536, batch 1, AMD
// EPYC Zen 4; docs/benchmarks.md): 1.8x with int8 activations, 1.35-1.47x with int16. Asymmetric grids (a zero point per group, loaded
// and spread per window of chunks: 0.7-0.9x) and 8-bit codes (a lane shuffle per pair: 0.5-1.0x) were tried
// the same way and were slower than the 256-bit kernel, so they stay there.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/kernels/activation_buffers.hpp"
#include "qsafe/kernels/arch/x86_avx512_intrinsics.hpp"
#include "qsafe/kernels/integer_tile_kernel.hpp"

namespace qsafe::kernels {

/// True when products of scheme S with Code activations run on the pair kernel for Arch.
template <class Arch, QuantScheme S, class Code>
constexpr bool runs_pair_kernel() noexcept {
#if QSAFE_HAS_X86_PAIR_KERNEL
    return std::is_base_of_v<xsimd::avx512bw, Arch> && S::uniform && S::bits == 4 && !S::asymmetric &&
           (std::is_same_v<Code, std::int8_t> || std::is_same_v<Code, std::int16_t>);
#else
    return false;
#endif
}

/// Chunks a product of w stores in pair order: its whole chunks, rounded down to pairs.
template <QuantScheme S>
std::size_t paired_chunk_count(const QuantizedMatrix<S>& w) noexcept {
    return (w.padded_cols / chunk_codes) & ~std::size_t{1};
}

#if QSAFE_HAS_X86_PAIR_KERNEL
/// y(n0 + n, r0 + r) = row (r0 + r) . activation (n0 + n), without outliers, for r < RowTile, n < BatchTile;
/// `a` quantized with paired_chunk_count(w) chunks in pair order.
template <class Arch, QuantScheme S, int RowTile, int BatchTile, class Code>
void paired_integer_tile(const QuantizedMatrix<S>& w, std::size_t r0, const QuantizedActivations<Code>& a,
                         std::size_t n0, MatrixView y) noexcept {
    static_assert(runs_pair_kernel<Arch, S, Code>());
    using x86::f8;
    constexpr int bits = S::bits;
    constexpr float zero_point = static_cast<float>(S::levels / 2);
    constexpr bool wide_activations = std::is_same_v<Code, std::int16_t>;
    const std::size_t chunks = a.chunks;
    const std::size_t paired = a.paired_chunks;
    const std::size_t full_chunks = w.padded_cols / chunk_codes;
    const detail::ChunkGroups<S> chunk_groups(w, a.chunks_per_group);
    const auto vector = [n0](int n) noexcept { return n0 + static_cast<std::size_t>(n); };

    const std::uint8_t* codes[RowTile];
    for (int r = 0; r < RowTile; ++r) codes[r] = w.row_codes(r0 + static_cast<std::size_t>(r));
    const __m512i spread[4] = {x86::pair::factor_spread<Code>(0), x86::pair::factor_spread<Code>(1),
                               x86::pair::factor_spread<Code>(2), x86::pair::factor_spread<Code>(3)};

    __m512 acc[RowTile][BatchTile];  // the code term, per pair
    f8 zero_acc[RowTile][BatchTile];  // sum_c f_c * sum x_q, per chunk
    for (int r = 0; r < RowTile; ++r)
        for (int n = 0; n < BatchTile; ++n) {
            acc[r][n] = _mm512_setzero_ps();
            zero_acc[r][n] = f8(0.0f);
        }

    for (std::size_t c0 = 0; c0 < paired; c0 += f8::size) {
        const std::size_t count = std::min<std::size_t>(f8::size, paired - c0);  // even
        // Lanes past `count` belong to chunks outside the pairs or to the next vector: their sums are masked.
        const f8 in_window = count == f8::size ? f8(1.0f) : f8(x86::pair::first_lanes(count));
        __m256 factor[RowTile][BatchTile];
        for (int r = 0; r < RowTile; ++r) {
            const f8 s = chunk_groups.scales8(w, r0 + static_cast<std::size_t>(r), c0, count);
            for (int n = 0; n < BatchTile; ++n) {
                const f8 f = s * f8::load_unaligned(&a.d[vector(n) * chunks + c0]);
                factor[r][n] = f;
                const f8 sums = f8::load_unaligned(&a.chunk_sums[vector(n) * chunks + c0]) * in_window;
                zero_acc[r][n] = xsimd::fma(f, sums, zero_acc[r][n]);
            }
        }
        for (std::size_t j = 0; 2 * j < count; ++j) {
            const std::size_t c = c0 + 2 * j;
            for (int r = 0; r < RowTile; ++r) {
                const __m512i q = x86::pair::decode_nibble_pair(codes[r] + c * x86::chunk_plane_bytes(bits));
                if constexpr (wide_activations) {
                    const x86::pair::WideCodes wide = x86::pair::widen(q);
                    for (int n = 0; n < BatchTile; ++n)
                        acc[r][n] = x86::pair::scale_add(x86::pair::dot_int16(wide, a.chunk(vector(n), c)), factor[r][n],
                                                         spread[j], acc[r][n]);
                } else {
                    for (int n = 0; n < BatchTile; ++n)
                        acc[r][n] = x86::pair::scale_add(x86::pair::dot_int8(q, a.chunk(vector(n), c)), factor[r][n],
                                                         spread[j], acc[r][n]);
                }
            }
        }
    }

    float rest[RowTile][BatchTile] = {};
    for (std::size_t c = paired; c < chunks; ++c) {
        for (int r = 0; r < RowTile; ++r) {
            const std::size_t row = r0 + static_cast<std::size_t>(r);
            const x86::RowChunks<bits> row_chunks(codes[r], w.padded_cols);
            const __m256i q = c < full_chunks ? row_chunks.decode(c) : row_chunks.decode_half(c);
            const float s = x86::load_scale(w.scales[row * chunk_groups.groups + chunk_groups.of(c)]);
            for (int n = 0; n < BatchTile; ++n) {
                __m256i sums;
                if constexpr (wide_activations) sums = x86::pair::dot_int16_single(q, a.chunk(vector(n), c));
                else sums = x86::pair::dot_int8_single(q, a.chunk(vector(n), c));
                const float dot = xsimd::hadd(f8(_mm256_cvtepi32_ps(sums)));
                rest[r][n] += s * a.scale(vector(n), c) * (dot - zero_point * a.chunk_sums[vector(n) * chunks + c]);
            }
        }
    }

    for (int n = 0; n < BatchTile; ++n) {
        float out[RowTile];
        if constexpr (RowTile == 4) {
            // Four rows reduced together: one chain of shuffles instead of four.
            _mm_storeu_ps(out, x86::pair::reduce4(x86::pair::subtract8(acc[0][n], zero_acc[0][n] * zero_point),
                                                  x86::pair::subtract8(acc[1][n], zero_acc[1][n] * zero_point),
                                                  x86::pair::subtract8(acc[2][n], zero_acc[2][n] * zero_point),
                                                  x86::pair::subtract8(acc[3][n], zero_acc[3][n] * zero_point)));
        } else {
            for (int r = 0; r < RowTile; ++r) out[r] = x86::pair::reduce(x86::pair::subtract8(acc[r][n], zero_acc[r][n] * zero_point));
        }
        for (int r = 0; r < RowTile; ++r) y(vector(n), r0 + static_cast<std::size_t>(r)) = out[r] + rest[r][n];
    }
}
#endif  // QSAFE_HAS_X86_PAIR_KERNEL

}  // namespace qsafe::kernels
