#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "qsafe/core/half.hpp"

using namespace qsafe;

TEST_CASE("fp16: every bit pattern survives fp16 -> fp32 -> fp16") {
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const float f = fp16_bits_to_float(static_cast<std::uint16_t>(h));
        const bool is_nan = ((h >> 10) & 0x1F) == 0x1F && (h & 0x3FF) != 0;
        if (is_nan) {
            CHECK(std::isnan(f));
        } else {
            CHECK(float_to_fp16_bits(f) == h);
        }
    }
}

TEST_CASE("fp16: known values and rounding") {
    CHECK(fp16_bits_to_float(0x3C00) == 1.0f);
    CHECK(fp16_bits_to_float(0xC000) == -2.0f);
    CHECK(fp16_bits_to_float(0x7BFF) == 65504.0f);
    CHECK(fp16_bits_to_float(0x0001) == std::ldexp(1.0f, -24));
    CHECK(float_to_fp16_bits(65520.0f) == 0x7C00);           // rounds up to inf
    CHECK(float_to_fp16_bits(65519.0f) == 0x7BFF);
    CHECK(float_to_fp16_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);  // tie -> even
    CHECK(float_to_fp16_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);  // tie -> even (up)
    CHECK(float_to_fp16_bits(std::ldexp(1.0f, -25)) == 0x0000);  // tie at half the smallest subnormal
    CHECK(float_to_fp16_bits(std::ldexp(1.5f, -25)) == 0x0001);
    CHECK(float_to_fp16_bits(std::numeric_limits<float>::infinity()) == 0x7C00);
    CHECK(std::isnan(fp16_bits_to_float(float_to_fp16_bits(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("bf16: rounding to nearest even") {
    CHECK(bf16_bits_to_float(0x3F80) == 1.0f);
    CHECK(float_to_bf16_bits(1.0f) == 0x3F80);
    CHECK(float_to_bf16_bits(std::bit_cast<float>(0x3F808000u)) == 0x3F80);  // tie -> even
    CHECK(float_to_bf16_bits(std::bit_cast<float>(0x3F818000u)) == 0x3F82);  // tie -> even (up)
    CHECK(float_to_bf16_bits(std::bit_cast<float>(0x3F808001u)) == 0x3F81);
}
