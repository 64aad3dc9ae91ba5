#pragma once
// Run-time choice of a scheme by name, for command lines and config files. Each entry binds a name to a
// precompiled Scheme<...>: its RTN quantizer, its deserializer and its kernels (through QuantizedLinear).
// Names with outlier policies take the amount as a suffix, e.g. "int4-g128-asym+ocol128" (128 fp16 input
// columns) or "int3-g128-asym+sparse0.5%" (0.5 % of the weights in fp16); the entry is registered once as
// "int4-g128-asym+ocol" / "int3-g128-asym+sparse" and the amount is a run-time option. The name grammar is
// SchemeSpec's (scheme_spec.hpp).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/formats/matrix_serialization.hpp"
#include "qsafe/policy/scheme.hpp"
#include "qsafe/quant/gptq.hpp"
#include "qsafe/quant/hqq.hpp"
#include "qsafe/quant/quantize_options.hpp"
#include "qsafe/quant/rtn.hpp"
#include "qsafe/registry/protected_linear.hpp"
#include "qsafe/registry/quantized_linear.hpp"
#include "qsafe/registry/scheme_spec.hpp"

namespace qsafe {

struct SchemeEntry {
    std::string name;         // registered name ("int4-g128-asym", "int3-g128-asym+sparse")
    std::string description;  // the policies, e.g. "int4-g128-asym-f16"
    int bits = 0;             // code bits (32 for fp32)
    OutlierKind outliers = OutlierKind::none;
    std::size_t default_outlier_columns = 0;
    double default_outlier_fraction = 0.0;
    /// Storage bytes for a rows x cols matrix with the given outlier amounts.
    std::function<std::size_t(std::size_t rows, std::size_t cols, std::size_t outlier_columns, double outlier_fraction)>
        storage_bytes;
    std::function<std::unique_ptr<QuantizedLinear>(ConstMatrixView, const QuantizeOptions&, const std::string& name)> quantize_rtn;
    std::function<std::unique_ptr<QuantizedLinear>(std::span<const std::byte>, const std::string& name)> deserialize;
    /// GPTQ with the layer's calibration Hessian; empty for schemes GPTQ cannot drive (the caller reports it).
    std::function<std::unique_ptr<QuantizedLinear>(ConstMatrixView, const Eigen::MatrixXf& hessian, const GptqOptions&,
                                                   const QuantizeOptions&, const std::string& name)>
        quantize_gptq;
    /// HQQ (calibration-free, half-quadratic refinement of each group's parameters).
    std::function<std::unique_ptr<QuantizedLinear>(ConstMatrixView, const HqqOptions&, const QuantizeOptions&, const std::string& name)>
        quantize_hqq;
};

/// A scheme name resolved against the registry: the entry plus the amounts parsed from the name.
struct ResolvedScheme {
    const SchemeEntry* entry = nullptr;
    SchemeSpec spec;        // with the entry's default amount filled in
    std::string full_name;  // spec.to_string(), e.g. "int3-g128-asym+sparse0.5%"
    std::optional<std::size_t> outlier_columns;
    std::optional<double> outlier_fraction;

    QuantizeOptions apply(QuantizeOptions opt) const {
        if (outlier_columns) opt.outlier_columns = outlier_columns;
        if (outlier_fraction) opt.outlier_fraction = outlier_fraction;
        return opt;
    }
};

struct SchemeListing {
    std::string name;         // with the default amount for outlier schemes
    std::string description;
    double bits_per_weight;   // of a 4096 x 4096 matrix, every stored byte counted
};

class SchemeRegistry {
  public:
    /// `entry.name` is a base name, or base + "+ocol" / "+sparse" for an outlier scheme (SchemeSpec).
    void add(SchemeEntry entry) {
        if (entry.name.empty() || entry.name.find_first_of(" ,=:") != std::string::npos)
            throw config_error("scheme registry: invalid scheme name '" + entry.name + "'");
        const SchemeSpec spec = SchemeSpec::parse(entry.name);
        if (spec.registry_key() != entry.name || spec.outliers != entry.outliers)
            throw config_error("scheme registry: '" + entry.name + "' must be a base name without '+'" +
                               (entry.outliers == OutlierKind::none ? "" : ", followed by '+ocol' or '+sparse' to match its outlier policy"));
        std::lock_guard lock(mutex_);
        std::string key = entry.name;  // not entries_[entry.name] = ...(std::move(entry)): the right side runs first
        entries_[std::move(key)] = std::make_shared<const SchemeEntry>(std::move(entry));
    }
    const SchemeEntry* find(std::string_view name) const {
        std::lock_guard lock(mutex_);
        const auto it = entries_.find(std::string(name));
        return it == entries_.end() ? nullptr : it->second.get();
    }
    std::vector<std::string> names() const {
        std::lock_guard lock(mutex_);
        std::vector<std::string> out;
        for (const auto& [name, entry] : entries_) out.push_back(name);
        return out;
    }

