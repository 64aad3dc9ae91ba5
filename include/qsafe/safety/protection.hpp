#pragma once
// Choosing which weights stay in fp16 (training-free safety patching). Modes:
//   magnitude  the largest |w| per tensor (the classic outlier baseline)
//   wanda      the largest Wanda scores on the utility data (activation-aware outliers, SpQR-like)
//   safety     safety-critical weights: the largest Wanda scores on the safety data that are not in the
//              top `utility_exclusion` by utility Wanda score (weight_scores.hpp)
//   snip       safety-critical weights by SNIP score |w · ∂L/∂w| on (harmful prompt → refusal) pairs
//              (snip_scores.hpp), as Q-resafe chooses them
// The fraction protected per tensor and the utility exclusion are per-tensor rules
// ("blk.*=0.5%,blk.*.ffn_down=1%"), matched like scheme rules. Instead of a fraction per tensor, a global
// fraction takes one threshold over the scores of every covered tensor together (Q-resafe's form), so a
// tensor with more high scores keeps more weights; the per-tensor rules then only say which tensors take
// part. Scores must be comparable across tensors for that: magnitude, wanda and snip, not safety. The choice is made on the full-precision
// weights before any method transforms them (AWQ only rescales rows and columns, so indices stay valid).
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "qsafe/calib/calibration_stats.hpp"
#include "qsafe/model/scheme_rules.hpp"
#include "qsafe/model/weights.hpp"
#include "qsafe/ptq/protected_weights.hpp"
#include "qsafe/ptq/quantize_model.hpp"
#include "qsafe/quant/outlier_selection.hpp"
#include "qsafe/safety/snip_scores.hpp"
#include "qsafe/safety/weight_scores.hpp"

namespace qsafe {

enum class ProtectMode { none, magnitude, wanda, safety, snip };

inline ProtectMode parse_protect_mode(std::string_view s) {
    if (s == "none") return ProtectMode::none;
    if (s == "magnitude") return ProtectMode::magnitude;
    if (s == "wanda") return ProtectMode::wanda;
    if (s == "safety") return ProtectMode::safety;
    if (s == "snip") return ProtectMode::snip;
    throw config_error("unknown protection '" + std::string(s) + "' (known: none, magnitude, wanda, safety, snip)");
}
inline const char* protect_mode_name(ProtectMode m) {
    switch (m) {
        case ProtectMode::none: return "none";
        case ProtectMode::magnitude: return "magnitude";
        case ProtectMode::wanda: return "wanda";
        case ProtectMode::safety: return "safety";
        case ProtectMode::snip: return "snip";
    }
    return "none";
}

/// Per-tensor fractions, e.g. "blk.*=0.5%,output=0" (a bare value means "*=value"; "%" optional on 0).
class FractionRules {
  public:
    FractionRules() = default;
    static FractionRules parse(std::string_view text) {
        FractionRules f;
        f.rules_ = SchemeRules::parse(text);
        for (const auto& r : f.rules_.rules()) (void)parse_fraction(r.scheme);  // fail early on a bad value
        return f;
    }
    /// The fraction for a tensor ("blk.3.attn_q.weight"); 0 when no rule matches.
    double fraction_for(const std::string& tensor) const {
        const std::string v = rules_.scheme_for(tensor);
        return v == "fp32" ? 0.0 : parse_fraction(v);
    }

    /// "0.5%" -> 0.005; a bare number other than 0 is refused (write fractions as percentages).
    static double parse_fraction(const std::string& v) {
        std::string_view s = v;
        const bool percent = !s.empty() && s.back() == '%';
        if (percent) s.remove_suffix(1);
        double x = 0.0;
        const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
        if (ec != std::errc{} || ptr != s.data() + s.size() || s.empty())
            throw config_error("'" + v + "' is not a fraction (write a percentage such as 0.5%)");
        if (!percent && x != 0.0) throw config_error("'" + v + "': write fractions as percentages, e.g. 0.5%");
        x /= 100.0;
        if (x < 0.0 || x > 1.0) throw config_error("'" + v + "' is not between 0% and 100%");
        return x;
    }

    /// The patterns and values as parsed (for checks that every pattern names a tensor).
    const SchemeRules& rules() const noexcept { return rules_; }

