#pragma once
// Sequential calibration, as in GPTQ's reference code: each block is calibrated on the inputs it gets from
// the already-quantized blocks before it, so a layer's quantization can correct for the error upstream
// instead of fitting inputs the quantized model never produces.
//   1. The hidden states of every calibration sample at the entrance of block 0 are its token embeddings.
//   2. For block b: run it on the cached hidden states with the calibration recorder (statistics of its input
//      sites only), quantize its seven layers with the method (AWQ searches and folds its scales within the
//      block first), then run the quantized block on the same hidden states: its outputs are block b+1's inputs.
//   3. The output layer last, from the final hidden states (every `output_stride`-th position, as collect).
// Samples run through a block in chunks of about `chunk_tokens` tokens, so the intermediate matrices stay
// moderate; the cached hidden states take samples x tokens x d_model floats (150 MB for 128 x 512 tokens of
// SmolLM2). A block whose layers all stay fp32 is run once. Each layer's statistics come from one run of its
// block with the full-precision block weights (not GPTQ's "true sequential" order inside a block).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "qsafe/calib/collect.hpp"
#include "qsafe/model/decoder.hpp"
#include "qsafe/ptq/awq.hpp"
#include "qsafe/ptq/quantize_model.hpp"

namespace qsafe {

struct SequentialOptions {
    std::size_t output_stride = 16;   // output-layer statistics at every n-th position, as CollectOptions
    std::size_t chunk_tokens = 4096;  // samples that run through a block together (at least one sample)
    /// Called after each block and after the output layer: (steps done, steps total = blocks + 1, seconds so far).
    std::function<void(std::size_t, std::size_t, double)> progress = {};
};

struct SequentialResult {
    std::vector<PtqLayerReport> layers;
    /// Every input site's statistics as its layers saw them (for AWQ: of the scaled inputs).
    CalibrationStats stats;
};

/// Quantizes `model` (every linear layer fp32 on entry) in place, calibrating block by block on `samples`.
inline SequentialResult quantize_model_sequential(LlamaModel& model, const std::vector<std::vector<std::int32_t>>& samples,
                                                  const PtqOptions& opt, const SequentialOptions& seq = {}) {
    const auto start = std::chrono::steady_clock::now();
    LlamaWeights& w = model.mutable_weights();
    const LlamaConfig& c = w.config;
    const auto d = static_cast<Eigen::Index>(c.d_model);

    // Every token of every non-empty sample, one row each; sample i's rows start at offset[i].
    std::vector<const std::vector<std::int32_t>*> used;
    for (const auto& s : samples)
        if (!s.empty()) used.push_back(&s);
    if (used.empty()) throw config_error("sequential calibration: no calibration samples");
    std::vector<std::size_t> offset(used.size() + 1, 0);
    for (std::size_t i = 0; i < used.size(); ++i) offset[i + 1] = offset[i] + used[i]->size();
    // Chunks: consecutive samples with up to chunk_tokens tokens together.
    std::vector<std::size_t> chunk_begin{0};
    for (std::size_t i = 1; i < used.size(); ++i)
        if (offset[i + 1] - offset[chunk_begin.back()] > seq.chunk_tokens) chunk_begin.push_back(i);
    chunk_begin.push_back(used.size());

    std::size_t max_chunk_samples = 0;
    for (std::size_t k = 0; k + 1 < chunk_begin.size(); ++k)
        max_chunk_samples = std::max(max_chunk_samples, chunk_begin[k + 1] - chunk_begin[k]);
    std::vector<KvCache> caches(max_chunk_samples, model.new_cache());  // reused: cleared before every run
    const std::size_t stride = seq.output_stride == 0 ? 1 : seq.output_stride;
    auto slots_of = [&](std::size_t k, bool want_output_positions) {
        std::vector<TokenSlot> slots;
        for (std::size_t i = chunk_begin[k]; i < chunk_begin[k + 1]; ++i) {
            KvCache& cache = caches[i - chunk_begin[k]];
            cache.clear();
            const auto& tokens = *used[i];
            for (std::size_t t = 0; t < tokens.size(); ++t)
                slots.push_back({&cache, tokens[t], want_output_positions && (t + 1) % stride == 0});
        }
        return slots;
    };
    auto rows_of = [&](std::size_t k) {
        return std::pair{static_cast<Eigen::Index>(offset[chunk_begin[k]]),
                         static_cast<Eigen::Index>(offset[chunk_begin[k + 1]] - offset[chunk_begin[k]])};
    };

    RowMatrixF hidden(static_cast<Eigen::Index>(offset.back()), d);
    for (std::size_t k = 0; k + 1 < chunk_begin.size(); ++k) {
        const auto [row, n] = rows_of(k);
        hidden.middleRows(row, n) = model.embed(slots_of(k, false));
    }

    QuantizeOptions base = opt.base;
    base.clip_search = base.clip_search || ptq_method_searches_clip(opt.method);
    SequentialResult result;
    const std::size_t steps = c.n_layers + 1;
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    std::size_t layers_done = 0;
    const std::size_t layers_total = 7 * c.n_layers + 1;
    auto quantize = [&](const std::string& name, std::unique_ptr<QuantizedLinear>& layer, const CalibrationStats& stats) {
        result.layers.push_back(detail::quantize_layer(name, layer, &stats, opt, base));
        if (opt.progress) opt.progress(name, result.layers.back().scheme, ++layers_done, layers_total, result.layers.back().seconds);
    };

    for (std::size_t b = 0; b < c.n_layers; ++b) {
        const auto block_layers = detail::block_linear_layers(w, b);
        bool changes = false;
        for (const auto& [name, layer] : block_layers) changes |= ptq_scheme_for(name, opt) != "fp32";

        // Statistics of block b's input sites, on the inputs the quantized blocks before it produce.
        CalibrationStats block_stats;
        {
            CalibrationRecorder recorder(model, block_stats);
            for (std::size_t k = 0; k + 1 < chunk_begin.size(); ++k) {
                const auto [row, n] = rows_of(k);
                RowMatrixF x = hidden.middleRows(row, n);
                recorder.new_run();
                model.run_blocks(slots_of(k, false), b, b + 1, x);
                if (!changes) hidden.middleRows(row, n) = x;  // the block stays as it is: these are its outputs
            }
        }
        for (auto& [site, s] : block_stats.sites) s.finalize();

        if (changes) {
            // block_stats holds block b's sites only, so AWQ searches and folds within this block.
            if (opt.method == PtqMethod::awq) apply_awq(w, block_stats, opt.rules, opt.awq, opt.base);
            for (const auto& [name, layer] : block_layers) quantize(name, *layer, block_stats);
            for (std::size_t k = 0; k + 1 < chunk_begin.size(); ++k) {
                const auto [row, n] = rows_of(k);
                RowMatrixF x = hidden.middleRows(row, n);
                model.run_blocks(slots_of(k, false), b, b + 1, x);
                hidden.middleRows(row, n) = x;
            }
        } else {
            for (const auto& [name, layer] : block_layers) quantize(name, *layer, block_stats);  // fp32: kept as is
        }
        for (auto& [site, s] : block_stats.sites) result.stats.sites.insert_or_assign(site, std::move(s));
        if (seq.progress) seq.progress(b + 1, steps, seconds());
    }

    // The output layer, from the final hidden states.
    CalibrationStats output_stats;
    {
        CalibrationRecorder recorder(model, output_stats);
        for (std::size_t k = 0; k + 1 < chunk_begin.size(); ++k) {
            const auto [row, n] = rows_of(k);
            recorder.new_run();
            model.head(slots_of(k, true), hidden.middleRows(row, n));
        }
    }
    for (auto& [site, s] : output_stats.sites) s.finalize();
    quantize("output.weight", w.output, output_stats);
    for (auto& [site, s] : output_stats.sites) result.stats.sites.insert_or_assign(site, std::move(s));
    if (seq.progress) seq.progress(steps, steps, seconds());
    return result;
}

}  // namespace qsafe
