#pragma once
// Schemes the kernel tests run on, covering every policy, plus user-style table codebooks defined here.
#include <array>

#include "qsafe/policy/scheme.hpp"

namespace qsafe::test {

/// A user's own 3-bit table (power-of-two levels): 8 entries -> one-permute lookup.
struct Pow2Table {
    static constexpr const char* name = "pow2tab";
    static constexpr std::array<float, 8> values = {-1.0f, -0.5f, -0.25f, -0.125f, 0.0f, 0.25f, 0.5f, 1.0f};
};
/// A user's own 2-bit table: 4 entries.
struct TernaryPlusTable {
    static constexpr const char* name = "tern+";
    static constexpr std::array<float, 4> values = {-1.0f, 0.0f, 0.4f, 1.0f};
};
/// A user's own 5-bit table: 32 entries -> gather lookup.
struct Linear32Table {
    static constexpr const char* name = "lin32tab";
    static constexpr std::array<float, 32> values = [] {
        std::array<float, 32> v{};
        for (int i = 0; i < 32; ++i) v[static_cast<std::size_t>(i)] = static_cast<float>(i - 15) / 16.0f;
        return v;
    }();
};

using PerTensorCb = LearnedCodebook<CodebookScope::per_tensor>;
using PerGroupCb = LearnedCodebook<CodebookScope::per_group>;

// Uniform grids on 32-code groups (x86 integer and fp32 chunk kernels).
using Int2G32A = Scheme<Bits<2>, GroupSize<32>, Asymmetric>;
using Int3G128A = Scheme<Bits<3>, GroupSize<128>, Asymmetric>;
using Int4G32S = Scheme<Bits<4>, GroupSize<32>, Symmetric>;
using Int4G128A = Scheme<Bits<4>, GroupSize<128>, Asymmetric>;
using Int5G64A = Scheme<Bits<5>, GroupSize<64>, Asymmetric>;
using Int6G32S = Scheme<Bits<6>, GroupSize<32>, Symmetric>;
// Uniform grids: per channel, fp32 scales, 8-bit, groups that are not whole chunks (portable kernel).
using Int8PcS = Scheme<Bits<8>, PerChannel, Symmetric>;
using Int8G64A = Scheme<Bits<8>, GroupSize<64>, Asymmetric>;
using Int4PcAF32 = Scheme<Bits<4>, PerChannel, Asymmetric, UniformGrid, NoOutliers, Fp32Scales>;
using Int2PcS = Scheme<Bits<2>, PerChannel, Symmetric>;
using Int6G96AF32 = Scheme<Bits<6>, GroupSize<96>, Asymmetric, UniformGrid, NoOutliers, Fp32Scales>;
using Int4G16A = Scheme<Bits<4>, GroupSize<16>, Asymmetric>;
using Int3G48S = Scheme<Bits<3>, GroupSize<48>, Symmetric>;
using Int5G80S = Scheme<Bits<5>, GroupSize<80>, Symmetric>;
// Codebooks.
using Nf4G64 = Scheme<Bits<4>, GroupSize<64>, Symmetric, Nf4>;
using Fp4G64F32 = Scheme<Bits<4>, GroupSize<64>, Symmetric, Fp4E2M1, NoOutliers, Fp32Scales>;
using Nf4G16 = Scheme<Bits<4>, GroupSize<16>, Symmetric, Nf4>;
using Cb4G128 = Scheme<Bits<4>, GroupSize<128>, Symmetric, PerTensorCb>;
using Cb4G64Pg = Scheme<Bits<4>, GroupSize<64>, Symmetric, PerGroupCb>;
using Cb2G32Pg = Scheme<Bits<2>, GroupSize<32>, Symmetric, PerGroupCb>;
using Cb3G32Pg = Scheme<Bits<3>, GroupSize<32>, Symmetric, PerGroupCb>;
using Cb5G64 = Scheme<Bits<5>, GroupSize<64>, Symmetric, PerTensorCb>;
using Cb6G32Pg = Scheme<Bits<6>, GroupSize<32>, Symmetric, PerGroupCb>;
using Cb6Pc = Scheme<Bits<6>, PerChannel, Symmetric, PerTensorCb>;
using Pow2G32 = Scheme<Bits<3>, GroupSize<32>, Symmetric, Pow2Table>;
using TernG64 = Scheme<Bits<2>, GroupSize<64>, Symmetric, TernaryPlusTable>;
using Lin32Pc = Scheme<Bits<5>, PerChannel, Symmetric, Linear32Table>;
// Outliers.
using Int4G128AOcol = Scheme<Bits<4>, GroupSize<128>, Asymmetric, UniformGrid, OutlierColumns<128>>;
using Int3G128ASparse = Scheme<Bits<3>, GroupSize<128>, Asymmetric, UniformGrid, SparseOutliers<5000>>;
using Int8PcSOcol = Scheme<Bits<8>, PerChannel, Symmetric, UniformGrid, OutlierColumns<16>>;
using Int2G32ASparse = Scheme<Bits<2>, GroupSize<32>, Asymmetric, UniformGrid, SparseOutliers<10000>>;
using Int4G16ASparse = Scheme<Bits<4>, GroupSize<16>, Asymmetric, UniformGrid, SparseOutliers<10000>>;
using Nf4G64Sparse = Scheme<Bits<4>, GroupSize<64>, Symmetric, Nf4, SparseOutliers<10000>>;
using Cb4G128Ocol = Scheme<Bits<4>, GroupSize<128>, Symmetric, PerTensorCb, OutlierColumns<64>>;
using Pow2G32Ocol = Scheme<Bits<3>, GroupSize<32>, Symmetric, Pow2Table, OutlierColumns<8>>;

}  // namespace qsafe::test

