#pragma once
// The uniform-grid and codebook schemes qsafe's tools offer by name, as types: one list that both the
// registration (builtin_schemes.hpp) and the instruction-set units of dispatched programs
// (kernels/isa_dispatch.hpp, tools/common/isa_kernels.cpp) walk, so the two cannot disagree.
#include <cstddef>
#include <iterator>

#include "qsafe/policy/scheme.hpp"

namespace qsafe {

namespace builtin {
using Int2G16 = Scheme<Bits<2>, GroupSize<16>>;
using Int2G32 = Scheme<Bits<2>, GroupSize<32>>;
using Int2G64 = Scheme<Bits<2>, GroupSize<64>>;
using Int3G32 = Scheme<Bits<3>, GroupSize<32>>;
using Int3G64 = Scheme<Bits<3>, GroupSize<64>>;
using Int3G128 = Scheme<Bits<3>, GroupSize<128>>;
using Int4G32Sym = Scheme<Bits<4>, GroupSize<32>, Symmetric>;
using Int4G32 = Scheme<Bits<4>, GroupSize<32>>;
using Int4G64 = Scheme<Bits<4>, GroupSize<64>>;
using Int4G128 = Scheme<Bits<4>, GroupSize<128>>;
using Int4G128Sym = Scheme<Bits<4>, GroupSize<128>, Symmetric>;
using Int5G32 = Scheme<Bits<5>, GroupSize<32>>;
using Int6G64 = Scheme<Bits<6>, GroupSize<64>>;
using Int8G32Sym = Scheme<Bits<8>, GroupSize<32>, Symmetric>;
using Int8PcSym = Scheme<Bits<8>, PerChannel, Symmetric>;
using Nf4G64 = Scheme<Bits<4>, GroupSize<64>, Symmetric, Nf4>;
using Fp4G64 = Scheme<Bits<4>, GroupSize<64>, Symmetric, Fp4E2M1>;
using Cb2G64 = Scheme<Bits<2>, GroupSize<64>, Symmetric, LearnedCodebook<>>;
using Cb3G128 = Scheme<Bits<3>, GroupSize<128>, Symmetric, LearnedCodebook<>>;
using Cb4G128 = Scheme<Bits<4>, GroupSize<128>, Symmetric, LearnedCodebook<>>;
template <class Base, std::size_t K>
using WithColumns = Scheme<typename Base::bits_policy, typename Base::grouping, typename Base::scale_mode,
                           typename Base::codebook, OutlierColumns<K>, typename Base::scale_format>;
template <class Base, std::size_t PartsPerMillion>
using WithSparse = Scheme<typename Base::bits_policy, typename Base::grouping, typename Base::scale_mode,
                          typename Base::codebook, SparseOutliers<PartsPerMillion>, typename Base::scale_format>;
}  // namespace builtin

/// A list of types.
template <class... T>
struct TypeList {
    static constexpr std::size_t size = sizeof...(T);
};

namespace builtin {
/// Every built-in quantized scheme (VQ schemes are not types: see registry/vector_schemes.hpp) ...
using SchemeTypes = TypeList<
    Int2G16,
    Int2G32,
    Int2G64,
    Int3G32,
    Int3G64,
    Int3G128,
    Int4G32Sym,
    Int4G32,
    Int4G64,
    Int4G128,
    Int4G128Sym,
    Int5G32,
    Int6G64,
    Int8G32Sym,
    Int8PcSym,
    Nf4G64,
    Fp4G64,
    Cb2G64,
    Cb3G128,
    Cb4G128,
    WithColumns<Int4G128, 128>,
    WithColumns<Int3G128, 128>,
    WithColumns<Int2G32, 64>,
    WithSparse<Int4G128, 5000>,
    WithSparse<Int3G128, 5000>,
    WithSparse<Int2G32, 5000>,
    WithSparse<Int2G64, 5000>>;
/// ... and its name, in the same order. Outlier schemes are named without their amount ("...+ocol", "...+sparse").
inline constexpr const char* scheme_names[] = {
    "int2-g16-asym",
    "int2-g32-asym",
    "int2-g64-asym",
    "int3-g32-asym",
    "int3-g64-asym",
    "int3-g128-asym",
    "int4-g32-sym",
    "int4-g32-asym",
    "int4-g64-asym",
    "int4-g128-asym",
    "int4-g128-sym",
    "int5-g32-asym",
    "int6-g64-asym",
    "int8-g32-sym",
    "int8-pc-sym",
    "nf4-g64",
    "fp4-g64",
    "cb2-g64",
    "cb3-g128",
    "cb4-g128",
    "int4-g128-asym+ocol",
    "int3-g128-asym+ocol",
    "int2-g32-asym+ocol",
    "int4-g128-asym+sparse",
    "int3-g128-asym+sparse",
    "int2-g32-asym+sparse",
    "int2-g64-asym+sparse"};
static_assert(std::size(scheme_names) == SchemeTypes::size);
}  // namespace builtin

/// Calls f.template operator()<S>(name) for every built-in quantized scheme, in list order.
template <class F>
void for_each_builtin_scheme(F&& f) {
    [&]<class... S>(TypeList<S...>) {
        std::size_t i = 0;
        (f.template operator()<S>(builtin::scheme_names[i++]), ...);
    }(builtin::SchemeTypes{});
}

}  // namespace qsafe
