// Decodes hand-built ggml blocks. Each test picks logical values (quants, sub-block scales, mins), packs them
// with its own code written from the layout description in ggml-common.h, and compares dequantize_row with
// the documented formula evaluated per weight. Scales are powers of two so every product is exact and the
// comparison can be bit-exact whatever the evaluation order.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "qsafe/formats/ggml_blocks.hpp"
#include "qsafe/formats/ggml_dequantize.hpp"
#include "qsafe/formats/ggml_quantize.hpp"
#include "qsafe/formats/ggml_types.hpp"

using namespace qsafe;
using namespace qsafe::ggml;

namespace {

struct Lcg {
    std::uint32_t state;
    int next(int lo, int hi) {  // inclusive range
        state = state * 1664525u + 1013904223u;
        return lo + static_cast<int>((state >> 8) % static_cast<std::uint32_t>(hi - lo + 1));
    }
};

template <class Block>
std::vector<float> decode(GgmlType type, const Block& block) {
    std::vector<std::byte> bytes(sizeof(Block));
    std::memcpy(bytes.data(), &block, sizeof(Block));
    std::vector<float> out(ggml_block_size(type));
    dequantize_row(type, bytes, out);
    return out;
}

std::uint16_t h(float f) {
    return float_to_fp16_bits(f);
}

}  // namespace

TEST_CASE("ggml types: ids, names and sizes match GGUF") {
    CHECK(static_cast<int>(GgmlType::F32) == 0);
    CHECK(static_cast<int>(GgmlType::Q4_0) == 2);
    CHECK(static_cast<int>(GgmlType::Q5_0) == 6);
    CHECK(static_cast<int>(GgmlType::Q8_K) == 15);
    CHECK(static_cast<int>(GgmlType::BF16) == 30);
    CHECK(ggml_type_name(GgmlType::Q6_K) == "q6_K");
    CHECK(ggml_type_from_name("Q4_1") == GgmlType::Q4_1);
    CHECK(ggml_type_from_name("q4_k") == GgmlType::Q4_K);
    CHECK_FALSE(ggml_type_from_name("q4_2").has_value());
    CHECK_FALSE(is_valid_ggml_type(5));
    CHECK(ggml_type_name_or_id(77) == "unknown type 77");
    CHECK(ggml_bytes_per_block(GgmlType::Q3_K) == 110);
    CHECK(ggml_block_size(GgmlType::IQ4_NL) == 32);
}

TEST_CASE("dequantize: F32, F16, BF16") {
    const std::array<float, 3> f32{1.5f, -0.0f, 3e-8f};
    std::vector<std::byte> bytes(sizeof(f32));
    std::memcpy(bytes.data(), f32.data(), sizeof(f32));
    std::vector<float> out(3);
    dequantize_row(GgmlType::F32, bytes, out);
    CHECK(out == std::vector<float>(f32.begin(), f32.end()));

    const std::array<std::uint16_t, 3> f16{0x3C00, 0xC100, 0x0001};  // 1, -2.5, 2^-24
    bytes.assign(6, std::byte{0});
    std::memcpy(bytes.data(), f16.data(), 6);
    dequantize_row(GgmlType::F16, bytes, out);
    CHECK(out == std::vector<float>{1.0f, -2.5f, std::ldexp(1.0f, -24)});

    const std::array<std::uint16_t, 3> b16{0x3F80, 0xC020, 0x0000};  // 1, -2.5, 0
    std::memcpy(bytes.data(), b16.data(), 6);
    dequantize_row(GgmlType::BF16, bytes, out);
    CHECK(out == std::vector<float>{1.0f, -2.5f, 0.0f});
}

