#pragma once
// FNV-1a, 64 bit: a fast, stable, non-cryptographic hash for fingerprints that must not change between
// builds or machines (which refusal a prompt gets, which data a checkpoint was written for).
#include <cstdint>
#include <string_view>

namespace qsafe {

struct Fnv1a {
    std::uint64_t value = 1469598103934665603ull;

    Fnv1a& byte(std::uint8_t b) noexcept {
        value = (value ^ b) * 1099511628211ull;
        return *this;
    }
    Fnv1a& bytes(std::string_view s) noexcept {
        for (const char c : s) byte(static_cast<std::uint8_t>(c));
        return *this;
    }
    /// The 8 bytes of v, least significant first.
    Fnv1a& u64(std::uint64_t v) noexcept {
        for (int i = 0; i < 8; ++i, v >>= 8) byte(static_cast<std::uint8_t>(v & 0xff));
        return *this;
    }
};

}  // namespace qsafe
