#pragma once
// Per-tensor scheme rules, e.g. "*=int4-g128-asym,output=int8-pc-sym,blk.0.*=fp32".
// A rule is `pattern=scheme`; patterns are globs (`*`, `?`) matched against the tensor name without its
// ".weight" suffix ("blk.3.attn_q", "output"). A pattern without a dot also matches the name's last part
// ("attn_q" matches every layer's attn_q). The last matching rule wins; unmatched tensors stay fp32.
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qsafe/core/error.hpp"

namespace qsafe {

struct SchemeRule {
    std::string pattern;
    std::string scheme;
};

namespace detail {
inline bool glob_match(std::string_view pattern, std::string_view text) {
    std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
    while (t < text.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
            ++p;
            ++t;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            mark = t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++mark;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

inline std::string trim(std::string_view s) {
    const auto b = s.find_first_not_of(" \t");
    if (b == std::string_view::npos) return {};
    const auto e = s.find_last_not_of(" \t");
    return std::string(s.substr(b, e - b + 1));
}
}  // namespace detail

/// Whether a rule pattern names a tensor: the glob is matched against the name without ".weight", and a
/// pattern without a dot also against its last component ("attn_q" matches "blk.3.attn_q.weight").
inline bool tensor_name_matches(std::string_view pattern, std::string_view tensor_name) {
    std::string_view name = tensor_name;
    if (name.ends_with(".weight")) name.remove_suffix(7);
    if (pattern.ends_with(".weight")) pattern.remove_suffix(7);  // "blk.1.ffn_up.weight" means the tensor, as written in files
    const auto dot = name.rfind('.');
    const std::string_view last = dot == std::string_view::npos ? name : name.substr(dot + 1);
    const bool has_dot = pattern.find('.') != std::string_view::npos;
    return detail::glob_match(pattern, name) || (!has_dot && detail::glob_match(pattern, last));
}

class SchemeRules {
  public:
    SchemeRules() = default;
    explicit SchemeRules(std::vector<SchemeRule> rules) : rules_(std::move(rules)) {}

    /// Parses "pattern=scheme,pattern=scheme"; a bare scheme name means "*=scheme".
    static SchemeRules parse(std::string_view text) {
        std::vector<SchemeRule> rules;
        std::size_t start = 0;
        while (start <= text.size()) {
            const std::size_t end = std::min(text.find(',', start), text.size());
            const std::string item = detail::trim(text.substr(start, end - start));
            if (!item.empty()) {
                const auto eq = item.find('=');
                if (eq == std::string::npos) {
                    rules.push_back({"*", item});
                } else {
                    SchemeRule r{detail::trim(std::string_view(item).substr(0, eq)), detail::trim(std::string_view(item).substr(eq + 1))};
                    if (r.pattern.empty() || r.scheme.empty())
                        throw config_error("scheme rules: '" + item + "' must be pattern=scheme");
                    rules.push_back(std::move(r));
                }
            }
            if (end == text.size()) break;
            start = end + 1;
        }
        return SchemeRules(std::move(rules));
    }

    /// The scheme for a tensor ("fp32" when no rule matches).
    std::string scheme_for(std::string_view tensor_name) const {
        std::string scheme = "fp32";
        for (const auto& r : rules_)
            if (tensor_name_matches(r.pattern, tensor_name)) scheme = r.scheme;
        return scheme;
    }

    const std::vector<SchemeRule>& rules() const noexcept { return rules_; }

    /// The patterns that match none of `tensors`.
    std::vector<std::string> unmatched_patterns(std::span<const std::string> tensors) const {
        std::vector<std::string> out;
        for (const auto& r : rules_) {
            bool any = false;
            for (const auto& t : tensors) any = any || tensor_name_matches(r.pattern, t);
            if (!any) out.push_back(r.pattern);
        }
        return out;
    }

    /// Throws config_error when the rules are empty or a pattern matches none of `tensors` (a typo would
    /// otherwise leave those tensors at the default without a word). `what` names the rules ("--rules").
    void require_all_match(std::span<const std::string> tensors, const std::string& what) const {
        if (rules_.empty()) throw config_error(what + " is empty: give at least one pattern=value");
        const auto unmatched = unmatched_patterns(tensors);
        if (unmatched.empty()) return;
        std::string list;
        for (const auto& p : unmatched) list += (list.empty() ? "'" : ", '") + p + "'";
        throw config_error(what + ": " + list + " match" + (unmatched.size() == 1 ? "es" : "") + " no tensor of the model (" +
                           std::to_string(tensors.size()) + " linear tensors, named like '" + (tensors.empty() ? std::string() : tensors.front()) +
                           "'; patterns are globs over the whole name or, without a dot, its last part)");
    }
    std::string to_string() const {
        std::string s;
        for (const auto& r : rules_) s += (s.empty() ? "" : ",") + r.pattern + "=" + r.scheme;
        return s.empty() ? "*=fp32" : s;
    }

  private:
    std::vector<SchemeRule> rules_;
};

}  // namespace qsafe
