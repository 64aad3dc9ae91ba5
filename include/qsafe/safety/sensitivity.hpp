#pragma once
// Per-layer sensitivity: for every linear layer and every candidate scheme, the mean KL divergence from the
// full-precision model over a response set's scored tokens when *only that layer* is quantized (RTN, with
// the calibration importance when given). On the fp model's answers to harmful prompts this is the layer's
// safety sensitivity; on WikiText-2 windows its utility sensitivity. The bit allocator (bit_allocation.hpp)
// spends a bits-per-weight budget where these numbers say it matters.
//
// Cost: layers x candidates forward passes over the set. Two savings keep it practical on a CPU: the hidden
// states entering every block are computed once, so a layer in block b re-runs only blocks b..L-1; and the
// quantized layer is applied as its dequantized fp32 matrix (the same function as the quantized kernels,
// without their activation rounding), so every re-run uses the fast dense products. Results are appended
// to a cache file line by line: an interrupted measurement resumes where it stopped.
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/calib/calibration_stats.hpp"
#include "qsafe/core/error.hpp"
#include "qsafe/core/json_depth.hpp"
#include "qsafe/io/append_log.hpp"
#include "qsafe/model/decoder.hpp"
#include "qsafe/ptq/quantize_model.hpp"
#include "qsafe/registry/scheme_registry.hpp"
#include "qsafe/safety/response_kl.hpp"

namespace qsafe {

struct LayerSensitivity {
    std::string tensor;
    std::size_t rows = 0, cols = 0;
    std::map<std::string, double> kl;            // scheme -> mean KL with only this layer quantized
    std::map<std::string, std::size_t> bytes;    // scheme -> storage bytes of the layer

    std::size_t params() const noexcept { return rows * cols; }
};

struct SensitivityTable {
    std::string source;                   // the response set measured on
    std::vector<std::string> candidates;  // schemes, in the order given
    std::vector<LayerSensitivity> layers;

