#pragma once
// The ggml tensor type ids used in GGUF files, with each type's name, block size (weights per block) and
// bytes per block, as in ggml's type_traits table. Ids are part of the file format and never renumbered:
// gaps are types ggml removed (Q4_2, Q4_3, the Q4_0_4_4 repacks, ...), which files must not contain.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qsafe {

enum class GgmlType : std::uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
};

/// Static description of one ggml type.
struct GgmlTypeTraits {
    GgmlType type;
    std::string_view name;     // ggml's spelling, e.g. "q4_K"
    std::uint32_t block_size;  // weights per block
    std::uint32_t bytes_per_block;
};

namespace detail {
inline constexpr std::array<GgmlTypeTraits, 32> ggml_type_table{{
    {GgmlType::F32, "f32", 1, 4},
    {GgmlType::F16, "f16", 1, 2},
    {GgmlType::Q4_0, "q4_0", 32, 18},
    {GgmlType::Q4_1, "q4_1", 32, 20},
    {GgmlType::Q5_0, "q5_0", 32, 22},
    {GgmlType::Q5_1, "q5_1", 32, 24},
    {GgmlType::Q8_0, "q8_0", 32, 34},
    {GgmlType::Q8_1, "q8_1", 32, 36},
    {GgmlType::Q2_K, "q2_K", 256, 84},
    {GgmlType::Q3_K, "q3_K", 256, 110},
    {GgmlType::Q4_K, "q4_K", 256, 144},
    {GgmlType::Q5_K, "q5_K", 256, 176},
    {GgmlType::Q6_K, "q6_K", 256, 210},
    {GgmlType::Q8_K, "q8_K", 256, 292},
    {GgmlType::IQ2_XXS, "iq2_xxs", 256, 66},
    {GgmlType::IQ2_XS, "iq2_xs", 256, 74},
    {GgmlType::IQ3_XXS, "iq3_xxs", 256, 98},
    {GgmlType::IQ1_S, "iq1_s", 256, 50},
    {GgmlType::IQ4_NL, "iq4_nl", 32, 18},
    {GgmlType::IQ3_S, "iq3_s", 256, 110},
    {GgmlType::IQ2_S, "iq2_s", 256, 82},
    {GgmlType::IQ4_XS, "iq4_xs", 256, 136},
    {GgmlType::I8, "i8", 1, 1},
    {GgmlType::I16, "i16", 1, 2},
    {GgmlType::I32, "i32", 1, 4},
    {GgmlType::I64, "i64", 1, 8},
    {GgmlType::F64, "f64", 1, 8},
    {GgmlType::IQ1_M, "iq1_m", 256, 56},
    {GgmlType::BF16, "bf16", 1, 2},
    {GgmlType::TQ1_0, "tq1_0", 256, 54},
    {GgmlType::TQ2_0, "tq2_0", 256, 66},
    {GgmlType::MXFP4, "mxfp4", 32, 17},
}};
}  // namespace detail

/// Traits for a raw type id, or nullopt if the id is not a (current) ggml type.
constexpr std::optional<GgmlTypeTraits> ggml_type_traits(std::uint32_t id) noexcept {
    for (const auto& traits : detail::ggml_type_table) {
        if (static_cast<std::uint32_t>(traits.type) == id) return traits;
    }
    return std::nullopt;
}

constexpr bool is_valid_ggml_type(std::uint32_t id) noexcept {
    return ggml_type_traits(id).has_value();
}

/// Traits of a valid enumerator (every enumerator is in the table; checked below).
constexpr GgmlTypeTraits ggml_traits(GgmlType type) noexcept {
    for (const auto& traits : detail::ggml_type_table) {
        if (traits.type == type) return traits;
    }
    return {type, "invalid", 0, 0};
}

constexpr std::string_view ggml_type_name(GgmlType type) noexcept {
    return ggml_traits(type).name;
}
constexpr std::uint32_t ggml_block_size(GgmlType type) noexcept {
    return ggml_traits(type).block_size;
}
constexpr std::uint32_t ggml_bytes_per_block(GgmlType type) noexcept {
    return ggml_traits(type).bytes_per_block;
}

/// Name for a raw id, "unknown type <id>" if invalid; for error messages.
inline std::string ggml_type_name_or_id(std::uint32_t id) {
    if (const auto traits = ggml_type_traits(id)) return std::string(traits->name);
    return "unknown type " + std::to_string(id);
}

/// Parses ggml's spelling, case-insensitively ("Q4_K", "q4_k", "BF16").
constexpr std::optional<GgmlType> ggml_type_from_name(std::string_view name) noexcept {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    for (const auto& traits : detail::ggml_type_table) {
        if (traits.name.size() != name.size()) continue;
        bool equal = true;
        for (std::size_t i = 0; i < name.size() && equal; ++i) equal = lower(traits.name[i]) == lower(name[i]);
        if (equal) return traits.type;
    }
    return std::nullopt;
}

static_assert(ggml_block_size(GgmlType::Q4_K) == 256 && ggml_bytes_per_block(GgmlType::Q4_K) == 144);
static_assert(!is_valid_ggml_type(4) && !is_valid_ggml_type(31) && is_valid_ggml_type(30));

}  // namespace qsafe
