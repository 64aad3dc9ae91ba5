#pragma once
// The precompiled schemes qsafe's tools offer by name. Including this header registers them (once per
// program, through an inline variable); it instantiates every scheme's quantizer and kernels, so include it
// from one translation unit of a program, not from every file.
#include <cstddef>
#include <memory>

#include "qsafe/registry/scheme_registry.hpp"
#include "qsafe/registry/vector_schemes.hpp"

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

inline void register_builtin_schemes(SchemeRegistry& r = scheme_registry()) {
    using namespace builtin;
    SchemeEntry fp32;
    fp32.name = "fp32";
    fp32.description = "dense fp32 (no quantization)";
    fp32.bits = 32;
    fp32.storage_bytes = [](std::size_t rows, std::size_t cols, std::size_t, double) { return rows * cols * 4; };
    fp32.quantize_rtn = [](ConstMatrixView w, const QuantizeOptions&, const std::string& name) -> std::unique_ptr<QuantizedLinear> {
        RowMatrixF m(static_cast<Eigen::Index>(w.rows), static_cast<Eigen::Index>(w.cols));
        for (std::size_t i = 0; i < w.rows; ++i)
            for (std::size_t j = 0; j < w.cols; ++j) m(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = w(i, j);
        return std::make_unique<DenseLinear>(std::move(m), name);
    };
    fp32.deserialize = [](std::span<const std::byte> bytes, const std::string& name) -> std::unique_ptr<QuantizedLinear> {
        return DenseLinear::deserialize(bytes, name);
    };
    r.add(std::move(fp32));

    register_scheme<Int2G16>("int2-g16-asym", r);
    register_scheme<Int2G32>("int2-g32-asym", r);
    register_scheme<Int2G64>("int2-g64-asym", r);
    register_scheme<Int3G32>("int3-g32-asym", r);
    register_scheme<Int3G64>("int3-g64-asym", r);
    register_scheme<Int3G128>("int3-g128-asym", r);
    register_scheme<Int4G32Sym>("int4-g32-sym", r);
    register_scheme<Int4G32>("int4-g32-asym", r);
    register_scheme<Int4G64>("int4-g64-asym", r);
    register_scheme<Int4G128>("int4-g128-asym", r);
    register_scheme<Int4G128Sym>("int4-g128-sym", r);
    register_scheme<Int5G32>("int5-g32-asym", r);
    register_scheme<Int6G64>("int6-g64-asym", r);
    register_scheme<Int8G32Sym>("int8-g32-sym", r);
    register_scheme<Int8PcSym>("int8-pc-sym", r);
    register_scheme<Nf4G64>("nf4-g64", r);
    register_scheme<Fp4G64>("fp4-g64", r);
    register_scheme<Cb2G64>("cb2-g64", r);
    register_scheme<Cb3G128>("cb3-g128", r);
    register_scheme<Cb4G128>("cb4-g128", r);
    register_scheme<WithColumns<Int4G128, 128>>("int4-g128-asym+ocol", r);
    register_scheme<WithColumns<Int3G128, 128>>("int3-g128-asym+ocol", r);
    register_scheme<WithColumns<Int2G32, 64>>("int2-g32-asym+ocol", r);
    register_scheme<WithSparse<Int4G128, 5000>>("int4-g128-asym+sparse", r);
    register_scheme<WithSparse<Int3G128, 5000>>("int3-g128-asym+sparse", r);
    register_scheme<WithSparse<Int2G32, 5000>>("int2-g32-asym+sparse", r);
    register_scheme<WithSparse<Int2G64, 5000>>("int2-g64-asym+sparse", r);
    register_vector_schemes(r);  // vq2-d4, vq2-d8x2
}

namespace detail {
// A per-translation-unit static rather than an inline variable: compilers may drop an unused inline
// variable together with its initializer. Registering twice is harmless (entries are replaced).
[[maybe_unused]] static const bool builtin_schemes_registered = (register_builtin_schemes(), true);
}  // namespace detail

}  // namespace qsafe