  private:
    mutable std::mutex mutex_;
    std::map<std::string, std::shared_ptr<const SchemeEntry>, std::less<>> entries_;
};

inline SchemeRegistry& scheme_registry() {
    static SchemeRegistry registry;
    return registry;
}

namespace detail {
template <QuantScheme S>
std::size_t scheme_storage_bytes(std::size_t rows, std::size_t cols, std::size_t outlier_columns, double outlier_fraction) {
    const std::size_t padded = round_up(cols, codes_per_unit);
    const std::size_t group = S::per_channel ? padded : S::group_size;
    const std::size_t groups = (cols + group - 1) / group;
    std::size_t bytes = rows * packed_row_bytes(padded, S::bits);
    bytes += rows * groups * sizeof(typename S::scale_format::storage_type);
    if constexpr (S::asymmetric) bytes += rows * groups;
    bytes += QuantizedMatrix<S>::codebook_sets(rows, groups) * static_cast<std::size_t>(S::levels) * sizeof(fp16_t);
    if constexpr (S::outlier_kind == OutlierKind::columns)
        bytes += std::min(outlier_columns, cols) * (sizeof(std::uint32_t) + rows * sizeof(fp16_t));
    if constexpr (S::outlier_kind == OutlierKind::sparse)
        bytes += (rows + 1) * sizeof(std::uint32_t) +
                 static_cast<std::size_t>(outlier_fraction * static_cast<double>(rows * cols) + 0.5) *
                     (sizeof(std::uint16_t) + sizeof(fp16_t));
    return bytes;
}
}  // namespace detail

/// Registers scheme S under `name` (for outlier schemes: the name without the amount, ending in "+ocol" or
/// "+sparse"). Re-registering a name replaces the entry.
template <QuantScheme S>
void register_scheme(std::string name, SchemeRegistry& registry = scheme_registry()) {
    SchemeEntry e;
    e.name = std::move(name);
    e.description = describe_scheme<S>();
    e.bits = S::bits;
    e.outliers = S::outlier_kind;
    if constexpr (S::outlier_kind == OutlierKind::columns) e.default_outlier_columns = S::outliers::default_columns;
    if constexpr (S::outlier_kind == OutlierKind::sparse) e.default_outlier_fraction = S::outliers::default_fraction;
    e.storage_bytes = &detail::scheme_storage_bytes<S>;
    e.quantize_rtn = [](ConstMatrixView w, const QuantizeOptions& opt, const std::string& full_name) -> std::unique_ptr<QuantizedLinear> {
        return std::make_unique<QuantizedLinearOf<S>>(quantize_rtn<S>(w, opt), full_name);
    };
    e.deserialize = [](std::span<const std::byte> bytes, const std::string& full_name) -> std::unique_ptr<QuantizedLinear> {
        return std::make_unique<QuantizedLinearOf<S>>(deserialize_quantized_matrix<S>(bytes, "scheme " + full_name), full_name);
    };
    e.quantize_gptq = [](ConstMatrixView w, const Eigen::MatrixXf& h, const GptqOptions& g, const QuantizeOptions& opt,
                         const std::string& full_name) -> std::unique_ptr<QuantizedLinear> {
        return std::make_unique<QuantizedLinearOf<S>>(quantize_gptq<S>(w, h, g, opt), full_name);
    };
    e.quantize_hqq = [](ConstMatrixView w, const HqqOptions& h, const QuantizeOptions& opt,
                        const std::string& full_name) -> std::unique_ptr<QuantizedLinear> {
        return std::make_unique<QuantizedLinearOf<S>>(quantize_hqq<S>(w, h, opt), full_name);
    };
    registry.add(std::move(e));
}

/// A column count the scheme name states ("+ocol512") must fit the tensor: the policy would otherwise keep
/// every column it has and the name (and the bits counted for it) would say something else. A scheme's
/// default count is capped at the width instead (test models are narrower than the defaults).
inline void check_named_outlier_columns(std::string_view scheme, const std::string& tensor, std::size_t cols) {
    SchemeSpec spec;
    try {
        spec = SchemeSpec::parse(scheme);
    } catch (const config_error&) {
        return;  // resolve_scheme() reports a name that does not parse, with the known names
    }
    if (spec.outlier_columns && *spec.outlier_columns > cols)
        throw config_error("tensor '" + tensor + "': scheme '" + std::string(scheme) + "' keeps " + std::to_string(*spec.outlier_columns) +
                           " outlier columns, but the tensor has " + std::to_string(cols) + " columns");
}

/// Resolves "int4-g128-asym", "int4-g128-asym+ocol64", "int3-g128-asym+sparse0.5%" (or "+sparse" alone for
/// the default amount). Throws config_error listing the known names when nothing matches.
inline ResolvedScheme resolve_scheme(std::string_view name, const SchemeRegistry& registry = scheme_registry()) {
    auto fail = [&](const std::string& why) -> ResolvedScheme {
        std::string known;
        for (const auto& n : registry.names()) known += (known.empty() ? "" : ", ") + n;
        throw config_error("unknown quantization scheme '" + std::string(name) + "'" + (why.empty() ? "" : " (" + why + ")") +
                           "; known schemes: " + known);
    };
    ResolvedScheme r;
    try {
        r.spec = SchemeSpec::parse(name);
    } catch (const config_error& e) {
        return fail(e.what());
    }
    if (r.spec.protected_fraction)
        return fail("'+protect' names a stored layer with protected weights, not a scheme to quantize with");
    r.entry = registry.find(r.spec.registry_key());
    if (!r.entry) return fail(r.spec.outliers == OutlierKind::none ? "" : "no outlier variant '" + r.spec.registry_key() + "' is registered");
    if (r.spec.outliers == OutlierKind::columns) {
        if (!r.spec.outlier_columns) r.spec.outlier_columns = r.entry->default_outlier_columns;
        r.outlier_columns = r.spec.outlier_columns;
    }
    if (r.spec.outliers == OutlierKind::sparse) {
        if (!r.spec.sparse_fraction) r.spec.sparse_fraction = r.entry->default_outlier_fraction;
        r.outlier_fraction = r.spec.sparse_fraction;
    }
    r.full_name = r.spec.to_string();
    return r;
}

/// Quantizes w by round-to-nearest under the named scheme ("fp32" keeps it dense).
inline std::unique_ptr<QuantizedLinear> quantize_by_name(std::string_view scheme, ConstMatrixView w,
                                                         const QuantizeOptions& opt = {},
                                                         const SchemeRegistry& registry = scheme_registry()) {
    const ResolvedScheme r = resolve_scheme(scheme, registry);
    return r.entry->quantize_rtn(w, r.apply(opt), r.full_name);
}

/// Bytes a rows x cols layer takes under the named scheme (the amounts in the name, or the scheme's
/// defaults, capped at the tensor's width), without quantizing anything: what a loader adds up to refuse a
/// model that cannot fit before it allocates any of it.
inline std::uint64_t scheme_storage_bytes_by_name(std::string_view scheme, std::size_t rows, std::size_t cols,
                                                  const SchemeRegistry& registry = scheme_registry()) {
    const ResolvedScheme r = resolve_scheme(scheme, registry);
    return r.entry->storage_bytes(rows, cols, std::min(r.outlier_columns.value_or(0), cols), r.outlier_fraction.value_or(0.0));
}

/// Loads a layer serialized by QuantizedLinear::serialize() under the named scheme (a name with
/// "+protect<percent>" is a ProtectedLinear over the scheme before the suffix).
inline std::unique_ptr<QuantizedLinear> deserialize_by_name(std::string_view scheme, std::span<const std::byte> bytes,
                                                            const SchemeRegistry& registry = scheme_registry()) {
    const SchemeSpec spec = SchemeSpec::parse(scheme);
    if (spec.protected_fraction) {
        const ResolvedScheme r = resolve_scheme(spec.without_protection().to_string(), registry);
        return ProtectedLinear::deserialize(bytes, std::string(scheme), [&](std::span<const std::byte> base_bytes) {
            return r.entry->deserialize(base_bytes, r.full_name);
        });
    }
    const ResolvedScheme r = resolve_scheme(scheme, registry);
    return r.entry->deserialize(bytes, r.full_name);
}

/// Every registered scheme with its bits per weight on a 4096 x 4096 matrix (outlier schemes at their
/// default amount), sorted by name.
inline std::vector<SchemeListing> list_schemes(const SchemeRegistry& registry = scheme_registry()) {
    std::vector<SchemeListing> out;
    for (const auto& name : registry.names()) {
        const SchemeEntry* e = registry.find(name);
        const std::string shown = resolve_scheme(name, registry).full_name;  // the default amount filled in
        const double bytes = static_cast<double>(e->storage_bytes(4096, 4096, e->default_outlier_columns, e->default_outlier_fraction));
        out.push_back({shown, e->description, 8.0 * bytes / (4096.0 * 4096.0)});
    }
    return out;
}

}  // namespace qsafe
