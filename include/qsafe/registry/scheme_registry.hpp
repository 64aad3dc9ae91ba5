#pragma once
// Run-time choice of a scheme by name, for command lines and config files. Each entry binds a name to a
// precompiled Scheme<...>: its RTN quantizer, its deserializer and its kernels (through QuantizedLinear).
// Names with outlier policies take the amount as a suffix, e.g. "int4-g128-asym+ocol128" (128 fp16 input
// columns) or "int3-g128-asym+sparse0.5%" (0.5 % of the weights in fp16); the entry is registered once as
// "int4-g128-asym+ocol" / "int3-g128-asym+sparse" and the amount is a run-time option.
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdio>
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
    std::string full_name;  // canonical, e.g. "int3-g128-asym+sparse0.5%"
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
    void add(SchemeEntry entry) {
        std::lock_guard lock(mutex_);
        if (entry.name.empty() || entry.name.find_first_of(" ,=:") != std::string::npos)
            throw config_error("scheme registry: invalid scheme name '" + entry.name + "'");
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

/// A fraction as a percentage with at most 3 significant digits ("0.5%" for 0.00500036): the amount in a
/// scheme name is for people; the exact count of outliers or protected weights is in the layer's bytes.
inline std::string format_percent(double fraction) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", fraction * 100.0);
    std::string s = buf;
    if (s.find('e') != std::string::npos) {  // below 1e-4 %: plain decimals rather than an exponent
        s = std::to_string(fraction * 100.0);
        while (!s.empty() && s.back() == '0') s.pop_back();
        if (!s.empty() && s.back() == '.') s.pop_back();
    }
    return s + "%";
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

/// Resolves "int4-g128-asym", "int4-g128-asym+ocol64", "int3-g128-asym+sparse0.5%" (or "+sparse" alone for
/// the default amount). Throws config_error listing the known names when nothing matches.
inline ResolvedScheme resolve_scheme(std::string_view name, const SchemeRegistry& registry = scheme_registry()) {
    ResolvedScheme r;
    if (const SchemeEntry* e = registry.find(name); e && e->outliers == OutlierKind::none) {
        r.entry = e;
        r.full_name = std::string(name);
        return r;
    }
    auto fail = [&](const std::string& why) -> ResolvedScheme {
        std::string known;
        for (const auto& n : registry.names()) known += (known.empty() ? "" : ", ") + n;
        throw config_error("unknown quantization scheme '" + std::string(name) + "'" + (why.empty() ? "" : " (" + why + ")") +
                           "; known schemes: " + known);
    };
    for (const std::string_view marker : {std::string_view("+ocol"), std::string_view("+sparse")}) {
        const auto pos = name.find(marker);
        if (pos == std::string_view::npos) continue;
        const std::string base(name.substr(0, pos + marker.size()));
        const SchemeEntry* e = registry.find(base);
        if (!e) return fail("no outlier variant '" + base + "' is registered");
        std::string_view amount = name.substr(pos + marker.size());
        r.entry = e;
        if (marker == "+ocol") {
            std::size_t k = e->default_outlier_columns;
            if (!amount.empty()) {
                const auto [ptr, ec] = std::from_chars(amount.data(), amount.data() + amount.size(), k);
                if (ec != std::errc{} || ptr != amount.data() + amount.size()) return fail("bad column count");
            }
            r.outlier_columns = k;
            r.full_name = base + std::to_string(k);
        } else {
            double fraction = e->default_outlier_fraction;
            if (!amount.empty()) {
                if (amount.back() != '%') return fail("the sparse amount is a percentage, e.g. +sparse0.5%");
                amount.remove_suffix(1);
                double percent = 0.0;
                const auto [ptr, ec] = std::from_chars(amount.data(), amount.data() + amount.size(), percent);
                if (ec != std::errc{} || ptr != amount.data() + amount.size() || percent < 0.0 || percent > 100.0)
                    return fail("bad percentage");
                fraction = percent / 100.0;
            }
            r.outlier_fraction = fraction;
            r.full_name = base + detail::format_percent(fraction);
        }
        return r;
    }
    return fail("");
}

/// Quantizes w by round-to-nearest under the named scheme ("fp32" keeps it dense).
inline std::unique_ptr<QuantizedLinear> quantize_by_name(std::string_view scheme, ConstMatrixView w,
                                                         const QuantizeOptions& opt = {},
                                                         const SchemeRegistry& registry = scheme_registry()) {
    const ResolvedScheme r = resolve_scheme(scheme, registry);
    return r.entry->quantize_rtn(w, r.apply(opt), r.full_name);
}

/// Loads a layer serialized by QuantizedLinear::serialize() under the named scheme (a name ending in
/// "+protect<percent>" is a ProtectedLinear over the scheme before the suffix).
inline std::unique_ptr<QuantizedLinear> deserialize_by_name(std::string_view scheme, std::span<const std::byte> bytes,
                                                            const SchemeRegistry& registry = scheme_registry()) {
    if (const std::string_view base = protected_base_scheme(scheme); base.size() != scheme.size()) {
        const ResolvedScheme r = resolve_scheme(base, registry);
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
        std::string shown = name;
        if (e->outliers == OutlierKind::columns) shown += std::to_string(e->default_outlier_columns);
        if (e->outliers == OutlierKind::sparse) shown += detail::format_percent(e->default_outlier_fraction);
        const double bytes = static_cast<double>(e->storage_bytes(4096, 4096, e->default_outlier_columns, e->default_outlier_fraction));
        out.push_back({shown, e->description, 8.0 * bytes / (4096.0 * 4096.0)});
    }
    return out;
}

}  // namespace qsafe