    nlohmann::ordered_json to_json() const {
        nlohmann::ordered_json j;
        j["source"] = source;
        j["candidates"] = candidates;
        j["layers"] = nlohmann::ordered_json::array();
        for (const auto& l : layers) {
            nlohmann::ordered_json e;
            e["tensor"] = l.tensor;
            e["rows"] = l.rows;
            e["cols"] = l.cols;
            e["kl"] = l.kl;
            e["bytes"] = l.bytes;
            j["layers"].push_back(std::move(e));
        }
        return j;
    }
};

struct SensitivityOptions {
    std::vector<std::string> candidates = {"int2-g64-asym", "int3-g128-asym", "int4-g128-asym", "int8-g32-sym"};
    /// Tensors measured (scheme-rule globs); others are left out of the table.
    std::string tensors = "*";
    /// RTN importance (mean x^2) per layer, as quantize_model uses it; may be null.
    const CalibrationStats* importance = nullptr;
    std::size_t chunk_tokens = 2048;
    /// Resumable cache: one JSON line per measured (tensor, scheme); empty = none.
    std::filesystem::path cache;
    /// (measurements done, total, tensor, scheme, kl)
    std::function<void(std::size_t, std::size_t, const std::string&, const std::string&, double)> progress = {};
};

namespace detail {
inline std::size_t block_of(const std::string& tensor, std::size_t n_layers) {
    if (tensor.starts_with("blk.")) return static_cast<std::size_t>(std::stoul(tensor.substr(4)));
    return n_layers;  // output layer: after the last block
}

/// "blk.*,output" (scheme-rule globs) as rules mapping the selected tensors to "measure".
inline SchemeRules tensor_selection(const std::string& globs) {
    std::string rules = "*=skip";
    std::size_t start = 0;
    while (start <= globs.size()) {
        const std::size_t end = std::min(globs.find(',', start), globs.size());
        if (end > start) rules += "," + globs.substr(start, end - start) + "=measure";
        start = end + 1;
    }
    return SchemeRules::parse(rules);
}

inline std::string sensitivity_key(const std::string& source, const std::string& tensor, const std::string& scheme) {
    return source + "\t" + tensor + "\t" + scheme;
}
}  // namespace detail

/// Measures the table on `model` (full precision; its layers are swapped one at a time and restored).
inline SensitivityTable measure_sensitivity(LlamaModel& model, const ResponseSet& set, const ResponseReference& ref,
                                            const SensitivityOptions& opt) {
    const std::size_t n_layers = model.config().n_layers;
    SensitivityTable table;
    table.source = set.source;
    table.candidates = opt.candidates;
    for (const auto& c : opt.candidates) (void)resolve_scheme(c);  // unknown names fail before any work

    // Finished measurements from an interrupted run.
    std::map<std::string, double> cached;
    if (!opt.cache.empty() && std::filesystem::exists(opt.cache)) {
        std::ifstream in(opt.cache);
        std::string line;
        for (std::size_t no = 1; std::getline(in, line); ++no) {
            if (line.empty()) continue;
            try {
                if (json_depth_exceeded_at(line) != std::string::npos) continue;  // not a line this cache writes
                const auto j = nlohmann::json::parse(line);
                cached[detail::sensitivity_key(j.at("source"), j.at("tensor"), j.at("scheme"))] = j.at("kl").get<double>();
            } catch (const nlohmann::json::exception&) {
                // A torn last line from a kill: ignored, that measurement is simply redone.
            }
        }
    }
    if (!opt.cache.empty()) (void)io::cut_unfinished_last_line(opt.cache);  // a torn line from a kill: redone
    std::ofstream cache_out;
    if (!opt.cache.empty()) cache_out.open(opt.cache, std::ios::app);

    const auto chunks = response_chunks(set, ref.chunk_tokens);
    // Hidden states entering each block (and leaving the last one), per chunk: computed once.
    std::vector<std::vector<RowMatrixF>> block_inputs(chunks.size());
    std::vector<KvCache> caches;
    auto layers = detail::linear_layers(model.mutable_weights());
    std::vector<std::pair<std::string, std::unique_ptr<QuantizedLinear>*>> measured;
    const SchemeRules selection = detail::tensor_selection(opt.tensors);
    for (const auto& l : layers)
        if (selection.scheme_for(l.first) == "measure") measured.push_back(l);

    std::size_t needed_blocks = n_layers;
    for (const auto& [name, layer] : measured) needed_blocks = std::min(needed_blocks, detail::block_of(name, n_layers));
    bool states_ready = false;
    auto prepare_states = [&] {
        if (states_ready) return;
        for (std::size_t c = 0; c < chunks.size(); ++c) {
            auto slots = chunk_slots(model, set, chunks[c], caches);
            RowMatrixF x = model.embed(slots);
            block_inputs[c].assign(n_layers + 1, RowMatrixF());
            for (std::size_t b = 0; b < n_layers; ++b) {
                if (b >= needed_blocks) block_inputs[c][b] = x;
                slots = chunk_slots(model, set, chunks[c], caches);  // fresh caches for a one-block run
                model.run_blocks(slots, b, b + 1, x);
            }
            block_inputs[c][n_layers] = std::move(x);
        }
        states_ready = true;
    };

    const std::size_t total = measured.size() * opt.candidates.size();
    std::size_t done = 0;
    for (const auto& [name, layer] : measured) {
        LayerSensitivity ls;
        ls.tensor = name;
        ls.rows = (*layer)->rows();
        ls.cols = (*layer)->cols();
        const std::size_t block = detail::block_of(name, n_layers);
        const RowMatrixF weights = (*layer)->dequantize();
        for (const auto& scheme : opt.candidates) {
            const ResolvedScheme resolved = resolve_scheme(scheme);
            ls.bytes[scheme] = resolved.entry->storage_bytes(ls.rows, ls.cols, resolved.outlier_columns.value_or(0),
                                                             resolved.outlier_fraction.value_or(0.0));
            const std::string key = detail::sensitivity_key(set.source, name, scheme);
            if (const auto it = cached.find(key); it != cached.end()) {
                ls.kl[scheme] = it->second;
                if (opt.progress) opt.progress(++done, total, name, scheme, it->second);
                continue;
            }
            prepare_states();
            QuantizeOptions qo;
            qo.tensor_name = name;
            VectorF importance;
            if (opt.importance)
                if (const auto* st = opt.importance->for_tensor(name); st && st->tokens > 0) {
                    importance = st->mean_sq();
                    qo.importance = {importance.data(), static_cast<std::size_t>(importance.size())};
                }
            const auto quantized = resolved.entry->quantize_rtn(weights, resolved.apply(qo), resolved.full_name);
            std::unique_ptr<QuantizedLinear> original = std::move(*layer);
            *layer = std::make_unique<DenseLinear>(quantized->dequantize(), resolved.full_name);
            ResponseKlAccumulator acc(ref);
            try {
                visit_response_positions(
                    set, chunks, model,
                    [&](std::span<const TokenSlot> slots, std::size_t c) {
                        RowMatrixF x = block_inputs[c][block];
                        if (block < n_layers) model.run_blocks(slots, block, n_layers, x);
                        return model.head(slots, x);
                    },
                    [&](std::size_t, std::int32_t next, std::span<const float> logits) { acc.add(next, logits); });
            } catch (...) {
                *layer = std::move(original);
                throw;
            }
            *layer = std::move(original);
            const double kl = acc.result().kl.mean_kl;
            ls.kl[scheme] = kl;
            if (cache_out.is_open()) {
                nlohmann::ordered_json j;
                j["source"] = set.source;
                j["tensor"] = name;
                j["scheme"] = scheme;
                j["kl"] = kl;
                cache_out << j.dump() << "\n";
                cache_out.flush();
            }
            if (opt.progress) opt.progress(++done, total, name, scheme, kl);
        }
        table.layers.push_back(std::move(ls));
    }
    return table;
}

}  // namespace qsafe
