#pragma once
// The precompiled schemes qsafe's tools offer by name. Including this header registers them (once per
// program, through an inline variable); it instantiates every scheme's quantizer and kernels, so include it
// from one translation unit of a program, not from every file.
#include <cstddef>
#include <memory>

#include "qsafe/registry/builtin_scheme_list.hpp"
#include "qsafe/registry/scheme_registry.hpp"
#include "qsafe/registry/vector_schemes.hpp"

namespace qsafe {

inline void register_builtin_schemes(SchemeRegistry& r = scheme_registry()) {
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

    for_each_builtin_scheme([&]<class S>(const char* name) { register_scheme<S>(name, r); });
    register_vector_schemes(r);  // vq2-d4, vq2-d8x2
}

namespace detail {
// A per-translation-unit static rather than an inline variable: compilers may drop an unused inline
// variable together with its initializer. Registering twice is harmless (entries are replaced).
[[maybe_unused]] static const bool builtin_schemes_registered = (register_builtin_schemes(), true);
}  // namespace detail

}  // namespace qsafe
