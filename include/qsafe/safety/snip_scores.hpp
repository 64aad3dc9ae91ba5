#pragma once
// SNIP scores of safety-critical weights (Lee et al. 2019; used for safety by Wei et al. 2024 and by
// Q-resafe): for every weight w of the block projections,
//     s(w) = (1/N) Σ_x |w · ∂L(x)/∂w|
// where x runs over N (harmful prompt → refusal) examples and L(x) is the mean token cross-entropy of the
// refusal given the prompt (prompt tokens not counted). The absolute value is taken per example — the
// published form: a weight that helps one refusal and hurts another still scores. Taking it per group of
// `examples_per_gradient` examples instead is cheaper and gives a different (smaller) number; 1 is the
// default.
//
// A quantized model is scored at its dequantized weights, which are what it computes with: Q-resafe
// re-identifies the safety-critical weights on the quantized model it patches. The work happens on a dense
// fp32 copy of the model (the model passed in is not changed), so it costs the fp32 model twice over plus the
// scores (about 2.5 GB for SmolLM2-135M).
//
// Only the block projections (blk.N.attn_q ... ffn_down) are scored. The output layer is left out: in a
// model with a tied embedding its gradient cannot be told apart from the embedding's.
#include <cmath>
#include <cstddef>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/model/weights.hpp"
#include "qsafe/registry/quantized_linear.hpp"
#include "qsafe/train/objectives.hpp"
#include "qsafe/train/trainable_llama.hpp"

namespace qsafe {

struct SnipOptions {
    /// Examples whose gradient is summed before the absolute value is taken (1: per example, as published).
    std::size_t examples_per_gradient = 1;
    /// Called after each gradient with (examples done, examples in all).
    std::function<void(std::size_t, std::size_t)> progress;
};

/// Scores of each block projection, row-major like its weight matrix.
struct SnipScores {
    std::map<std::string, std::vector<float>> tensors;
    std::size_t examples = 0;  // N
    std::size_t tokens = 0;    // counted (refusal) tokens over all examples

    bool has(const std::string& tensor) const { return tensors.contains(tensor); }
    const std::vector<float>& require(const std::string& tensor) const {
        const auto it = tensors.find(tensor);
        if (it == tensors.end())
            throw config_error("no SNIP scores for '" + tensor + "' (SNIP scores cover the block projections blk.N.attn_q ... ffn_down)");
        return it->second;
    }
};

/// A copy of `w` whose linear layers are all fp32 (DenseLinear holding the dequantized weights).
inline LlamaWeights dense_copy(const LlamaWeights& w) {
    auto dense = [](const std::unique_ptr<QuantizedLinear>& q) { return std::make_unique<DenseLinear>(q->dequantize()); };
    LlamaWeights out;
    out.config = w.config;
    out.token_embedding = w.token_embedding;
    out.output_norm = w.output_norm;
    out.rope_freq_factors = w.rope_freq_factors;
    out.output = dense(w.output);
    out.layers.resize(w.layers.size());
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
        const LayerWeights& s = w.layers[l];
        LayerWeights& d = out.layers[l];
        d.attn_norm = s.attn_norm;
        d.ffn_norm = s.ffn_norm;
        d.bq = s.bq;
        d.bk = s.bk;
        d.bv = s.bv;
        d.wq = dense(s.wq);
        d.wk = dense(s.wk);
        d.wv = dense(s.wv);
        d.wo = dense(s.wo);
        d.w_gate = dense(s.w_gate);
        d.w_up = dense(s.w_up);
        d.w_down = dense(s.w_down);
    }
    return out;
}

/// SNIP scores of `model`'s block projections over `examples` (each with a loss mask on its refusal);
/// `pad` fills the batch rows of a group of examples. Deterministic for a given thread count and order.
inline SnipScores snip_scores(const LlamaWeights& model, std::span<const train::MaskedSequence> examples, std::int32_t pad,
                              const SnipOptions& opt = {}) {
    if (examples.empty()) throw config_error("SNIP scores: no examples");
    if (opt.examples_per_gradient == 0) throw config_error("SNIP scores: examples_per_gradient must be at least 1");
    for (std::size_t i = 0; i < examples.size(); ++i)
        if (examples[i].counted() == 0) throw config_error("SNIP scores: example " + std::to_string(i) + " has no counted (refusal) tokens");
    LlamaWeights w = dense_copy(model);
    train::TrainableLlama net(w, nullptr, {.full_gradients = true});
    SnipScores out;
    out.examples = examples.size();
    const auto scale = static_cast<float>(1.0 / static_cast<double>(examples.size()));
    std::vector<double> dlogp;
    for (std::size_t first = 0; first < examples.size(); first += opt.examples_per_gradient) {
        const std::size_t count = std::min(opt.examples_per_gradient, examples.size() - first);
        const auto group = examples.subspan(first, count);
        const train::MaskedBatch batch = train::MaskedBatch::from(group, pad);
        // Each example's loss is its own mean over its refusal tokens; a group's gradient is their sum.
        std::vector<double> logp = net.forward(batch.batch, batch.mask);
        dlogp.assign(logp.size(), 0.0);
        for (std::size_t i = 0; i < logp.size(); ++i)
            if (batch.mask[i]) dlogp[i] = -1.0 / static_cast<double>(group[static_cast<std::size_t>(batch.sequence_of[i])].counted());
        for (const auto& s : group) out.tokens += s.counted();
        net.zero_base_gradients();
        net.backward(dlogp);
        const train::BaseGradients& g = net.base_gradients();
        for (std::size_t l = 0; l < w.layers.size(); ++l) {
            const LayerWeights& L = w.layers[l];
            const auto& G = g.layers[l];
            const QuantizedLinear* layers[] = {L.wq.get(), L.wk.get(), L.wv.get(), L.wo.get(), L.w_gate.get(), L.w_up.get(), L.w_down.get()};
            const RowMatrixF* grads[] = {&G.wq, &G.wk, &G.wv, &G.wo, &G.w_gate, &G.w_up, &G.w_down};
            for (std::size_t p = 0; p < 7; ++p) {
                const RowMatrixF& weight = static_cast<const DenseLinear*>(layers[p])->weights();
                const RowMatrixF& grad = *grads[p];
                auto& acc = out.tensors["blk." + std::to_string(l) + "." + train::block_projections[p] + ".weight"];
                const auto n = static_cast<std::size_t>(weight.size());
                if (acc.empty()) acc.assign(n, 0.0f);
                const float* wv = weight.data();
                const float* gv = grad.data();
                float* a = acc.data();
                parallel_for(n, [&](std::size_t i) { a[i] += scale * std::abs(wv[i] * gv[i]); }, std::size_t{1} << 16);
            }
        }
        if (opt.progress) opt.progress(first + count, examples.size());
    }
    return out;
}

}  // namespace qsafe
