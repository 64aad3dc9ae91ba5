#pragma once
// IEEE binary16 (fp16) and bfloat16 <-> binary32 conversions, done with integer bit manipulation so the
// results are exact and identical on every compiler and CPU: fp16 -> fp32 is exact, fp32 -> fp16 and
// fp32 -> bf16 round to nearest, ties to even, with overflow to infinity and NaN kept quiet.
#include <bit>
#include <cstdint>

namespace qsafe {

/// Storage-only 16-bit float types: they hold bits, arithmetic happens in fp32.
struct fp16_t {
    std::uint16_t bits = 0;
    friend constexpr bool operator==(fp16_t, fp16_t) = default;
};
struct bf16_t {
    std::uint16_t bits = 0;
    friend constexpr bool operator==(bf16_t, bf16_t) = default;
};

constexpr float fp16_bits_to_float(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1Fu;
    std::uint32_t mantissa = h & 0x3FFu;
    std::uint32_t bits = 0;
    if (exponent == 0x1Fu) {  // inf or NaN
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent != 0) {  // normal
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    } else if (mantissa != 0) {  // subnormal: normalise
        std::uint32_t e = 113;
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            --e;
        }
        bits = sign | (e << 23) | ((mantissa & 0x3FFu) << 13);
    } else {
        bits = sign;  // signed zero
    }
    return std::bit_cast<float>(bits);
}

constexpr std::uint16_t float_to_fp16_bits(float f) noexcept {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t abs = x & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7E00u | ((abs >> 13) & 0x1FFu));  // NaN
    if (abs >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // rounds to >= 65520: inf
    if (abs < 0x38800000u) {  // result is subnormal or zero (|f| < 2^-14)
        if (abs < 0x33000000u) return static_cast<std::uint16_t>(sign);  // < 2^-25 rounds to zero
        const std::uint32_t exponent = abs >> 23;
        const std::uint32_t mantissa = (abs & 0x7FFFFFu) | 0x800000u;
        const std::uint32_t shift = 126u - exponent;  // 14..24
        std::uint32_t half_mantissa = mantissa >> shift;
        const std::uint32_t remainder = mantissa & ((1u << shift) - 1u);
        const std::uint32_t halfway = 1u << (shift - 1u);
        if (remainder > halfway || (remainder == halfway && (half_mantissa & 1u))) ++half_mantissa;
        return static_cast<std::uint16_t>(sign | half_mantissa);
    }
    std::uint32_t rebased = abs - 0x38000000u;  // re-bias exponent 127 -> 15
    const std::uint32_t remainder = rebased & 0x1FFFu;
    rebased >>= 13;
    if (remainder > 0x1000u || (remainder == 0x1000u && (rebased & 1u))) ++rebased;  // may carry into exponent
    return static_cast<std::uint16_t>(sign | rebased);
}

constexpr float bf16_bits_to_float(std::uint16_t b) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

constexpr std::uint16_t float_to_bf16_bits(float f) noexcept {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);  // quiet NaN
    const std::uint32_t rounding = 0x7FFFu + ((x >> 16) & 1u);
    return static_cast<std::uint16_t>((x + rounding) >> 16);
}

constexpr float to_float(fp16_t h) noexcept { return fp16_bits_to_float(h.bits); }
constexpr float to_float(bf16_t b) noexcept { return bf16_bits_to_float(b.bits); }
constexpr float to_float(float f) noexcept { return f; }
constexpr fp16_t to_fp16(float f) noexcept { return fp16_t{float_to_fp16_bits(f)}; }
constexpr bf16_t to_bf16(float f) noexcept { return bf16_t{float_to_bf16_bits(f)}; }

/// The value `f` has after a round trip through fp16 storage.
constexpr float round_to_fp16(float f) noexcept { return fp16_bits_to_float(float_to_fp16_bits(f)); }

}  // namespace qsafe