TEST_CASE("dequantize: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 known blocks") {
    Lcg rng{1};
    int q[32];
    for (int& v : q) v = rng.next(0, 31);

    BlockQ4_0 b40{};
    b40.d.bits = h(0.5f);
    for (int j = 0; j < 16; ++j) b40.qs[j] = static_cast<std::uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
    auto out = decode(GgmlType::Q4_0, b40);
    for (int i = 0; i < 32; ++i) CHECK(out[i] == 0.5f * static_cast<float>((q[i] & 15) - 8));

    BlockQ4_1 b41{};
    b41.d.bits = h(0.25f);
    b41.m.bits = h(-1.5f);
    std::memcpy(b41.qs, b40.qs, 16);
    out = decode(GgmlType::Q4_1, b41);
    for (int i = 0; i < 32; ++i) CHECK(out[i] == 0.25f * static_cast<float>(q[i] & 15) - 1.5f);

    std::uint32_t high = 0;
    for (int i = 0; i < 32; ++i) high |= static_cast<std::uint32_t>(q[i] >> 4) << i;
    BlockQ5_0 b50{};
    b50.d.bits = h(2.0f);
    std::memcpy(b50.qh, &high, 4);
    std::memcpy(b50.qs, b40.qs, 16);
    out = decode(GgmlType::Q5_0, b50);
    for (int i = 0; i < 32; ++i) CHECK(out[i] == 2.0f * static_cast<float>(q[i] - 16));

    BlockQ5_1 b51{};
    b51.d.bits = h(0.125f);
    b51.m.bits = h(3.0f);
    std::memcpy(b51.qh, &high, 4);
    std::memcpy(b51.qs, b40.qs, 16);
    out = decode(GgmlType::Q5_1, b51);
    for (int i = 0; i < 32; ++i) CHECK(out[i] == 0.125f * static_cast<float>(q[i]) + 3.0f);

    BlockQ8_0 b80{};
    b80.d.bits = h(0.0625f);
    for (int i = 0; i < 32; ++i) b80.qs[i] = static_cast<std::int8_t>(rng.next(-128, 127));
    out = decode(GgmlType::Q8_0, b80);
    for (int i = 0; i < 32; ++i) CHECK(out[i] == 0.0625f * static_cast<float>(b80.qs[i]));
}

TEST_CASE("dequantize: hand-computed Q4_0 and Q8_0 values") {
    BlockQ4_0 b{};
    b.d.bits = 0x3C00;  // d = 1
    b.qs[0] = 0xF0;     // weight 0: q = 0 -> -8; weight 16: q = 15 -> 7
    b.qs[1] = 0x98;     // weight 1: q = 8 -> 0; weight 17: q = 9 -> 1
    const auto out = decode(GgmlType::Q4_0, b);
    CHECK(out[0] == -8.0f);
    CHECK(out[16] == 7.0f);
    CHECK(out[1] == 0.0f);
    CHECK(out[17] == 1.0f);
    CHECK(out[2] == -8.0f);  // zero byte -> q = 0

    BlockQ8_0 b8{};
    b8.d.bits = 0x3800;  // 0.5
    b8.qs[0] = -127;
    b8.qs[31] = 3;
    const auto out8 = decode(GgmlType::Q8_0, b8);
    CHECK(out8[0] == -63.5f);
    CHECK(out8[31] == 1.5f);
    CHECK(out8[5] == 0.0f);
}

TEST_CASE("dequantize: Q2_K") {
    Lcg rng{2};
    int q[256], scale[16], min[16];
    for (int& v : q) v = rng.next(0, 3);
    for (int i = 0; i < 16; ++i) {
        scale[i] = rng.next(0, 15);
        min[i] = rng.next(0, 15);
    }
    BlockQ2_K b{};
    b.d.bits = h(0.5f);
    b.dmin.bits = h(0.25f);
    for (int i = 0; i < 16; ++i) b.scales[i] = static_cast<std::uint8_t>(scale[i] | (min[i] << 4));
    // weight i: half n = i / 128, shift group j = (i % 128) / 32, byte qs[32n + i % 32], bits 2j..2j+1
    for (int i = 0; i < 256; ++i) {
        const int n = i / 128, j = (i % 128) / 32, byte = 32 * n + i % 32;
        b.qs[byte] = static_cast<std::uint8_t>(b.qs[byte] | (q[i] << (2 * j)));
    }
    const auto out = decode(GgmlType::Q2_K, b);
    for (int i = 0; i < 256; ++i) {
        const int sub = i / 16;  // sub-blocks of 16 in weight order
        CHECK(out[i] == 0.5f * static_cast<float>(scale[sub] * q[i]) - 0.25f * static_cast<float>(min[sub]));
    }
}

