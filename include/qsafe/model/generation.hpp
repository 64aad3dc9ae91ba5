#pragma once
// Generating answers for many prompts at once: prompts are prefilled together (GEMM over all their
// tokens), then every unfinished sequence advances by one token per batched decode step. Each sequence has
// its own KV cache, length, sampler stream and stop condition, so its output does not depend on which other
// prompts share the batch (up to float rounding of the batched kernels).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "qsafe/model/decoder.hpp"
#include "qsafe/model/sampler.hpp"
#include "qsafe/tokenizer/tokenizer.hpp"

namespace qsafe {

enum class StopReason { end_of_generation, max_tokens, context_full };

inline const char* stop_reason_name(StopReason r) noexcept {
    switch (r) {
        case StopReason::end_of_generation: return "eog";
        case StopReason::max_tokens: return "max_tokens";
        case StopReason::context_full: return "context_full";
    }
    return "?";
}

struct GenerationOptions {
    std::size_t max_new_tokens = 128;
    SamplingOptions sampling;
    std::size_t max_batch = 32;                  // sequences decoded together
    std::vector<std::int32_t> extra_stop_tokens;  // besides the tokenizer's end-of-generation tokens
};

struct GenerationResult {
    std::vector<std::int32_t> tokens;  // generated tokens, without the stop token
    std::string text;
    StopReason stop = StopReason::max_tokens;
    std::size_t prompt_tokens = 0;
};

struct GenerationStats {
    std::size_t prompt_tokens = 0, generated_tokens = 0;
    double prefill_seconds = 0.0, decode_seconds = 0.0;
};

/// Called after each sequence finishes (index into the prompts, its result), e.g. to journal it.
using GenerationCallback = std::function<void(std::size_t index, const GenerationResult&)>;

inline std::vector<GenerationResult> generate(LlamaModel& model, const tokenizer::Tokenizer& tok,
                                              std::span<const std::vector<std::int32_t>> prompts,
                                              const GenerationOptions& options, GenerationStats* stats = nullptr,
                                              const GenerationCallback& on_done = {}) {
    using clock = std::chrono::steady_clock;
    std::vector<GenerationResult> results(prompts.size());
    const auto is_stop = [&](std::int32_t t) {
        if (tok.is_end_of_generation(t)) return true;
        for (auto s : options.extra_stop_tokens)
            if (s == t) return true;
        return false;
    };
    const std::size_t batch = std::max<std::size_t>(options.max_batch, 1);
    for (std::size_t first = 0; first < prompts.size(); first += batch) {
        const std::size_t count = std::min(batch, prompts.size() - first);
        std::vector<KvCache> caches;
        caches.reserve(count);
        std::vector<Sampler> samplers;
        std::vector<TokenSlot> slots;
        for (std::size_t i = 0; i < count; ++i) {
            const auto& p = prompts[first + i];
            if (p.empty()) throw config_error("generate: prompt " + std::to_string(first + i) + " has no tokens");
            caches.push_back(model.new_cache());
            samplers.emplace_back(options.sampling, first + i);
            results[first + i].prompt_tokens = p.size();
        }
        for (std::size_t i = 0; i < count; ++i)
            for (std::size_t j = 0; j < prompts[first + i].size(); ++j)
                slots.push_back({&caches[i], prompts[first + i][j], j + 1 == prompts[first + i].size()});
        auto t0 = clock::now();
        RowMatrixF logits = model.forward(slots);
        auto t1 = clock::now();
        if (stats) {
            stats->prefill_seconds += std::chrono::duration<double>(t1 - t0).count();
            stats->prompt_tokens += slots.size();
        }
        std::vector<std::size_t> active(count);
        std::vector<std::int32_t> next(count);
        for (std::size_t i = 0; i < count; ++i) {
            active[i] = i;
            next[i] = samplers[i].sample({logits.row(static_cast<Eigen::Index>(i)).data(), static_cast<std::size_t>(logits.cols())});
        }
        auto finish = [&](std::size_t i, StopReason why) {
            GenerationResult& r = results[first + i];
            r.stop = why;
            r.text = tok.decode(r.tokens);
            if (on_done) on_done(first + i, r);
        };
        while (!active.empty()) {
            // Append the chosen tokens; retire the sequences that stop.
            std::vector<std::size_t> still;
            std::vector<KvCache*> step_caches;
            std::vector<std::int32_t> step_tokens;
            for (std::size_t idx = 0; idx < active.size(); ++idx) {
                const std::size_t i = active[idx];
                GenerationResult& r = results[first + i];
                const std::int32_t t = next[idx];
                if (is_stop(t)) {
                    finish(i, StopReason::end_of_generation);
                    continue;
                }
                r.tokens.push_back(t);
                if (r.tokens.size() >= options.max_new_tokens) {
                    finish(i, StopReason::max_tokens);
                    continue;
                }
                if (caches[i].length() + 1 >= caches[i].max_length()) {
                    finish(i, StopReason::context_full);
                    continue;
                }
                still.push_back(i);
                step_caches.push_back(&caches[i]);
                step_tokens.push_back(t);
            }
            active = std::move(still);
            if (active.empty()) break;
            t0 = clock::now();
            logits = model.decode_step(step_caches, step_tokens);
            t1 = clock::now();
            if (stats) {
                stats->decode_seconds += std::chrono::duration<double>(t1 - t0).count();
                stats->generated_tokens += active.size();
            }
            next.resize(active.size());
            for (std::size_t idx = 0; idx < active.size(); ++idx)
                next[idx] = samplers[active[idx]].sample(
                    {logits.row(static_cast<Eigen::Index>(idx)).data(), static_cast<std::size_t>(logits.cols())});
        }
    }
    return results;
}

}  // namespace qsafe
