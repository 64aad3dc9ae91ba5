#pragma once
// Post-training quantization of a whole model: every linear layer of a full-precision LlamaWeights is
// replaced by its quantized form under per-tensor scheme rules and one method:
//   rtn      round-to-nearest, data-free: statistics, if given, are not used ("+ocol" columns are chosen by
//            the weight columns' norm)
//   imatrix  round-to-nearest fitted to the calibration importance mean x^2 (llama.cpp's "importance
//            matrix"): a per-group clip search and vector quantization's codebooks weigh each input
//            column's error by it; "+ocol" columns are chosen by calibration max|x|
//   gptq  GPTQ with the layer's calibration Hessian (quant/gptq.hpp)
//   awq   AWQ scales searched and folded (ptq/awq.hpp), then RTN with clip search and importance
//   quik  GPTQ with the K input channels of largest calibration max|x| kept in fp16 (the scheme's "+ocol"
//         variant; "+ocol" is appended when the rule's scheme has none)
//   hqq   HQQ, data-free: each group's parameters refined by half-quadratic l_p minimisation (quant/hqq.hpp)
// Schemes that are not policy-composed (e.g. vector quantization) take the RTN path of their registry entry
// under rtn and imatrix; imatrix gives it the importance vector for its weighted fitting.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qsafe/calib/calibration_stats.hpp"
#include "qsafe/model/scheme_rules.hpp"
#include "qsafe/model/weights.hpp"
#include "qsafe/ptq/awq.hpp"
#include "qsafe/ptq/protected_weights.hpp"
#include "qsafe/registry/scheme_registry.hpp"

