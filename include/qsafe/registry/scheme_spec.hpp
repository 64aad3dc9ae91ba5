#pragma once
// SchemeSpec: a scheme name as a value. Command lines, scheme rules and quantized files name a layer's
// scheme as one string; this header is the only code that takes such a string apart or puts one together.
// The grammar:
//
//   name      = base [ "+ocol" [count] | "+sparse" [percent "%"] ] [ "+protect" percent "%" ]
//   base      = a registered scheme without outlier policy ("int4-g128-asym", "vq2-d4", "fp32"): no '+'
//
//   "int4-g128-asym+ocol128"          the base's "+ocol" entry with 128 input columns kept in fp16 (QUIK);
//                                     "+ocol" alone takes the entry's default count
//   "int3-g128-asym+sparse0.5%"       the base's "+sparse" entry with 0.5 % of the weights kept in fp16,
//                                     left out of the scale fitting (SpQR style); "+sparse" alone: default
//   "vq2-d4+protect0.2%"              a stored ProtectedLinear (registry/protected_linear.hpp): the layer
//                                     quantized under the rest of the name, 0.2 % of its weights beside it
//                                     in fp16. Written by quantization with protected weights, read back
//                                     by deserialize_by_name(); not a scheme to quantize with.
//
// Amounts in names are for people (percentages with three significant digits, format_percent); the exact
// count of kept weights is in the layer's bytes. parse() checks the syntax only; resolve_scheme()
// (scheme_registry.hpp) checks the names against the registry and fills in default amounts.
#include <charconv>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "qsafe/core/error.hpp"
#include "qsafe/policy/outliers.hpp"

namespace qsafe {

/// A fraction as a percentage with at most 3 significant digits ("0.5%" for 0.00500036).
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

struct SchemeSpec {
    static constexpr std::string_view columns_marker = "+ocol";
    static constexpr std::string_view sparse_marker = "+sparse";
    static constexpr std::string_view protect_marker = "+protect";

    std::string base;                               // the scheme without any suffix
    OutlierKind outliers = OutlierKind::none;       // "+ocol" (columns) or "+sparse"
    std::optional<std::size_t> outlier_columns;     // "+ocol<count>"; nothing = the entry's default
    std::optional<double> sparse_fraction;          // "+sparse<percent>%" as a fraction; nothing = default
    std::optional<double> protected_fraction;       // "+protect<percent>%" as a fraction

    /// Parses a scheme name; throws config_error naming the name and what is wrong with it.
    static SchemeSpec parse(std::string_view name) {
        const auto fail = [&](const std::string& why) -> SchemeSpec {
            throw config_error("scheme name '" + std::string(name) + "': " + why);
        };
        SchemeSpec spec;
        std::string_view rest = name;
        if (const auto pos = rest.find(protect_marker); pos != std::string_view::npos) {
            std::string_view amount = rest.substr(pos + protect_marker.size());
            const auto fraction = parse_percent(amount);
            if (!fraction) return fail("'+protect' takes a percentage, e.g. +protect0.2%");
            spec.protected_fraction = fraction;
            rest = rest.substr(0, pos);
        }
        const auto plus = rest.find('+');
        spec.base = std::string(rest.substr(0, plus));
        if (spec.base.empty()) return fail("no base scheme before the first '+'");
        if (plus != std::string_view::npos) {
            const std::string_view suffix = rest.substr(plus);
            if (suffix.starts_with(columns_marker)) {
                spec.outliers = OutlierKind::columns;
                const std::string_view amount = suffix.substr(columns_marker.size());
                if (!amount.empty()) {
                    std::size_t k = 0;
                    const auto [ptr, ec] = std::from_chars(amount.data(), amount.data() + amount.size(), k);
                    if (ec != std::errc{} || ptr != amount.data() + amount.size())
                        return fail("bad column count '" + std::string(amount) + "' after '+ocol'");
                    spec.outlier_columns = k;
                }
            } else if (suffix.starts_with(sparse_marker)) {
                spec.outliers = OutlierKind::sparse;
                const std::string_view amount = suffix.substr(sparse_marker.size());
                if (!amount.empty()) {
                    spec.sparse_fraction = parse_percent(amount);
                    if (!spec.sparse_fraction) return fail("the sparse amount is a percentage, e.g. +sparse0.5%");
                }
            } else {
                return fail("unknown suffix '" + std::string(suffix) + "' (known: +ocol<count>, +sparse<percent>%, +protect<percent>%)");
            }
        }
        return spec;
    }

    /// The canonical name; parse(to_string()) gives back the same spec up to the percentages' rounding.
    std::string to_string() const {
        std::string out = registry_key();
        if (outlier_columns && outliers == OutlierKind::columns) out += std::to_string(*outlier_columns);
        if (sparse_fraction && outliers == OutlierKind::sparse) out += format_percent(*sparse_fraction);
        if (protected_fraction) out += std::string(protect_marker) + format_percent(*protected_fraction);
        return out;
    }

    /// The name the scheme registry knows the quantizer by: the base, or base + "+ocol" / "+sparse".
    std::string registry_key() const {
        switch (outliers) {
            case OutlierKind::columns: return base + std::string(columns_marker);
            case OutlierKind::sparse: return base + std::string(sparse_marker);
            case OutlierKind::none: break;
        }
        return base;
    }

    /// The same spec without "+protect": the scheme the protected layer's other weights are stored under.
    SchemeSpec without_protection() const {
        SchemeSpec out = *this;
        out.protected_fraction.reset();
        return out;
    }

    bool operator==(const SchemeSpec&) const = default;

  private:
    /// "0.5%" -> 0.005; nothing unless the text is a number in [0, 100] followed by '%'.
    static std::optional<double> parse_percent(std::string_view text) {
        if (text.size() < 2 || text.back() != '%') return std::nullopt;
        text.remove_suffix(1);
        double percent = 0.0;
        const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), percent);
        if (ec != std::errc{} || ptr != text.data() + text.size() || !(percent >= 0.0 && percent <= 100.0)) return std::nullopt;
        return percent / 100.0;
    }
};

}  // namespace qsafe
