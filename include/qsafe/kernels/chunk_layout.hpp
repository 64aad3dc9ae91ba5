#pragma once
// Order of the 32 codes of a "chunk" (two 16-code units) as the x86 SIMD decoders leave them in a register.
// The packed layout (formats/packed_codes.hpp) splits a unit in halves (4-bit plane) or quarters (2-bit
// plane) so that unpacking is a shift and a mask; the decoded bytes therefore come out permuted, and the
// kernels permute their activations the same way once per call instead of shuffling every weight.
//   natural (8-bit):     position p holds code p.
//   nibble (4, 5, 6-bit): one 16-byte load of the low plane, low nibbles in the lower 128-bit lane and high
//                         nibbles in the upper one: p -> unit (p % 16) / 8, code (p % 8) + 8 * (p / 16).
//   crumb (2, 3-bit):    one 8-byte low plane broadcast to four 64-bit lanes shifted by 0, 2, 4, 6:
//                         p -> unit (p % 8) / 4, code (p % 4) + 4 * (p / 8).
// High planes (5, 6 and 3-bit) are expanded into the low plane's order inside the decoder.
// The 512-bit integer kernel (kernels/paired_integer_tile_kernel.hpp) takes two chunks c, c + 1 per register
// in "pair order": 16-position quarters [c 0-15, c+1 0-15, c 16-31, c+1 16-31] of the two chunks' orders
// above, so that a 4-bit pair decodes with one broadcast load, one shift and one mask.
#include <cstddef>

namespace qsafe::kernels {

inline constexpr std::size_t chunk_codes = 32;

enum class ChunkOrder { natural, nibble, crumb };

constexpr ChunkOrder chunk_order(int bits) noexcept {
    if (bits == 8) return ChunkOrder::natural;
    if (bits == 2 || bits == 3) return ChunkOrder::crumb;
    return ChunkOrder::nibble;
}

/// Index (0..31, unit * 16 + code) of the code that sits at register byte p.
constexpr int chunk_source(ChunkOrder order, int p) noexcept {
    switch (order) {
        case ChunkOrder::nibble: return 16 * ((p % 16) / 8) + (p % 8) + 8 * (p / 16);
        case ChunkOrder::crumb: return 16 * ((p % 8) / 4) + (p % 4) + 4 * (p / 8);
        default: return p;
    }
}

/// Register byte that holds code `index` (inverse of chunk_source).
constexpr int chunk_position(ChunkOrder order, int index) noexcept {
    for (int p = 0; p < 32; ++p)
        if (chunk_source(order, p) == index) return p;
    return -1;
}

/// Position, within a pair of chunks in pair order, of chunk-order position p (0..31) of the pair's chunk k
/// (0: the first, 1: the second).
constexpr int pair_position(int k, int p) noexcept { return ((p / 16) * 2 + k) * 16 + p % 16; }

}  // namespace qsafe::kernels
