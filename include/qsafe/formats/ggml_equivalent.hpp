#pragma once
// qsafe schemes whose values are exactly those of a ggml block type, and the lossless conversions between the
// two storages, so a quantized file can hold such layers in llama.cpp's own types:
//   int4-g32-sym  = Q4_0: fp16 scale d per 32 weights, codes q in [0, 15], w = d * (q - 8). qsafe's symmetric
//                   grid is ggml's (levels -8..7, d = the signed extreme / -8); only the packing differs
//                   (qsafe: bit planes of 16-code units; ggml: weight j and j + 16 in one byte).
//   int8-g32-sym  = Q8_0: fp16 d per 32 weights, w = d * i with the int8 i = q - 128. qsafe puts the extreme on
//                   level -128 where ggml's quantizer uses +-127, but ggml dequantizes (and multiplies) any
//                   int8 value, so every int8-g32-sym matrix is a valid Q8_0 tensor with the same values.
// Both directions copy the fp16 scale bits and the integer codes, so dequantize() of one and ggml's
// dequantize_row of the other give bit-identical floats.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/formats/ggml_blocks.hpp"
#include "qsafe/formats/ggml_types.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/policy/scheme.hpp"

namespace qsafe {

using GgmlQ4_0Scheme = Scheme<Bits<4>, GroupSize<32>, Symmetric>;  // registered as "int4-g32-sym"
using GgmlQ8_0Scheme = Scheme<Bits<8>, GroupSize<32>, Symmetric>;  // registered as "int8-g32-sym"

/// The ggml type a registered scheme name can be stored as without changing a value, if any.
inline std::optional<GgmlType> ggml_equivalent_type(std::string_view scheme) noexcept {
    if (scheme == "int4-g32-sym") return GgmlType::Q4_0;
    if (scheme == "int8-g32-sym") return GgmlType::Q8_0;
    return std::nullopt;
}

/// The registered scheme name a ggml type loads as without changing a value, if any.
inline std::optional<std::string> scheme_equivalent_to(GgmlType type) {
    if (type == GgmlType::Q4_0) return "int4-g32-sym";
    if (type == GgmlType::Q8_0) return "int8-g32-sym";
    return std::nullopt;
}

/// True when a rows x cols matrix fits whole ggml blocks (ggml blocks never straddle rows).
constexpr bool fits_ggml_blocks(std::size_t cols) noexcept { return cols > 0 && cols % 32 == 0; }

namespace detail {
template <QuantScheme S>
constexpr GgmlType ggml_type_of() {
    if constexpr (std::is_same_v<S, GgmlQ4_0Scheme>) return GgmlType::Q4_0;
    else if constexpr (std::is_same_v<S, GgmlQ8_0Scheme>) return GgmlType::Q8_0;
    else static_assert(sizeof(S) == 0, "no ggml block type holds this scheme exactly");
}
}  // namespace detail

/// The matrix as ggml blocks, rows one after the other (a GGUF tensor of dims {cols, rows}).
template <QuantScheme S>
std::vector<std::byte> to_ggml_blocks(const QuantizedMatrix<S>& m) {
    constexpr GgmlType type = detail::ggml_type_of<S>();
    using Block = ggml::block_of_t<type>;
    if (!fits_ggml_blocks(m.cols))
        throw shape_error("to_ggml_blocks: " + std::to_string(m.cols) + " columns are not a whole number of " +
                          std::string(ggml_type_name(type)) + " blocks of 32");
    const std::size_t blocks_per_row = m.cols / 32;
    std::vector<std::byte> out(m.rows * blocks_per_row * sizeof(Block));
    std::vector<std::uint8_t> codes(m.padded_cols);
    for (std::size_t r = 0; r < m.rows; ++r) {
        unpack_row({m.row_codes(r), m.row_bytes}, m.padded_cols, S::bits, codes);
        for (std::size_t g = 0; g < blocks_per_row; ++g) {
            Block b{};
            b.d = m.scales[r * m.groups_per_row + g];
            const std::uint8_t* q = codes.data() + g * 32;
            if constexpr (type == GgmlType::Q4_0) {
                for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<std::uint8_t>(q[j] | (q[j + 16] << 4));
            } else {
                for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<std::int8_t>(static_cast<int>(q[j]) - 128);
            }
            std::memcpy(out.data() + (r * blocks_per_row + g) * sizeof(Block), &b, sizeof(Block));
        }
    }
    return out;
}

/// A rows x cols matrix from the bytes of a ggml tensor of the scheme's block type. `context` names the
/// file and tensor in errors.
template <QuantScheme S>
QuantizedMatrix<S> from_ggml_blocks(std::span<const std::byte> bytes, std::size_t rows, std::size_t cols,
                                    const std::string& context) {
    constexpr GgmlType type = detail::ggml_type_of<S>();
    using Block = ggml::block_of_t<type>;
    if (!fits_ggml_blocks(cols))
        throw format_error(context + ": row length " + std::to_string(cols) + " is not a multiple of the " +
                           std::string(ggml_type_name(type)) + " block size 32");
    const std::size_t blocks_per_row = cols / 32;
    if (bytes.size() != rows * blocks_per_row * sizeof(Block))
        throw format_error(context + ": " + std::to_string(bytes.size()) + " bytes, expected " +
                           std::to_string(rows * blocks_per_row * sizeof(Block)) + " for " + std::to_string(rows) + " x " +
                           std::to_string(cols) + " " + std::string(ggml_type_name(type)));
    QuantizedMatrix<S> m = QuantizedMatrix<S>::allocate(rows, cols);
    std::vector<std::uint8_t> codes(m.padded_cols, 0);  // cols is a multiple of 32, so no padding codes
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t g = 0; g < blocks_per_row; ++g) {
            Block b;
            std::memcpy(&b, bytes.data() + (r * blocks_per_row + g) * sizeof(Block), sizeof(Block));
            m.scales[r * m.groups_per_row + g] = b.d;
            std::uint8_t* q = codes.data() + g * 32;
            if constexpr (type == GgmlType::Q4_0) {
                for (int j = 0; j < 16; ++j) {
                    q[j] = b.qs[j] & 0x0Fu;
                    q[j + 16] = static_cast<std::uint8_t>(b.qs[j] >> 4);
                }
            } else {
                for (int j = 0; j < 32; ++j) q[j] = static_cast<std::uint8_t>(static_cast<int>(b.qs[j]) + 128);
            }
        }
        pack_row(codes, S::bits, {m.row_codes(r), m.row_bytes});
    }
    return m;
}

}  // namespace qsafe