TEST_CASE("dequantize: Q3_K") {
    Lcg rng{3};
    int q[256], scale[16];
    for (int& v : q) v = rng.next(-4, 3);
    for (int& s : scale) s = rng.next(-32, 31);
    BlockQ3_K b{};
    b.d.bits = h(0.125f);
    for (int i = 0; i < 16; ++i) {  // 6-bit scale + 32: low nibbles in bytes 0-7, high 2 bits in bytes 8-11
        const int u = scale[i] + 32;
        const int low_byte = i % 8, low_shift = i < 8 ? 0 : 4;
        b.scales[low_byte] = static_cast<std::uint8_t>(b.scales[low_byte] | ((u & 15) << low_shift));
        b.scales[8 + i % 4] = static_cast<std::uint8_t>(b.scales[8 + i % 4] | ((u >> 4) << (2 * (i / 4))));
    }
    for (int i = 0; i < 256; ++i) {  // q = low2 - 4 + 4 * hbit; low2 laid out as Q2_K, hbit in hmask[i % 32]
        const int n = i / 128, j = (i % 128) / 32, byte = 32 * n + i % 32;
        const int stored = q[i] + 4;  // 0..7: bit 2 is the hmask bit
        b.qs[byte] = static_cast<std::uint8_t>(b.qs[byte] | ((stored & 3) << (2 * j)));
        if (stored & 4) b.hmask[i % 32] = static_cast<std::uint8_t>(b.hmask[i % 32] | (1 << (4 * n + j)));
    }
    const auto out = decode(GgmlType::Q3_K, b);
    for (int i = 0; i < 256; ++i) CHECK(out[i] == 0.125f * static_cast<float>(scale[i / 16] * q[i]));
}

namespace {
// Packs eight 6-bit (scale, min) pairs as Q4_K/Q5_K do.
void pack_k4_scales(const int (&scale)[8], const int (&min)[8], std::uint8_t (&out)[12]) {
    for (int j = 0; j < 4; ++j) {
        out[j] = static_cast<std::uint8_t>(scale[j] | ((scale[j + 4] >> 4) << 6));
        out[j + 4] = static_cast<std::uint8_t>(min[j] | ((min[j + 4] >> 4) << 6));
        out[j + 8] = static_cast<std::uint8_t>((scale[j + 4] & 15) | ((min[j + 4] & 15) << 4));
    }
}
}  // namespace

TEST_CASE("dequantize: Q4_K and Q5_K") {
    Lcg rng{4};
    int q[256], scale[8], min[8];
    for (int& v : q) v = rng.next(0, 31);
    for (int i = 0; i < 8; ++i) {
        scale[i] = rng.next(0, 63);
        min[i] = rng.next(0, 63);
    }
    scale[7] = 63;  // exercise the top bits of the packing
    min[5] = 63;
    BlockQ4_K b4{};
    b4.d.bits = h(0.25f);
    b4.dmin.bits = h(0.5f);
    pack_k4_scales(scale, min, b4.scales);
    BlockQ5_K b5{};
    b5.d = b4.d;
    b5.dmin = b4.dmin;
    std::memcpy(b5.scales, b4.scales, 12);
    // weight i: chunk c = i / 64 uses qs[32c .. 32c + 31], low nibbles for the first 32, high for the rest
    for (int i = 0; i < 256; ++i) {
        const int c = i / 64, upper = (i % 64) / 32, l = i % 32;
        b4.qs[32 * c + l] = static_cast<std::uint8_t>(b4.qs[32 * c + l] | ((q[i] & 15) << (4 * upper)));
        b5.qs[32 * c + l] = b4.qs[32 * c + l];
        if (q[i] & 16) b5.qh[l] = static_cast<std::uint8_t>(b5.qh[l] | (1 << (2 * c + upper)));
    }
    const auto out4 = decode(GgmlType::Q4_K, b4);
    const auto out5 = decode(GgmlType::Q5_K, b5);
    for (int i = 0; i < 256; ++i) {
        const int sub = i / 32;
        CHECK(out4[i] == 0.25f * static_cast<float>(scale[sub] * (q[i] & 15)) - 0.5f * static_cast<float>(min[sub]));
        CHECK(out5[i] == 0.25f * static_cast<float>(scale[sub] * q[i]) - 0.5f * static_cast<float>(min[sub]));
    }
}

