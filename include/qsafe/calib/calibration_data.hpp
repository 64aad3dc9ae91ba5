#pragma once
// Calibration samples: token sequences the full-precision model is run over to collect statistics.
//   - text_samples: random windows of a tokenized text (WikiText-2, as GPTQ and AWQ use). qsafe only has
//     WikiText-2's test split, which is also its perplexity benchmark, so the windows are drawn from the
//     second half of the tokens by default and perplexity is measured on the first half (see
//     docs/calibrated-quantization.md): calibration never sees the evaluated text.
//   - prompt_samples: prompts (e.g. of a safety dataset) formatted with the chat template and packed into
//     sequences of up to `length` tokens, so harmful and benign calibration can be compared.
// Both are deterministic for a seed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/tokenizer/chat_template.hpp"
#include "qsafe/tokenizer/tokenizer.hpp"

namespace qsafe {

struct SampleOptions {
    std::size_t samples = 128;
    std::size_t length = 512;
    std::uint64_t seed = 1;
    /// text_samples: the part of the token stream windows are drawn from, as fractions [begin, end).
    double region_begin = 0.5;
    double region_end = 1.0;
};

/// `count` windows of `length` tokens at random offsets inside the region (windows may overlap, as in
/// GPTQ's sampler).
inline std::vector<std::vector<std::int32_t>> text_samples(std::span<const std::int32_t> tokens, const SampleOptions& opt) {
    if (opt.length == 0 || opt.samples == 0) throw config_error("calibration: samples and length must be positive");
    if (!(opt.region_begin >= 0.0 && opt.region_begin < opt.region_end && opt.region_end <= 1.0))
        throw config_error("calibration: the text region must satisfy 0 <= begin < end <= 1");
    const auto n = static_cast<double>(tokens.size());
    const auto begin = static_cast<std::size_t>(opt.region_begin * n);
    const auto end = static_cast<std::size_t>(opt.region_end * n);
    if (end < begin + opt.length)
        throw config_error("calibration: the text region holds " + std::to_string(end - begin) + " tokens, fewer than one window of " +
                           std::to_string(opt.length));
    std::mt19937_64 rng(opt.seed);
    std::uniform_int_distribution<std::size_t> start(begin, end - opt.length);
    std::vector<std::vector<std::int32_t>> out(opt.samples);
    for (auto& s : out) {
        const std::size_t at = start(rng);
        s.assign(tokens.begin() + static_cast<std::ptrdiff_t>(at), tokens.begin() + static_cast<std::ptrdiff_t>(at + opt.length));
    }
    return out;
}

/// Prompts formatted as single user turns (with the assistant header opened), shuffled with the seed and
/// packed back to back into `samples` sequences of at most `length` tokens. A prompt longer than `length`
/// is cut. Stops early when the prompts run out.
inline std::vector<std::vector<std::int32_t>> prompt_samples(const tokenizer::Tokenizer& tok, const tokenizer::ChatTemplate& chat,
                                                             std::span<const std::string> prompts, const SampleOptions& opt) {
    if (opt.length == 0 || opt.samples == 0) throw config_error("calibration: samples and length must be positive");
    if (prompts.empty()) throw config_error("calibration: no prompts to calibrate on");
    std::vector<std::size_t> order(prompts.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::mt19937_64 rng(opt.seed);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::vector<std::int32_t>> out;
    std::vector<std::int32_t> current;
    for (std::size_t i : order) {
        const tokenizer::Message turn{"user", prompts[i]};
        auto ids = tok.encode(chat.format(std::span<const tokenizer::Message>(&turn, 1)), {.parse_special = true});
        if (ids.size() > opt.length) ids.resize(opt.length);
        if (current.size() + ids.size() > opt.length) {
            out.push_back(std::move(current));
            current.clear();
            if (out.size() == opt.samples) return out;
        }
        current.insert(current.end(), ids.begin(), ids.end());
    }
    if (!current.empty() && out.size() < opt.samples) out.push_back(std::move(current));
    return out;
}

}  // namespace qsafe
