#pragma once
// Byte layout of qsafe's bit-packed weight codes (plain data and scalar pack/unpack; kernels read it).
//
// A row of `cols` codes is padded to `padded_cols` = a multiple of 16 and split into bit planes:
//   bits 8 -> [8]   6 -> [4 low, 2 high]   5 -> [4 low, 1 high]   4 -> [4]   3 -> [2 low, 1 high]   2 -> [2]
// code = low | (high << low_bits). The planes of a row are stored one after the other (low plane first);
// a plane of width w holds padded_cols * w / 8 bytes, made of 16-code units of 2*w bytes each:
//   w = 8: byte i          = code i                              (16 bytes)
//   w = 4: byte i (0..7)   = code i | code (i + 8) << 4          (8 bytes)
//   w = 2: byte i (0..3)   = sum_k code (i + 4k) << 2k, k = 0..3 (4 bytes)
//   w = 1: bit j of the little-endian uint16 = code j            (2 bytes)
// Splitting a unit in halves (4-bit) or quarters (2-bit) lets SIMD kernels unpack with one shift and one
// mask per plane and no shuffles; a kernel permutes its activations to match instead. Total row bytes are
// padded_cols * bits / 8: every byte stored is counted by bits_per_weight().
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace qsafe {

inline constexpr std::size_t codes_per_unit = 16;

constexpr std::size_t round_up(std::size_t n, std::size_t multiple) noexcept {
    return (n + multiple - 1) / multiple * multiple;
}

/// Bit planes of a bit width, low plane first (second entry 0 when there is a single plane).
struct PlaneSplit {
    int low_bits;
    int high_bits;
};

constexpr PlaneSplit plane_split(int bits) noexcept {
    switch (bits) {
        case 8: return {8, 0};
        case 6: return {4, 2};
        case 5: return {4, 1};
        case 4: return {4, 0};
        case 3: return {2, 1};
        case 2: return {2, 0};
        default: return {0, 0};
    }
}

constexpr std::size_t packed_row_bytes(std::size_t padded_cols, int bits) noexcept {
    return padded_cols * static_cast<std::size_t>(bits) / 8;
}

namespace detail {

// Packs the 16 codes of one unit into a plane of width w (codes already reduced to w bits).
inline void pack_unit_plane(const std::uint8_t* codes, int w, std::uint8_t* out) noexcept {
    switch (w) {
        case 8:
            for (int i = 0; i < 16; ++i) out[i] = codes[i];
            break;
        case 4:
            for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(codes[i] | (codes[i + 8] << 4));
            break;
        case 2:
            for (int i = 0; i < 4; ++i)
                out[i] = static_cast<std::uint8_t>(codes[i] | (codes[i + 4] << 2) | (codes[i + 8] << 4) |
                                                   (codes[i + 12] << 6));
            break;
        case 1: {
            std::uint16_t word = 0;
            for (int j = 0; j < 16; ++j) word = static_cast<std::uint16_t>(word | ((codes[j] & 1u) << j));
            out[0] = static_cast<std::uint8_t>(word & 0xFFu);
            out[1] = static_cast<std::uint8_t>(word >> 8);
            break;
        }
        default: break;
    }
}

inline void unpack_unit_plane(const std::uint8_t* in, int w, std::uint8_t* codes) noexcept {
    switch (w) {
        case 8:
            for (int i = 0; i < 16; ++i) codes[i] = in[i];
            break;
        case 4:
            for (int i = 0; i < 8; ++i) {
                codes[i] = in[i] & 0x0Fu;
                codes[i + 8] = static_cast<std::uint8_t>(in[i] >> 4);
            }
            break;
        case 2:
            for (int i = 0; i < 4; ++i)
                for (int k = 0; k < 4; ++k) codes[i + 4 * k] = static_cast<std::uint8_t>((in[i] >> (2 * k)) & 3u);
            break;
        case 1: {
            const unsigned word = static_cast<unsigned>(in[0]) | (static_cast<unsigned>(in[1]) << 8);
            for (int j = 0; j < 16; ++j) codes[j] = static_cast<std::uint8_t>((word >> j) & 1u);
            break;
        }
        default: break;
    }
}

}  // namespace detail

/// Packs one row: `codes` holds padded_cols values < 2^bits; `out` holds packed_row_bytes(padded_cols, bits).
inline void pack_row(std::span<const std::uint8_t> codes, int bits, std::span<std::uint8_t> out) noexcept {
    const PlaneSplit split = plane_split(bits);
    const std::size_t units = codes.size() / codes_per_unit;
    std::uint8_t* high_plane = out.data() + codes.size() * static_cast<std::size_t>(split.low_bits) / 8;
    const unsigned low_mask = (1u << split.low_bits) - 1u;
    std::array<std::uint8_t, 16> part{};
    for (std::size_t u = 0; u < units; ++u) {
        const std::uint8_t* c = codes.data() + u * codes_per_unit;
        for (int j = 0; j < 16; ++j) part[j] = static_cast<std::uint8_t>(c[j] & low_mask);
        detail::pack_unit_plane(part.data(), split.low_bits, out.data() + u * 2 * split.low_bits);
        if (split.high_bits != 0) {
            for (int j = 0; j < 16; ++j) part[j] = static_cast<std::uint8_t>(c[j] >> split.low_bits);
            detail::pack_unit_plane(part.data(), split.high_bits, high_plane + u * 2 * split.high_bits);
        }
    }
}

/// Unpacks the 16 codes of unit `unit` of a packed row (padded_cols codes wide) into `codes`.
inline void unpack_unit(const std::uint8_t* row, std::size_t padded_cols, int bits, std::size_t unit,
                        std::uint8_t* codes) noexcept {
    const PlaneSplit split = plane_split(bits);
    detail::unpack_unit_plane(row + unit * 2 * split.low_bits, split.low_bits, codes);
    if (split.high_bits != 0) {
        const std::uint8_t* high_plane = row + padded_cols * static_cast<std::size_t>(split.low_bits) / 8;
        std::array<std::uint8_t, 16> high{};
        detail::unpack_unit_plane(high_plane + unit * 2 * split.high_bits, split.high_bits, high.data());
        for (int j = 0; j < 16; ++j) codes[j] = static_cast<std::uint8_t>(codes[j] | (high[j] << split.low_bits));
    }
}

/// Unpacks a whole row of padded_cols codes.
inline void unpack_row(std::span<const std::uint8_t> packed, std::size_t padded_cols, int bits,
                       std::span<std::uint8_t> codes) noexcept {
    for (std::size_t u = 0; u < padded_cols / codes_per_unit; ++u)
        unpack_unit(packed.data(), padded_cols, bits, u, codes.data() + u * codes_per_unit);
}

}  // namespace qsafe
