#pragma once
// AWQ (Lin et al., 2023): activation-aware scaling. Input channel j of a group of linear layers that read the
// same activations is multiplied by s_j before quantization and the activations are divided by s_j, which
// the preceding operation absorbs exactly (the RMSNorm weight, or the rows of the up projection for the
// down projection), so the full-precision function is unchanged while salient channels (large mean |x_j|)
// get finer quantization steps. Per group, as in the reference implementation:
//   s = mean|x|^alpha, normalised by sqrt(max s * min s), alpha in {0, 1/20, ..., 19/20},
//   alpha chosen to minimise the output error of the group's layers on the calibration inputs.
// The output error of a layer with weights W and quantized reconstruction W^ is tr(dW H dW^T), dW = W - W^,
// computed from the calibration Hessian H = X^T X instead of re-running the activations (same quantity).
// alpha = 0 (s = 1, plain round-to-nearest) is always a candidate, so AWQ never does worse than RTN on it.
// The output projection of attention is scaled through the value projection only when each query head has
// its own value head (no grouped-query attention), as in the reference.
#include <cmath>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "qsafe/calib/calibration_stats.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/model/scheme_rules.hpp"
#include "qsafe/model/weights.hpp"
#include "qsafe/registry/scheme_registry.hpp"

namespace qsafe {

struct AwqOptions {
    int grid = 20;
    /// Report per group: (site, chosen alpha, error at alpha, error at alpha = 0).
    std::function<void(const std::string&, double, double, double)> on_group = {};
};

struct AwqGroupResult {
    std::string site;
    double alpha = 0.0;
    double error = 0.0;      // output error at the chosen alpha
    double rtn_error = 0.0;  // at alpha = 0
};

namespace detail {

/// tr(dW H dW^T) for the layer quantized under `scheme` after scaling its columns by s.
inline double awq_layer_error(const RowMatrixF& w, const VectorF& s, const std::string& scheme, const Eigen::MatrixXf& h,
                              const QuantizeOptions& opt) {
    const RowMatrixF scaled = w * s.asDiagonal();
    const auto q = quantize_by_name(scheme, scaled, opt);
    const RowMatrixF delta = w - q->dequantize() * s.cwiseInverse().asDiagonal();
    const RowMatrixF dh = delta * h;  // Eigen's product runs on all threads
    return static_cast<double>((dh.array() * delta.array()).cast<double>().sum());
}

inline VectorF awq_scales(const VectorF& mean_abs, double alpha) {
    VectorF s = mean_abs.array().max(1e-12f).pow(static_cast<float>(alpha)).max(1e-4f).matrix();
    s /= std::sqrt(s.maxCoeff() * s.minCoeff());
    return s;
}

}  // namespace detail

/// Searches and folds AWQ scales into every layer of `w` (whose linear layers must still be fp32), using the
/// rules' scheme of each layer for the search. The statistics of the scaled sites are transformed to the
/// scaled inputs (x / s), so a later GPTQ or importance-weighted RTN sees the inputs the layers now get.
inline std::vector<AwqGroupResult> apply_awq(LlamaWeights& w, CalibrationStats& stats, const SchemeRules& rules,
                                             const AwqOptions& opt = {}, const QuantizeOptions& base = {}) {
    std::vector<AwqGroupResult> results;
    const LlamaConfig& c = w.config;
    for (std::size_t l = 0; l < c.n_layers; ++l) {
        LayerWeights& L = w.layers[l];
        const std::string p = "blk." + std::to_string(l) + ".";
        struct Member {
            std::string name;
            std::unique_ptr<QuantizedLinear>* layer;
        };
        struct Group {
            std::string site;
            std::vector<Member> members;
            std::function<void(const VectorF&)> fold_previous;  // divides the producer of the inputs by s
        };
        std::vector<Group> groups;
        groups.push_back({p + "attn_in", {{p + "attn_q.weight", &L.wq}, {p + "attn_k.weight", &L.wk}, {p + "attn_v.weight", &L.wv}},
                          [&L](const VectorF& s) { L.attn_norm = L.attn_norm.cwiseQuotient(s); }});
        groups.push_back({p + "ffn_in", {{p + "ffn_gate.weight", &L.w_gate}, {p + "ffn_up.weight", &L.w_up}},
                          [&L](const VectorF& s) { L.ffn_norm = L.ffn_norm.cwiseQuotient(s); }});
        groups.push_back({p + "ffn_down", {{p + "ffn_down.weight", &L.w_down}}, [&L](const VectorF& s) {
                              const RowMatrixF up = s.cwiseInverse().asDiagonal() * L.w_up->dequantize();
                              L.w_up = std::make_unique<DenseLinear>(up);
                          }});
        if (c.n_heads == c.n_kv_heads && !c.qkv_bias)
            groups.push_back({p + "attn_output", {{p + "attn_output.weight", &L.wo}}, [&L](const VectorF& s) {
                                  const RowMatrixF v = s.cwiseInverse().asDiagonal() * L.wv->dequantize();
                                  L.wv = std::make_unique<DenseLinear>(v);
                              }});

        // Search every group on the unscaled weights first, then fold (the reference's order).
        std::vector<VectorF> chosen(groups.size());
        for (std::size_t gi = 0; gi < groups.size(); ++gi) {
            const Group& g = groups[gi];
            bool any_quantized = false;
            for (const auto& mbr : g.members) any_quantized |= rules.scheme_for(mbr.name) != "fp32";
            auto it = stats.sites.find(g.site);
            if (!any_quantized || it == stats.sites.end() || it->second.tokens == 0) continue;
            const LinearInputStats& st = it->second;
            const VectorF mean_abs = st.mean_abs();
            std::vector<RowMatrixF> weights;
            for (const auto& mbr : g.members) {
                if ((*mbr.layer)->scheme_name() != "fp32")
                    throw config_error("AWQ: layer '" + mbr.name + "' is already quantized; AWQ needs the fp32 weights");
                weights.push_back((*mbr.layer)->dequantize());
            }
            AwqGroupResult best{g.site, 0.0, 0.0, 0.0};
            VectorF best_s = VectorF::Ones(mean_abs.size());
            for (int k = 0; k < opt.grid; ++k) {
                const double alpha = static_cast<double>(k) / opt.grid;
                const VectorF s = k == 0 ? VectorF(VectorF::Ones(mean_abs.size())) : detail::awq_scales(mean_abs, alpha);
                double err = 0.0;
                for (std::size_t i = 0; i < g.members.size(); ++i) {
                    const std::string scheme = rules.scheme_for(g.members[i].name);
                    if (scheme == "fp32") continue;
                    QuantizeOptions o = base;
                    o.tensor_name = g.members[i].name;
                    err += detail::awq_layer_error(weights[i], s, scheme, st.hessian, o);
                }
                if (k == 0) best.rtn_error = best.error = err;
                if (err < best.error) {
                    best.error = err;
                    best.alpha = alpha;
                    best_s = s;
                }
            }
            chosen[gi] = best_s;
            if (opt.on_group) opt.on_group(g.site, best.alpha, best.error, best.rtn_error);
            results.push_back(best);
        }
        for (std::size_t gi = 0; gi < groups.size(); ++gi) {
            if (chosen[gi].size() == 0) continue;
            const VectorF& s = chosen[gi];
            groups[gi].fold_previous(s);
            for (const auto& mbr : groups[gi].members) {
                const RowMatrixF scaled = (*mbr.layer)->dequantize() * s.asDiagonal();
                *mbr.layer = std::make_unique<DenseLinear>(scaled);
            }
            // The site now sees x / s.
            LinearInputStats& st = stats.sites.at(groups[gi].site);
            const VectorF inv = s.cwiseInverse();
            st.hessian = inv.asDiagonal() * st.hessian * inv.asDiagonal();
            st.sum_abs = st.sum_abs.cwiseProduct(inv);
            st.sum_sq = st.sum_sq.cwiseProduct(inv).cwiseProduct(inv);
            st.max_abs = st.max_abs.cwiseProduct(inv);
        }
    }
    return results;
}

}  // namespace qsafe