TEST_CASE("dequantize: Q6_K") {
    Lcg rng{6};
    int q[256], scale[16];
    for (int& v : q) v = rng.next(-32, 31);
    for (int& s : scale) s = rng.next(-128, 127);
    BlockQ6_K b{};
    b.d.bits = h(0.0078125f);  // 2^-7
    for (int i = 0; i < 16; ++i) b.scales[i] = static_cast<std::int8_t>(scale[i]);
    // weight i: half n = i / 128, group g = (i % 128) / 32, l = i % 32; low 4 bits in ql[64n + l + 32 (g odd)],
    // nibble g / 2; high 2 bits in qh[32n + l] at bit 2g
    for (int i = 0; i < 256; ++i) {
        const int n = i / 128, g = (i % 128) / 32, l = i % 32;
        const int u = q[i] + 32;
        std::uint8_t& low = b.ql[64 * n + l + 32 * (g % 2)];
        low = static_cast<std::uint8_t>(low | ((u & 15) << (4 * (g / 2))));
        b.qh[32 * n + l] = static_cast<std::uint8_t>(b.qh[32 * n + l] | ((u >> 4) << (2 * g)));
    }
    const auto out = decode(GgmlType::Q6_K, b);
    for (int i = 0; i < 256; ++i) CHECK(out[i] == 0.0078125f * static_cast<float>(scale[i / 16] * q[i]));
}

TEST_CASE("dequantize: Q8_K") {
    BlockQ8_K b{};
    b.d = 0.5f;
    for (int i = 0; i < 256; ++i) b.qs[i] = static_cast<std::int8_t>(i - 128);
    const auto out = decode(GgmlType::Q8_K, b);
    for (int i = 0; i < 256; ++i) CHECK(out[i] == 0.5f * static_cast<float>(i - 128));
}

TEST_CASE("dequantize_row: several blocks and argument errors") {
    BlockQ8_0 blocks[2]{};
    blocks[0].d.bits = h(1.0f);
    blocks[1].d.bits = h(2.0f);
    blocks[0].qs[3] = 5;
    blocks[1].qs[3] = 5;
    std::vector<std::byte> bytes(sizeof(blocks));
    std::memcpy(bytes.data(), blocks, sizeof(blocks));
    std::vector<float> out(64);
    dequantize_row(GgmlType::Q8_0, bytes, out);
    CHECK(out[3] == 5.0f);
    CHECK(out[35] == 10.0f);

    std::vector<float> bad(33);
    CHECK_THROWS_AS(dequantize_row(GgmlType::Q8_0, bytes, bad), shape_error);
    std::vector<float> short_out(32);
    CHECK_THROWS_AS(dequantize_row(GgmlType::Q8_0, bytes, short_out), shape_error);
    std::vector<std::byte> iq(66);
    std::vector<float> iq_out(256);
    CHECK_THROWS_AS(dequantize_row(GgmlType::IQ2_XXS, iq, iq_out), config_error);
}

namespace {
std::vector<float> round_trip(GgmlType type, const std::vector<float>& x) {
    std::vector<std::byte> packed(x.size() / ggml_block_size(type) * ggml_bytes_per_block(type));
    quantize_row(type, x, packed);
    std::vector<float> y(x.size());
    dequantize_row(type, packed, y);
    return y;
}
}  // namespace

