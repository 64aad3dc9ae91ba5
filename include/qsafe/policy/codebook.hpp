#pragma once
// Codebook policy: which real value each code stands for, before the group scale is applied.
//  - UniformGrid: integer levels (q - z) with an asymmetric zero point, or q - 2^(bits-1) when symmetric.
//  - A fixed table (NF4, FP4 E2M1, or a user's own): `values[q]`, normalised so the largest |value| is 1;
//    a group stores one absmax scale, w = scale * values[q]. Tables are symmetric-scale only.
//  - LearnedCodebook: a table fitted to the weights (k-means) per tensor or per group and stored with them.
// Every codebook can represent 0.0 exactly (`zero_code`): outlier positions are coded as zero and their
// exact fp16 value is added separately.
#include <array>
#include <concepts>
#include <cstddef>
#include <type_traits>

namespace qsafe {

struct UniformGrid {
    static constexpr const char* name = "int";
};

/// QLoRA's NormalFloat4: quantiles of N(0,1) normalised to [-1, 1] (bitsandbytes `_NF4_QUANT_TABLE`).
struct Nf4 {
    static constexpr const char* name = "nf4";
    static constexpr std::array<float, 16> values = {
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
};

/// bitsandbytes' FP4 (E2M1-like, absmax-normalised); bit 3 of the code is the sign.
struct Fp4E2M1 {
    static constexpr const char* name = "fp4";
    static constexpr std::array<float, 16> values = {
        0.0f, 0.0052083333f, 0.6666666667f, 1.0f, 0.3333333333f, 0.5f, 0.1666666667f, 0.25f,
        -0.0f, -0.0052083333f, -0.6666666667f, -1.0f, -0.3333333333f, -0.5f, -0.1666666667f, -0.25f};
};

enum class CodebookScope { per_tensor, per_group };

/// A codebook of 2^bits entries fitted to the weights by importance-weighted k-means (Lloyd), stored in fp16
/// with the matrix. One entry is pinned to 0.0 so outlier positions stay exact.
template <CodebookScope Scope = CodebookScope::per_tensor>
struct LearnedCodebook {
    static constexpr const char* name = "cb";
    static constexpr CodebookScope scope = Scope;
    static constexpr bool learned = true;
};

namespace detail {
template <class T>
concept HasValueTable = requires {
    { T::values.size() } -> std::convertible_to<std::size_t>;
    { T::values[0] } -> std::convertible_to<float>;
};
}  // namespace detail

template <class C>
inline constexpr bool is_uniform_grid_v = std::is_same_v<C, UniformGrid>;

template <class C>
inline constexpr bool is_learned_codebook_v = requires { requires C::learned; };

template <class C>
inline constexpr bool is_table_codebook_v = detail::HasValueTable<C>;

/// A codebook policy: the uniform grid, a learned codebook, or any type with a constexpr `values` table.
template <class C>
concept Codebook = requires {
    { C::name } -> std::convertible_to<const char*>;
} && (is_uniform_grid_v<C> || is_learned_codebook_v<C> || is_table_codebook_v<C>);

namespace detail {
/// Index of the entry equal to 0.0 in a fixed table, or -1 if there is none.
template <class C>
constexpr int table_zero_code() {
    for (std::size_t i = 0; i < C::values.size(); ++i)
        if (C::values[i] == 0.0f) return static_cast<int>(i);
    return -1;
}
template <class C>
constexpr float table_abs_max() {
    float m = 0.0f;
    for (float v : C::values) m = (v < 0 ? -v : v) > m ? (v < 0 ? -v : v) : m;
    return m;
}
}  // namespace detail

}  // namespace qsafe
