#pragma once
// Activations prepared once per call for the x86 chunk kernels: zero-padded to whole 32-code chunks and
// permuted into the chunk order of the weights' bit width (kernels/chunk_layout.hpp), either as fp32 or
// quantized per chunk of 32 to int8 (llama.cpp's q8_0: d = max|x| / 127, q = round(x / d)) or to int16
// (d = max|x| / 32767: the same integer kernel, ~250x smaller rounding error).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "qsafe/core/aligned_buffer.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/kernels/chunk_layout.hpp"

namespace qsafe::kernels {

namespace detail {
struct ChunkPositions {
    std::array<std::uint8_t, chunk_codes> of;  // register byte of natural code i
};
constexpr ChunkPositions chunk_positions(ChunkOrder order) {
    ChunkPositions t{};
    for (int i = 0; i < static_cast<int>(chunk_codes); ++i)
        t.of[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(chunk_position(order, i));
    return t;
}
inline constexpr ChunkPositions positions_natural = chunk_positions(ChunkOrder::natural);
inline constexpr ChunkPositions positions_nibble = chunk_positions(ChunkOrder::nibble);
inline constexpr ChunkPositions positions_crumb = chunk_positions(ChunkOrder::crumb);
inline const ChunkPositions& positions_for(ChunkOrder order) noexcept {
    return order == ChunkOrder::nibble ? positions_nibble
                                       : order == ChunkOrder::crumb ? positions_crumb : positions_natural;
}
}  // namespace detail

/// batch x chunks x 32 fp32 activations in chunk order.
struct PermutedActivations {
    std::size_t batch = 0;
    std::size_t chunks = 0;
    aligned_vector<float> x;

    const float* chunk(std::size_t n, std::size_t c) const noexcept { return x.data() + (n * chunks + c) * chunk_codes; }
};

/// batch x chunks x 32 integer activations (int8 or int16) in chunk order — the first `paired_chunks` of each
/// vector in pair order, two chunks at a time (kernels/chunk_layout.hpp) — one scale per chunk, and per
/// weight group the sum of the dequantized activations (d * sum q) for the zero-point term.
template <class Code>
struct QuantizedActivations {
    static_assert(std::is_same_v<Code, std::int8_t> || std::is_same_v<Code, std::int16_t>,
                  "activations are quantized to int8 or int16");
    /// Largest |q|: symmetric range, so that -q is representable and the kernels' sign tricks stay exact.
    static constexpr int max_level = std::is_same_v<Code, std::int8_t> ? 127 : 32767;

    std::size_t batch = 0;
    std::size_t chunks = 0;
    std::size_t groups = 0;
    std::size_t chunks_per_group = 0;
    std::size_t paired_chunks = 0;  // even; 0 for the 256-bit kernels
    aligned_vector<Code> q;
    aligned_vector<float> d;  // batch x chunks, then 8 zeros of padding
    aligned_vector<float> group_sums;
    aligned_vector<float> chunk_sums;  // batch x chunks: sum q per chunk (exact integers), then 8 zeros of padding

    const Code* chunk(std::size_t n, std::size_t c) const noexcept { return q.data() + (n * chunks + c) * chunk_codes; }
    float scale(std::size_t n, std::size_t c) const noexcept { return d[n * chunks + c]; }
    const float* sums(std::size_t n) const noexcept { return group_sums.data() + n * groups; }
};
using Int8Activations = QuantizedActivations<std::int8_t>;
using Int16Activations = QuantizedActivations<std::int16_t>;

// Templated on the arch only so that copies compiled with different ISA flags stay distinct symbols.
/// Sizes and fills `out` from x (batch x cols); chunks = ceil(cols / 32).
template <class Arch>
void permute_activations(ConstMatrixView x, ChunkOrder order, PermutedActivations& out) {
    out.batch = x.rows;
    out.chunks = (x.cols + chunk_codes - 1) / chunk_codes;
    out.x.assign(out.batch * out.chunks * chunk_codes, 0.0f);
    const detail::ChunkPositions& pos = detail::positions_for(order);
    parallel_for(out.batch, [&](std::size_t n) {
        const float* src = x.row(n);
        for (std::size_t c = 0; c < out.chunks; ++c) {
            float* dst = out.x.data() + (n * out.chunks + c) * chunk_codes;
            const std::size_t count = std::min(chunk_codes, x.cols - c * chunk_codes);
            for (std::size_t i = 0; i < count; ++i) dst[pos.of[i]] = src[c * chunk_codes + i];
        }
    });
}

/// Quantizes x (batch x cols) to int8 or int16 per 32-chunk; weight groups span `chunks_per_group` chunks.
/// The first `paired_chunks` (even) chunks of each vector are stored in pair order.
template <class Arch, class Code>
void quantize_activations(ConstMatrixView x, ChunkOrder order, std::size_t chunks_per_group, std::size_t groups,
                          QuantizedActivations<Code>& out, std::size_t paired_chunks = 0) {
    constexpr float max_level = static_cast<float>(QuantizedActivations<Code>::max_level);
    out.batch = x.rows;
    out.chunks = (x.cols + chunk_codes - 1) / chunk_codes;
    out.groups = groups;
    out.chunks_per_group = chunks_per_group;
    out.paired_chunks = std::min(paired_chunks, out.chunks) & ~std::size_t{1};
    out.q.assign(out.batch * out.chunks * chunk_codes, 0);
    // Padded by one vector so that kernels may load eight chunk scales at the end of the last row.
    out.d.assign(out.batch * out.chunks + 8, 0.0f);
    out.group_sums.assign(out.batch * groups, 0.0f);
    out.chunk_sums.assign(out.batch * out.chunks + 8, 0.0f);
    const detail::ChunkPositions& pos = detail::positions_for(order);
    parallel_for(out.batch, [&](std::size_t n) {
        const float* src = x.row(n);
        for (std::size_t c = 0; c < out.chunks; ++c) {
            const std::size_t count = std::min(chunk_codes, x.cols - c * chunk_codes);
            float amax = 0.0f;
            for (std::size_t i = 0; i < count; ++i) amax = std::max(amax, std::fabs(src[c * chunk_codes + i]));
            const float d = amax / max_level;
            const float inv = d > 0.0f ? 1.0f / d : 0.0f;
            Code* dst = out.q.data() + (n * out.chunks + c) * chunk_codes;
            const bool paired = c < out.paired_chunks;
            const int k = static_cast<int>(c % 2);
            if (paired) dst -= static_cast<std::size_t>(k) * chunk_codes;  // the pair's first chunk
            int sum = 0;  // |sum| <= 32 * 32767: fits
            for (std::size_t i = 0; i < count; ++i) {
                const float v = std::clamp(std::nearbyint(src[c * chunk_codes + i] * inv), -max_level, max_level);
                const int qi = static_cast<int>(v);
                dst[paired ? static_cast<std::size_t>(pair_position(k, pos.of[i])) : pos.of[i]] = static_cast<Code>(qi);
                sum += qi;
            }
            out.d[n * out.chunks + c] = d;
            out.chunk_sums[n * out.chunks + c] = static_cast<float>(sum);
            // The zero-point term uses the quantized activations, so that the integer path computes exactly
            // sum (q - z) * x_q * d: its error is that of x_q alone, smaller than with the true sum of x.
            out.group_sums[n * groups + c / chunks_per_group] += d * static_cast<float>(sum);
        }
    });
}

}  // namespace qsafe::kernels
