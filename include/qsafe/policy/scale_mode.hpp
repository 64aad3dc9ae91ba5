#pragma once
// Scale policies. ScaleMode: symmetric (w = s * level) or asymmetric with an integer zero point
// (w = s * (q - z)); an integer zero point makes 0.0 exactly representable, which outlier handling relies on.
// ScaleFormat: how a group's scale is stored (fp16 by default, or fp32).
#include <concepts>
#include <cstdint>

#include "qsafe/core/half.hpp"

namespace qsafe {

struct Symmetric {
    static constexpr bool has_zero_point = false;
    static constexpr const char* name = "sym";
};

struct Asymmetric {
    static constexpr bool has_zero_point = true;
    static constexpr const char* name = "asym";
};

template <class T>
concept ScaleMode = requires {
    { T::has_zero_point } -> std::convertible_to<bool>;
    { T::name } -> std::convertible_to<const char*>;
};

struct Fp16Scales {
    using storage_type = fp16_t;
    static constexpr const char* name = "f16";
    static constexpr storage_type store(float s) noexcept { return to_fp16(s); }
    static constexpr float load(storage_type s) noexcept { return to_float(s); }
};

struct Fp32Scales {
    using storage_type = float;
    static constexpr const char* name = "f32";
    static constexpr storage_type store(float s) noexcept { return s; }
    static constexpr float load(storage_type s) noexcept { return s; }
};

template <class T>
concept ScaleFormat = requires(float f, typename T::storage_type s) {
    typename T::storage_type;
    { T::store(f) } -> std::same_as<typename T::storage_type>;
    { T::load(s) } -> std::same_as<float>;
    { T::name } -> std::convertible_to<const char*>;
} && std::is_trivially_copyable_v<typename T::storage_type>;

}  // namespace qsafe
