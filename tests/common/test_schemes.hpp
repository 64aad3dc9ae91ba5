#pragma once
// Schemes the conformance suites run over: every policy at least once, plus a user-style custom codebook
// defined outside namespace qsafe (the extension contract is the concepts, nothing else).
#include <array>
#include <string>

#include <doctest/doctest.h>

#include "qsafe/policy/scheme.hpp"

namespace user_space {
/// A user's own 4-bit table: llama.cpp's IQ4_NL non-linear levels, normalised to [-1, 1].
struct Iq4NlTable {
    static constexpr const char* name = "iq4nl";
    static constexpr std::array<float, 16> values = {
        -127 / 127.f, -104 / 127.f, -83 / 127.f, -65 / 127.f, -49 / 127.f, -35 / 127.f, -22 / 127.f, -10 / 127.f,
        1 / 127.f,    13 / 127.f,   25 / 127.f,  38 / 127.f,  53 / 127.f,  69 / 127.f,  89 / 127.f,  113 / 127.f};
};
}  // namespace user_space

namespace test_schemes {
using namespace qsafe;
using Int2G32 = Scheme<Bits<2>, GroupSize<32>>;
using Int3G128 = Scheme<Bits<3>, GroupSize<128>>;
using Int4G32Sym = Scheme<Bits<4>, GroupSize<32>, Symmetric>;
using Int4G128 = Scheme<Bits<4>, GroupSize<128>>;
using Int5G64 = Scheme<Bits<5>, GroupSize<64>>;
using Int6G16SymF32 = Scheme<Bits<6>, GroupSize<16>, Symmetric, UniformGrid, NoOutliers, Fp32Scales>;
using Int8PcSym = Scheme<Bits<8>, PerChannel, Symmetric>;
using Nf4G64 = Scheme<Bits<4>, GroupSize<64>, Symmetric, Nf4>;
using Fp4G64 = Scheme<Bits<4>, GroupSize<64>, Symmetric, Fp4E2M1>;
using Cb4G128 = Scheme<Bits<4>, GroupSize<128>, Symmetric, LearnedCodebook<>>;
using Cb3G64PerGroup = Scheme<Bits<3>, GroupSize<64>, Symmetric, LearnedCodebook<CodebookScope::per_group>>;
using Int4G128Ocol = Scheme<Bits<4>, GroupSize<128>, Asymmetric, UniformGrid, OutlierColumns<8>>;
using Int3G128Sparse = Scheme<Bits<3>, GroupSize<128>, Asymmetric, UniformGrid, SparseOutliers<5000>>;
using UserIq4G32 = Scheme<Bits<4>, GroupSize<32>, Symmetric, user_space::Iq4NlTable>;
}  // namespace test_schemes

#define QSAFE_TEST_SCHEME_LIST                                                                                     \
    test_schemes::Int2G32, test_schemes::Int3G128, test_schemes::Int4G32Sym, test_schemes::Int4G128,               \
        test_schemes::Int5G64, test_schemes::Int6G16SymF32, test_schemes::Int8PcSym, test_schemes::Nf4G64,         \
        test_schemes::Fp4G64, test_schemes::Cb4G128, test_schemes::Cb3G64PerGroup, test_schemes::Int4G128Ocol,     \
        test_schemes::Int3G128Sparse, test_schemes::UserIq4G32

TYPE_TO_STRING(test_schemes::Int2G32);
TYPE_TO_STRING(test_schemes::Int3G128);
TYPE_TO_STRING(test_schemes::Int4G32Sym);
TYPE_TO_STRING(test_schemes::Int4G128);
TYPE_TO_STRING(test_schemes::Int5G64);
TYPE_TO_STRING(test_schemes::Int6G16SymF32);
TYPE_TO_STRING(test_schemes::Int8PcSym);
TYPE_TO_STRING(test_schemes::Nf4G64);
TYPE_TO_STRING(test_schemes::Fp4G64);
TYPE_TO_STRING(test_schemes::Cb4G128);
TYPE_TO_STRING(test_schemes::Cb3G64PerGroup);
TYPE_TO_STRING(test_schemes::Int4G128Ocol);
TYPE_TO_STRING(test_schemes::Int3G128Sparse);
TYPE_TO_STRING(test_schemes::UserIq4G32);
