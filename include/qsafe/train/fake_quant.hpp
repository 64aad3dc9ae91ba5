#pragma once
// Quantization-aware training with the straight-through estimator (Bengio et al. 2013, STE).
//
// The model trains fp32 master copies of its linear layers, but computes with their fake-quantized values
//     q(w) = dequantize(quantize_rtn(w, scheme))
// where quantize_rtn is the scheme's own registered round-to-nearest quantizer: the grid, group size,
// symmetric/asymmetric scale rule and the "+ocol" / "+sparse" outlier forms are the scheme's exactly, so
// the packed model exported at the end computes what training computed. The backward pass differentiates
// with respect to q(w) (TrainableLlama's full-gradient mode on the DenseLinear layers holding q(w)) and
// hands that gradient straight through to w: ∂L/∂w := ∂L/∂q(w).
//
// Scales are re-fitted every step (fake_quantize() re-runs RTN on the current masters), not learned:
// learned step sizes (LSQ) are not implemented. The gradient is not clipped outside a group's range either:
// with re-fitted min/max scales every weight lies inside its group's range by construction.
//
// Trained: the covered linear layers' masters and the RMSNorm weights. The token embedding (and with it a
// tied output layer) stays as loaded. Memory: masters + q(w) + gradients + two AdamW moments, five fp32
// copies of the linear layers (about 2.6 GB for SmolLM2-135M).
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/model/scheme_rules.hpp"
#include "qsafe/model/weights.hpp"
#include "qsafe/registry/quantized_linear.hpp"
#include "qsafe/registry/scheme_registry.hpp"
#include "qsafe/train/lora.hpp"
#include "qsafe/train/parameters.hpp"
#include "qsafe/train/trainable_llama.hpp"

namespace qsafe::train {

class FakeQuantizedLlama {
  public:
    /// Takes over `model`'s linear layers: every layer whose rule (e.g. "blk.*=int3-g128-asym") is not fp32
    /// gets a master copy (its current values, dequantized if it was quantized) and computes with its
    /// fake-quantized value from then on (build the TrainableLlama over `model` after this object: covered
    /// layers may be replaced). `model` must outlive this object. A scheme that does not resolve,
    /// or a tied output layer given a scheme, is refused before anything changes.
    FakeQuantizedLlama(LlamaWeights& model, SchemeRules rules) : w_(model), rules_(std::move(rules)) {
        for (auto& [name, layer] : slots()) {
            const std::string scheme = rules_.scheme_for(name);
            if (scheme == "fp32") continue;
            if (name == "output.weight" && w_.config.tied_embeddings)
                throw config_error("output.weight: the output layer is the token embedding (tied), which STE training leaves as it is; rule it fp32");
            try {
                (void)resolve_scheme(scheme);
            } catch (const config_error& e) {
                throw config_error(name + ": " + e.what());
            }
        }
        for (auto& [name, layer] : slots()) {
            const std::string scheme = rules_.scheme_for(name);
            if (scheme == "fp32") continue;
            covered_.push_back({name, scheme, layer, (*layer)->dequantize()});
        }
        if (covered_.empty()) throw config_error("QAT rules '" + rules_.to_string() + "' cover no linear layer of the model");
        fake_quantize();
    }

    /// Re-fits every covered layer's scales on its master and sets the layer to the fake-quantized values.
    /// Call after each optimizer step (then TrainableLlama::refresh_weight_caches()).
    void fake_quantize() {
        for (Covered& c : covered_) {
            QuantizeOptions opt;
            opt.tensor_name = c.name;
            const auto packed = quantize_by_name(c.scheme, ConstMatrixView(c.master.data(), static_cast<std::size_t>(c.master.rows()),
                                                                           static_cast<std::size_t>(c.master.cols())),
                                                 opt);
            auto* dense = dynamic_cast<DenseLinear*>(c.layer->get());
            if (dense) dense->mutable_weights() = packed->dequantize();
            else *c.layer = std::make_unique<DenseLinear>(packed->dequantize(), c.scheme + " (fake-quantized)");
        }
    }

