#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "qsafe/formats/packed_codes.hpp"

using namespace qsafe;

TEST_CASE("packed codes: pack then unpack is the identity for every bit width") {
    std::mt19937 rng(7);
    for (int bits : {2, 3, 4, 5, 6, 8}) {
        CAPTURE(bits);
        for (std::size_t padded : {std::size_t{16}, std::size_t{32}, std::size_t{48}, std::size_t{4096}}) {
            std::vector<std::uint8_t> codes(padded), back(padded);
            for (auto& c : codes) c = static_cast<std::uint8_t>(rng() % (1u << bits));
            std::vector<std::uint8_t> packed(packed_row_bytes(padded, bits), 0xAB);
            pack_row(codes, bits, packed);
            unpack_row(packed, padded, bits, back);
            CHECK(back == codes);
        }
    }
}

TEST_CASE("packed codes: distinct code rows give distinct packed rows (injective), sizes are bits/8 per code") {
    for (int bits : {2, 3, 4, 5, 6, 8}) {
        CHECK(packed_row_bytes(16, bits) == static_cast<std::size_t>(2 * bits));
        // Flipping any single code changes the packed bytes.
        std::vector<std::uint8_t> codes(32, 0), packed_a(packed_row_bytes(32, bits)), packed_b(packed_a.size());
        pack_row(codes, bits, packed_a);
        for (std::size_t i = 0; i < codes.size(); ++i) {
            auto changed = codes;
            changed[i] = static_cast<std::uint8_t>((1u << bits) - 1u);
            pack_row(changed, bits, packed_b);
            CHECK(packed_a != packed_b);
        }
    }
}

TEST_CASE("packed codes: the documented 4-bit and 2-bit unit layouts") {
    std::vector<std::uint8_t> codes(16);
    for (int i = 0; i < 16; ++i) codes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i);
    std::vector<std::uint8_t> p4(8);
    pack_row(codes, 4, p4);
    for (int i = 0; i < 8; ++i) CHECK(p4[static_cast<std::size_t>(i)] == (i | ((i + 8) << 4)));
    for (auto& c : codes) c &= 3;
    std::vector<std::uint8_t> p2(4);
    pack_row(codes, 2, p2);
    // byte i holds codes i, i+4, i+8, i+12 (all equal to i & 3 here).
    for (int i = 0; i < 4; ++i) CHECK(p2[static_cast<std::size_t>(i)] == ((i & 3) * 0x55));
    // 3-bit: low 2-bit plane (4 bytes) then the high-bit plane (2 bytes).
    std::vector<std::uint8_t> c3(16, 4), p3(6);  // code 4 = low 0, high 1
    pack_row(c3, 3, p3);
    CHECK(p3 == std::vector<std::uint8_t>{0, 0, 0, 0, 0xFF, 0xFF});
}