namespace qsafe {

enum class PtqMethod { rtn, imatrix, gptq, awq, quik, hqq };

/// Every method by the name the command line, variant specs and quantized files use: the one list.
inline constexpr std::array<std::pair<std::string_view, PtqMethod>, 6> ptq_methods{{
    {"rtn", PtqMethod::rtn},
    {"imatrix", PtqMethod::imatrix},
    {"gptq", PtqMethod::gptq},
    {"awq", PtqMethod::awq},
    {"quik", PtqMethod::quik},
    {"hqq", PtqMethod::hqq},
}};

/// "rtn, imatrix, gptq, awq, quik, hqq", for help texts and error messages.
inline std::string ptq_method_list() {
    std::string out;
    for (const auto& [name, method] : ptq_methods) out += (out.empty() ? "" : ", ") + std::string(name);
    return out;
}

inline PtqMethod parse_ptq_method(std::string_view name) {
    for (const auto& [known, method] : ptq_methods)
        if (known == name) return method;
    throw config_error("unknown quantization method '" + std::string(name) + "' (known: " + ptq_method_list() + ")");
}
inline const char* ptq_method_name(PtqMethod m) {
    for (const auto& [name, method] : ptq_methods)
        if (method == m) return name.data();  // the literals above are NUL-terminated
    return "rtn";
}
inline bool ptq_method_needs_calibration(PtqMethod m) { return m != PtqMethod::rtn && m != PtqMethod::hqq; }
/// imatrix and AWQ search each group's clipping under the importance-weighted error (without the search a
/// uniform grid's min/max fit ignores importance).
inline bool ptq_method_searches_clip(PtqMethod m) { return m == PtqMethod::imatrix || m == PtqMethod::awq; }

struct PtqOptions {
    SchemeRules rules = SchemeRules::parse("*=fp32");
    PtqMethod method = PtqMethod::rtn;
    QuantizeOptions base = {};  // clip search etc. (AWQ turns clip search on)
    GptqOptions gptq = {};
    AwqOptions awq = {};
    HqqOptions hqq = {};
    /// imatrix, awq: weight the error by the calibration importance mean x^2 (rtn never does, so its
    /// result does not depend on whether statistics happen to be at hand).
    bool use_importance = true;
    /// Weights kept in fp16 (e.g. safety-critical ones): stored through the scheme's "+sparse" outlier policy
    /// when it has one, else by a ProtectedLinear around the scheme (registry/protected_linear.hpp). Must
    /// outlive the call.
    const ProtectedWeights* protected_weights = nullptr;
    /// Called after each layer: (tensor, scheme, layers done, layers total, seconds for this layer).
    std::function<void(const std::string&, const std::string&, std::size_t, std::size_t, double)> progress = {};
};

struct PtqLayerReport {
    std::string tensor, scheme;
    double seconds = 0.0;
};

namespace detail {
using NamedLayers = std::vector<std::pair<std::string, std::unique_ptr<QuantizedLinear>*>>;

/// The seven linear layers of block l, in the order the block runs them.
inline NamedLayers block_linear_layers(LlamaWeights& w, std::size_t l) {
    auto& L = w.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    return {{p + "attn_q.weight", &L.wq},      {p + "attn_k.weight", &L.wk},   {p + "attn_v.weight", &L.wv},
            {p + "attn_output.weight", &L.wo}, {p + "ffn_gate.weight", &L.w_gate}, {p + "ffn_up.weight", &L.w_up},
            {p + "ffn_down.weight", &L.w_down}};
}

inline NamedLayers linear_layers(LlamaWeights& w) {
    NamedLayers out;
    for (std::size_t l = 0; l < w.layers.size(); ++l)
        for (auto& entry : block_linear_layers(w, l)) out.push_back(std::move(entry));
    out.emplace_back("output.weight", &w.output);
    return out;
}

/// Whether a tensor's protected weights go through its scheme's own sparse-outlier form ("<scheme>+sparse",
/// registered for some uniform schemes: the outliers are left out of the scale fitting) rather than a
/// ProtectedLinear around the scheme (any other scheme, including vector quantization and "+ocol").
inline bool has_sparse_form(const SchemeSpec& spec) {
    if (spec.outliers != OutlierKind::none) return spec.outliers == OutlierKind::sparse;
    SchemeSpec sparse = spec;
    sparse.outliers = OutlierKind::sparse;
    return scheme_registry().find(sparse.registry_key()) != nullptr;
}

/// The scheme's sparse-outlier form without an amount (the amount is set by the protected weights): for
/// schemes with has_sparse_form().
inline SchemeSpec with_sparse_outliers(SchemeSpec spec) {
    spec.outliers = OutlierKind::sparse;
    spec.sparse_fraction.reset();
    return spec;
}

/// QUIK's scheme: the rule's scheme with fp16 input columns ("+ocol", its default count unless named).
inline std::string with_outlier_columns(const std::string& scheme) {
    SchemeSpec spec = SchemeSpec::parse(scheme);
    if (spec.base == "fp32" || spec.outliers == OutlierKind::columns) return scheme;
    // 8-bit layers keep no outlier columns in QUIK (its 8-bit down projections have none): the default
    // output rule, int8, stays as it is.
    if (spec.base.starts_with("int8")) return scheme;
    if (spec.outliers != OutlierKind::none)
        throw config_error("QUIK: scheme '" + scheme + "' already has another outlier policy");
    spec.outliers = OutlierKind::columns;
    return spec.to_string();
}
}  // namespace detail

/// The scheme a layer gets under the options (QUIK adds the outlier columns).
inline std::string ptq_scheme_for(const std::string& tensor, const PtqOptions& opt) {
    std::string scheme = opt.rules.scheme_for(tensor);
    if (opt.method == PtqMethod::quik) scheme = detail::with_outlier_columns(scheme);
    return scheme;
}

namespace detail {
/// Replaces one layer by its quantized form. `base` is opt.base as adjusted by the method (AWQ: clip search).
inline PtqLayerReport quantize_layer(const std::string& name, std::unique_ptr<QuantizedLinear>& layer,
                                     const CalibrationStats* stats, const PtqOptions& opt, const QuantizeOptions& base) {
    const auto start = std::chrono::steady_clock::now();
    std::string scheme = ptq_scheme_for(name, opt);
    const RowMatrixF weights = layer->dequantize();
    QuantizeOptions o = base;
    o.tensor_name = name;
    const LinearInputStats* st = stats ? stats->for_tensor(name) : nullptr;
    VectorF importance, column_scores;
    const bool data_free = !ptq_method_needs_calibration(opt.method);
    // A calibrated method without statistics for this layer would quietly be RTN while the file says
    // otherwise: refuse, naming the tensor.
    if (!data_free && scheme != "fp32") {
        if (!stats)
            throw config_error(std::string("method ") + ptq_method_name(opt.method) + " needs calibration statistics (tensor '" + name + "')");
        try {
            st = &stats->require(name);
        } catch (const config_error& e) {
            throw config_error(std::string("method ") + ptq_method_name(opt.method) + ": " + e.what() + " (" +
                               (stats->description.empty() ? std::string("statistics without a description") : stats->description) + ")");
        }
    }
    if (st && st->tokens > 0 && opt.use_importance && !data_free) {
        importance = st->mean_sq();
        o.importance = {importance.data(), static_cast<std::size_t>(importance.size())};
    }
    if (st && st->tokens > 0 && !data_free) {
        column_scores = st->max_abs;
        o.column_scores = {column_scores.data(), static_cast<std::size_t>(column_scores.size())};
    }
    const std::vector<std::size_t>* keep = opt.protected_weights ? opt.protected_weights->for_tensor(name) : nullptr;
    const bool protect = keep && !keep->empty() && scheme != "fp32";
    const bool gptq = (opt.method == PtqMethod::gptq || opt.method == PtqMethod::quik) && scheme != "fp32";
    const bool hqq = opt.method == PtqMethod::hqq && scheme != "fp32";
    const auto quantize = [&](ConstMatrixView w, const ResolvedScheme& r, const QuantizeOptions& q) {
        if (hqq) {
            if (!r.entry->quantize_hqq)
                throw config_error("scheme '" + scheme + "' (tensor '" + name + "') cannot be quantized with HQQ; use method rtn");
            return r.entry->quantize_hqq(w, opt.hqq, r.apply(q), r.full_name);
        }
        if (!gptq) return r.entry->quantize_rtn(w, r.apply(q), r.full_name);
        if (!r.entry->quantize_gptq)
            throw config_error("scheme '" + scheme + "' (tensor '" + name + "') cannot be quantized with GPTQ; use method rtn");
        return r.entry->quantize_gptq(w, stats->require(name).hessian, opt.gptq, r.apply(q), r.full_name);
    };
    const double fraction = protect ? static_cast<double>(keep->size()) / static_cast<double>(weights.size()) : 0.0;
    std::string full_name;
    if (protect && has_sparse_form(SchemeSpec::parse(scheme))) {
        // The sparse policy keeps the highest-scored weights: score 1 for the chosen ones, 0 elsewhere,
        // and exactly as many outliers as were chosen.
        scheme = with_sparse_outliers(SchemeSpec::parse(scheme)).to_string();
        std::vector<float> keep_mask(static_cast<std::size_t>(weights.size()), 0.0f);
        for (const std::size_t i : *keep) {
            if (i >= keep_mask.size())
                throw config_error("protected weight index " + std::to_string(i) + " is outside tensor '" + name + "' (" +
                                   std::to_string(keep_mask.size()) + " weights)");
            keep_mask[i] = 1.0f;
        }
        o.weight_scores = keep_mask;
        ResolvedScheme resolved = resolve_scheme(scheme);
        resolved.spec.sparse_fraction = resolved.outlier_fraction = fraction;
        resolved.full_name = resolved.spec.to_string();
        layer = quantize(weights, resolved, o);
        full_name = resolved.full_name;
    } else if (protect) {
        // Any other scheme: the base is fitted with the protected weights at 0 (they do not stretch its
        // scales or codebooks) and a ProtectedLinear adds them back exactly.
        const ResolvedScheme resolved = resolve_scheme(scheme);
        SparseOutlierStore store = protected_store(weights, *keep, name);
        RowMatrixF rest = weights;
        for (std::size_t r = 0; r < static_cast<std::size_t>(rest.rows()); ++r)
            for (std::uint32_t e = store.row_ptr[r]; e < store.row_ptr[r + 1]; ++e)
                rest(static_cast<Eigen::Index>(r), store.col[e]) = 0.0f;
        SchemeSpec stored = resolved.spec;
        stored.protected_fraction = fraction;
        full_name = stored.to_string();
        layer = std::make_unique<ProtectedLinear>(quantize(rest, resolved, o), std::move(store), full_name,
                                                  "protected weights of '" + name + "'");
    } else {
        const ResolvedScheme resolved = resolve_scheme(scheme);
        layer = quantize(weights, resolved, o);
        full_name = resolved.full_name;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return {name, full_name, seconds};
}
}  // namespace detail

/// Quantizes every linear layer of `w` (fp32 on entry) in place. `stats` is required by gptq, awq and quik;
/// AWQ transforms it to the scaled inputs.
inline std::vector<PtqLayerReport> quantize_model(LlamaWeights& w, CalibrationStats* stats, const PtqOptions& opt) {
    if (ptq_method_needs_calibration(opt.method) && !stats)
        throw config_error(std::string("method '") + ptq_method_name(opt.method) + "' needs calibration statistics");
    auto layers = detail::linear_layers(w);
    // Every layer's scheme must exist before the first layer is quantized: a rule that cannot work for the
    // last layer must not cost the minutes spent on the others.
    for (const auto& [name, layer] : layers) {
        const std::string scheme = ptq_scheme_for(name, opt);
        try {
            (void)resolve_scheme(scheme);
        } catch (const config_error& e) {
            throw config_error("tensor '" + name + "' (method " + ptq_method_name(opt.method) + "): " + e.what());
        }
        check_named_outlier_columns(scheme, name, (*layer)->cols());
    }
    QuantizeOptions base = opt.base;
    if (opt.method == PtqMethod::awq) apply_awq(w, *stats, opt.rules, opt.awq, base);
    base.clip_search = base.clip_search || ptq_method_searches_clip(opt.method);
    std::vector<PtqLayerReport> report;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const auto& [name, layer] = layers[i];
        report.push_back(detail::quantize_layer(name, *layer, stats, opt, base));
        if (opt.progress) opt.progress(name, report.back().scheme, i + 1, layers.size(), report.back().seconds);
    }
    return report;
}

/// Quantizes only the named linear layers (a data-free method: rtn or hqq) under opt.rules, leaving the others
/// as they are — e.g. the layers an adapter was merged into, back to their scheme. Throws config_error naming
/// a tensor that is not a linear layer of `w`.
inline std::vector<PtqLayerReport> quantize_tensors(LlamaWeights& w, std::span<const std::string> names, const PtqOptions& opt) {
    if (ptq_method_needs_calibration(opt.method))
        throw config_error(std::string("quantizing single tensors: method '") + ptq_method_name(opt.method) + "' needs calibration statistics");
    auto layers = detail::linear_layers(w);
    std::vector<PtqLayerReport> report;
    for (const std::string& name : names) {
        const auto it = std::find_if(layers.begin(), layers.end(), [&](const auto& l) { return l.first == name; });
        if (it == layers.end()) throw config_error("quantizing single tensors: '" + name + "' is not a linear layer of the model");
        report.push_back(detail::quantize_layer(name, *it->second, nullptr, opt, opt.base));
        if (opt.progress) opt.progress(name, report.back().scheme, report.size(), names.size(), report.back().seconds);
    }
    return report;
}

}  // namespace qsafe
