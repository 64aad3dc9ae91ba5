#pragma once
// Bit-width policy: how many bits one weight code occupies in packed storage.
#include <concepts>

namespace qsafe {

template <int N>
struct Bits {
    static constexpr int value = N;
    static constexpr int levels = 1 << N;  // number of distinct codes
};

/// Bit widths qsafe can pack: 2, 3, 4, 5, 6 and 8.
template <class T>
concept BitWidth = requires {
    { T::value } -> std::convertible_to<int>;
    { T::levels } -> std::convertible_to<int>;
} && (T::value == 2 || T::value == 3 || T::value == 4 || T::value == 5 || T::value == 6 || T::value == 8) &&
                   T::levels == (1 << T::value);

}  // namespace qsafe