    /// The trained parameters with their gradients in `net`'s base gradients (net must be built over the
    /// same model with full_gradients, and zero_base_gradients() already called once so they are sized):
    /// each covered layer's master, and every RMSNorm weight.
    std::vector<ParameterRef> parameters(TrainableLlama& net) {
        BaseGradients& g = net.base_gradients();
        if (g.layers.size() != w_.layers.size()) throw config_error("FakeQuantizedLlama: the network's gradients are not sized (full_gradients off?)");
        std::vector<ParameterRef> out;
        for (Covered& c : covered_) {
            RowMatrixF* grad = gradient_of(g, c.name);
            if (!grad || grad->size() != c.master.size()) throw config_error(c.name + ": no gradient of the fake-quantized layer");
            out.push_back({c.name, c.master.data(), grad->data(), static_cast<std::size_t>(c.master.size())});
        }
        for (std::size_t l = 0; l < w_.layers.size(); ++l) {
            const std::string p = "blk." + std::to_string(l) + ".";
            out.push_back({p + "attn_norm.weight", w_.layers[l].attn_norm.data(), g.layers[l].attn_norm.data(),
                           static_cast<std::size_t>(w_.layers[l].attn_norm.size())});
            out.push_back({p + "ffn_norm.weight", w_.layers[l].ffn_norm.data(), g.layers[l].ffn_norm.data(),
                           static_cast<std::size_t>(w_.layers[l].ffn_norm.size())});
        }
        out.push_back({"output_norm.weight", w_.output_norm.data(), g.output_norm.data(), static_cast<std::size_t>(w_.output_norm.size())});
        return out;
    }

    /// Replaces the covered layers by their packed quantized form (the scheme's own layer type, as
    /// `qsafe quantize` would write it): the model then runs on the kernels and saves as a quantized model
    /// file. Training is over after this.
    void export_packed() {
        for (Covered& c : covered_) {
            QuantizeOptions opt;
            opt.tensor_name = c.name;
            *c.layer = quantize_by_name(c.scheme, ConstMatrixView(c.master.data(), static_cast<std::size_t>(c.master.rows()),
                                                                  static_cast<std::size_t>(c.master.cols())),
                                        opt);
        }
        covered_.clear();
    }

    std::size_t covered_layers() const noexcept { return covered_.size(); }
    /// What is trained, for checkpoints: the rules and the covered layers with their schemes.
    std::string signature() const {
        std::string s = "qat rules=" + rules_.to_string();
        for (const Covered& c : covered_) s += " " + c.name + "=" + c.scheme;
        return s;
    }
    const RowMatrixF& master(const std::string& name) const {
        for (const Covered& c : covered_)
            if (c.name == name) return c.master;
        throw config_error("no master weights for '" + name + "' (not covered by the QAT rules)");
    }

  private:
    struct Covered {
        std::string name, scheme;
        std::unique_ptr<QuantizedLinear>* layer;
        RowMatrixF master;
    };

    std::vector<std::pair<std::string, std::unique_ptr<QuantizedLinear>*>> slots() {
        std::vector<std::pair<std::string, std::unique_ptr<QuantizedLinear>*>> out;
        for (std::size_t l = 0; l < w_.layers.size(); ++l) {
            LayerWeights& L = w_.layers[l];
            std::unique_ptr<QuantizedLinear>* layers[] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
            for (std::size_t p = 0; p < 7; ++p) out.emplace_back("blk." + std::to_string(l) + "." + block_projections[p] + ".weight", layers[p]);
        }
        out.emplace_back("output.weight", &w_.output);
        return out;
    }

    static RowMatrixF* gradient_of(BaseGradients& g, const std::string& name) {
        if (name == "output.weight") return &g.output;
        for (std::size_t l = 0; l < g.layers.size(); ++l) {
            auto& G = g.layers[l];
            RowMatrixF* grads[] = {&G.wq, &G.wk, &G.wv, &G.wo, &G.w_gate, &G.w_up, &G.w_down};
            for (std::size_t p = 0; p < 7; ++p)
                if (name == "blk." + std::to_string(l) + "." + block_projections[p] + ".weight") return grads[p];
        }
        return nullptr;
    }

    LlamaWeights& w_;
    SchemeRules rules_;
    std::vector<Covered> covered_;
};

}  // namespace qsafe::train