  private:
    SchemeRules rules_;
};

struct ProtectOptions {
    ProtectMode mode = ProtectMode::safety;
    FractionRules fraction = FractionRules::parse("blk.*=0.5%");
    /// safety mode: the top fraction by utility score that is never chosen (Wei et al.'s p).
    FractionRules utility_exclusion = FractionRules::parse("blk.*=0.5%");
    /// > 0: one threshold over all covered tensors' scores keeps this fraction of their weights in all
    /// (estimated from `global_sample` scores drawn with `seed`; see sampled_top_threshold).
    double global_fraction = 0.0;
    std::size_t global_sample = 1'000'000;
    std::uint64_t seed = 0;
};

/// Throws config_error, before any scoring work, when a tensor that would get protected weights has no
/// scores in the chosen mode (snip: the output layer) or is ruled to a scheme that cannot be resolved
/// (quantize_layer resolves the same name: the scheme's "+sparse" form when it has one, else the scheme
/// itself, wrapped in a ProtectedLinear).
inline void check_protectable(LlamaWeights& weights, const SchemeRules& rules, const ProtectOptions& opt) {
    if (opt.mode == ProtectMode::none) return;
    if (opt.global_fraction > 0.0 && opt.mode == ProtectMode::safety)
        throw config_error("a global protection fraction needs scores comparable across tensors (magnitude, wanda or snip), not safety");
    for (const auto& [name, layer] : detail::linear_layers(weights)) {
        if (opt.fraction.fraction_for(name) <= 0.0) continue;
        if (opt.mode == ProtectMode::snip && !name.starts_with("blk."))
            throw config_error(name + ": SNIP scores cover the block projections only; give it no protected share ('" +
                               name.substr(0, name.find(".weight")) + "=0')");
        const std::string scheme = rules.scheme_for(name);
        if (scheme == "fp32") continue;
        try {
            const SchemeSpec spec = SchemeSpec::parse(scheme);
            (void)resolve_scheme(detail::has_sparse_form(spec) ? detail::with_sparse_outliers(spec).to_string() : scheme);
        } catch (const config_error& e) {
            throw config_error(name + ": cannot protect weights: " + e.what());
        }
    }
}

/// The weights to keep in fp16. `safety` and `utility` are input statistics on the safety and utility data,
/// `snip` SNIP scores (what each mode needs: safety needs both statistics, wanda the utility statistics, snip
/// the SNIP scores, magnitude nothing). `weights` must hold the full-precision model.
inline ProtectedWeights plan_protection(LlamaWeights& weights, const CalibrationStats* safety, const CalibrationStats* utility,
                                        const ProtectOptions& opt, const SnipScores* snip = nullptr) {
    ProtectedWeights plan;
    plan.method = protect_mode_name(opt.mode);
    if (opt.mode == ProtectMode::none) return plan;
    if (opt.mode == ProtectMode::safety && !safety) throw config_error("safety protection needs statistics on safety data");
    if ((opt.mode == ProtectMode::safety || opt.mode == ProtectMode::wanda) && !utility)
        throw config_error(std::string(protect_mode_name(opt.mode)) + " protection needs statistics on utility data");
    if (opt.mode == ProtectMode::snip && !snip) throw config_error("snip protection needs SNIP scores");
    const bool global = opt.global_fraction > 0.0;
    if (global && opt.mode == ProtectMode::safety)
        throw config_error("a global protection fraction needs scores comparable across tensors (magnitude, wanda or snip), not safety");
    // The score of every weight of one tensor, for the modes that rank by a single score.
    auto scores_of = [&](const std::string& name, ConstMatrixView view) -> std::vector<float> {
        switch (opt.mode) {
            case ProtectMode::magnitude: {
                std::vector<float> s(view.rows * view.cols);
                for (std::size_t i = 0; i < s.size(); ++i) s[i] = std::abs(view.data[i]);
                return s;
            }
            case ProtectMode::wanda: return wanda_scores(view, utility->require(name), name);
            case ProtectMode::snip: {
                const auto& s = snip->require(name);
                if (s.size() != view.rows * view.cols)
                    throw shape_error("SNIP scores of '" + name + "': " + std::to_string(s.size()) + " scores for a " + std::to_string(view.rows) +
                                      " x " + std::to_string(view.cols) + " weight");
                return s;
            }
            case ProtectMode::safety:
            case ProtectMode::none: break;
        }
        return {};
    };
    std::vector<std::pair<std::string, std::vector<float>>> pooled;  // global mode: chosen after all are scored
    for (const auto& [name, layer] : detail::linear_layers(weights)) {
        const double fraction = opt.fraction.fraction_for(name);
        if (fraction <= 0.0) continue;
        const RowMatrixF w = (*layer)->dequantize();
        const ConstMatrixView view(w.data(), static_cast<std::size_t>(w.rows()), static_cast<std::size_t>(w.cols()));
        if (global) {
            pooled.emplace_back(name, scores_of(name, view));
            continue;
        }
        std::vector<std::size_t> chosen;
        switch (opt.mode) {
            case ProtectMode::magnitude: chosen = select_sparse_outliers(view, fraction, {}); break;
            case ProtectMode::wanda:
            case ProtectMode::snip: {
                const auto s = scores_of(name, view);
                chosen = top_scored(s, fraction_count(fraction, s.size()));
                break;
            }
            case ProtectMode::safety: {
                const auto s = wanda_scores(view, safety->require(name), name);
                const auto u = wanda_scores(view, utility->require(name), name);
                chosen = select_safety_critical(s, u, fraction, opt.utility_exclusion.fraction_for(name));
                break;
            }
            case ProtectMode::none: break;
        }
        if (!chosen.empty()) plan.indices.emplace(name, std::move(chosen));
    }
    if (global && !pooled.empty()) {
        std::vector<std::span<const float>> spans;
        for (const auto& [name, s] : pooled) spans.emplace_back(s);
        const float threshold = sampled_top_threshold(spans, opt.global_fraction, opt.global_sample, opt.seed);
        for (auto& [name, s] : pooled) {
            auto chosen = at_or_above(s, threshold);
            if (!chosen.empty()) plan.indices.emplace(name, std::move(chosen));
        }
    }
    return plan;
}

}  // namespace qsafe
