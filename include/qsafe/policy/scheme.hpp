#pragma once
// A quantization scheme: one bundle of policies, checked once here so that every component below can
// assume a sensible combination. Nonsense combinations stop compilation with a message naming the policy.
//
//   using Int4G128 = qsafe::Scheme<qsafe::Bits<4>, qsafe::GroupSize<128>, qsafe::Asymmetric>;
//   using Nf4G64   = qsafe::Scheme<qsafe::Bits<4>, qsafe::GroupSize<64>, qsafe::Symmetric, qsafe::Nf4>;
#include <cstddef>
#include <string>

#include "qsafe/policy/bits.hpp"
#include "qsafe/policy/codebook.hpp"
#include "qsafe/policy/group_size.hpp"
#include "qsafe/policy/outliers.hpp"
#include "qsafe/policy/scale_mode.hpp"

namespace qsafe {

namespace detail {
template <class C>
constexpr CodebookScope codebook_scope() {
    if constexpr (requires { C::scope; }) return C::scope;
    else return CodebookScope::per_tensor;
}
}  // namespace detail

/// Codes are packed in units of 16 (see formats/packed_codes.hpp); groups must hold whole units.
inline constexpr std::size_t packing_unit = 16;

template <BitWidth B, Grouping G, ScaleMode M = Asymmetric, Codebook C = UniformGrid, OutlierPolicy O = NoOutliers,
          ScaleFormat F = Fp16Scales>
struct Scheme {
    using bits_policy = B;
    using grouping = G;
    using scale_mode = M;
    using codebook = C;
    using outliers = O;
    using scale_format = F;

    static constexpr int bits = B::value;
    static constexpr int levels = B::levels;
    static constexpr std::size_t group_size = G::size;  // 0 = per output channel
    static constexpr bool per_channel = G::per_channel;
    static constexpr bool asymmetric = M::has_zero_point;
    static constexpr bool uniform = is_uniform_grid_v<C>;
    static constexpr bool learned = is_learned_codebook_v<C>;
    static constexpr bool table = is_table_codebook_v<C>;
    static constexpr OutlierKind outlier_kind = O::kind;

    static_assert(per_channel || group_size % packing_unit == 0,
                  "qsafe::GroupSize<N>: N must be a multiple of the packing unit (16 codes)");
    static_assert(per_channel || group_size <= 65536, "qsafe::GroupSize<N>: N must be at most 65536");
    static_assert(!table || requires { requires C::values.size() == static_cast<std::size_t>(B::levels); },
                  "qsafe codebook table: the table must have exactly 2^bits entries for the chosen Bits<N> "
                  "(NF4 and FP4 need Bits<4>)");
    static_assert(uniform || !M::has_zero_point,
                  "qsafe::Asymmetric works only with UniformGrid: table and learned codebooks use a symmetric "
                  "absmax scale (use qsafe::Symmetric)");
    static_assert(!learned || B::value <= 6,
                  "qsafe::LearnedCodebook: at most Bits<6> (a 256-entry scalar codebook is a plain int8 grid)");
    static_assert(!(learned && per_channel && detail::codebook_scope<C>() == CodebookScope::per_group),
                  "qsafe::LearnedCodebook<per_group> with PerChannel: use CodebookScope::per_tensor instead");
};

namespace detail {
template <class S>
concept SchemeShape = requires {
    typename S::bits_policy;
    typename S::grouping;
    typename S::scale_mode;
    typename S::codebook;
    typename S::outliers;
    typename S::scale_format;
};
}  // namespace detail

/// A bundle of policies that qsafe's storage, quantizers and kernels accept.
template <class S>
concept QuantScheme = detail::SchemeShape<S> && BitWidth<typename S::bits_policy> && Grouping<typename S::grouping> &&
                      ScaleMode<typename S::scale_mode> && Codebook<typename S::codebook> &&
                      OutlierPolicy<typename S::outliers> && ScaleFormat<typename S::scale_format>;

/// A readable description of a scheme's policies, for logs and test names, e.g. "int4-g128-asym-f16".
template <QuantScheme S>
std::string describe_scheme() {
    // "int4", "cb4" / "cb4pg" (learned per tensor / per group), or a table's name with its width ("nf4:4b").
    std::string s = S::codebook::name;
    if constexpr (S::table) s += ":";
    s += std::to_string(S::bits);
    if constexpr (S::table) s += "b";
    if constexpr (S::learned && detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group) s += "pg";
    s += S::per_channel ? "-pc" : "-g" + std::to_string(S::group_size);
    s += S::asymmetric ? "-asym" : "-sym";
    s += "-";
    s += S::scale_format::name;
    if constexpr (S::outlier_kind == OutlierKind::columns) s += "+ocol" + std::to_string(S::outliers::default_columns);
    if constexpr (S::outlier_kind == OutlierKind::sparse) s += "+sparse";
    return s;
}

}  // namespace qsafe
