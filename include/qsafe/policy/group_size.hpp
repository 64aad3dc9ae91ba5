#pragma once
// Grouping policy: how many consecutive input-dimension weights of one output row share a scale.
#include <concepts>
#include <cstddef>

namespace qsafe {

template <std::size_t N>
struct GroupSize {
    static constexpr std::size_t size = N;
    static constexpr bool per_channel = false;
};

/// One scale (and zero point) per output row: the group is the whole row.
struct PerChannel {
    static constexpr std::size_t size = 0;
    static constexpr bool per_channel = true;
};

template <class T>
concept Grouping = requires {
    { T::size } -> std::convertible_to<std::size_t>;
    { T::per_channel } -> std::convertible_to<bool>;
} && (T::per_channel == (T::size == 0));

}  // namespace qsafe