TEST_CASE("quantize: Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 round trips stay within half a step") {
    Lcg rng{7};
    std::vector<float> x(32 * 8);
    for (float& v : x) v = static_cast<float>(rng.next(-10000, 10000)) / 4000.0f;
    for (int i = 0; i < 32; ++i) x[32 + i] = 0.0f;  // an all-zero block must stay zero (d = 0)

    // Bound per type: asymmetric grids and Q8_0 err by at most half a step d; Q4_0 / Q5_0 put the
    // largest-magnitude value at q = 0, so the opposite extreme clamps to q = 15 / 31, one full step away.
    struct Case {
        GgmlType type;
        float steps;      // range / d
        float max_error;  // in units of d
        bool asym;
    };
    for (const Case c : {Case{GgmlType::Q4_0, 8, 1.0f, false}, Case{GgmlType::Q4_1, 15, 0.5f, true},
                         Case{GgmlType::Q5_0, 16, 1.0f, false}, Case{GgmlType::Q5_1, 31, 0.5f, true},
                         Case{GgmlType::Q8_0, 127, 0.5f, false}}) {
        CAPTURE(ggml_type_name(c.type));
        const auto y = round_trip(c.type, x);
        for (std::size_t b = 0; b < x.size() / 32; ++b) {
            float lo = x[b * 32], hi = x[b * 32];
            for (int j = 0; j < 32; ++j) {
                lo = std::min(lo, x[b * 32 + j]);
                hi = std::max(hi, x[b * 32 + j]);
            }
            const float amax = std::max(std::fabs(lo), std::fabs(hi));
            const float d = (c.asym ? hi - lo : amax) / c.steps;
            for (int j = 0; j < 32; ++j) {
                // plus fp16 rounding of d and m (relative 2^-11, times at most 32 steps)
                CHECK(std::fabs(y[b * 32 + j] - x[b * 32 + j]) <= c.max_error * d + amax * 0.002f);
            }
        }
        for (int i = 0; i < 32; ++i) CHECK(y[32 + i] == 0.0f);
    }
}

TEST_CASE("quantize: exact grid values are reproduced exactly") {
    std::vector<float> x(32);
    for (int i = 0; i < 32; ++i) x[i] = static_cast<float>((i % 16) - 8) * 0.5f;  // amax 4 at -4 -> d = 0.5
    CHECK(round_trip(GgmlType::Q4_0, x) == x);
    for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i % 16) * 0.25f + 1.0f;  // min 1, d = 0.25
    CHECK(round_trip(GgmlType::Q4_1, x) == x);
    for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i * 8 - 127);  // amax 127 -> d = 1
    x[0] = -127.0f;
    CHECK(round_trip(GgmlType::Q8_0, x) == x);

    // Known Q4_0 bytes: the largest-magnitude value (-4) gets q = 0 and d = -4 / -8 = 0.5
    std::vector<std::byte> packed(18);
    std::vector<float> y(32, 0.0f);
    y[0] = -4.0f;
    y[16] = 3.5f;
    quantize_row(GgmlType::Q4_0, y, packed);
    std::uint16_t d = 0;
    std::memcpy(&d, packed.data(), 2);
    CHECK(d == float_to_fp16_bits(0.5f));
    CHECK(packed[2] == std::byte{0xF0});  // weight 0 -> q 0 (low nibble), weight 16 -> 3.5 / 0.5 + 8 = 15
    CHECK(packed[3] == std::byte{0x88});  // zeros -> q 8
}

TEST_CASE("quantize: argument errors") {
    std::vector<float> x(32, 1.0f);
    std::vector<std::byte> packed(18);
    CHECK_THROWS_AS(quantize_row(GgmlType::Q4_0, std::span<const float>(x).first(31), packed), shape_error);
    std::vector<std::byte> wrong(17);
    CHECK_THROWS_AS(quantize_row(GgmlType::Q4_0, x, wrong), shape_error);
    x[3] = std::nanf("");
    CHECK_THROWS_AS(quantize_row(GgmlType::Q4_0, x, packed), numeric_error);
    std::vector<std::byte> k(144);
    std::vector<float> xk(256, 1.0f);
    CHECK_THROWS_AS(quantize_row(GgmlType::Q4_K, xk, k), config_error);
}
