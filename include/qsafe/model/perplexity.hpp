#pragma once
// Perplexity the way llama.cpp's perplexity tool computes it: the text is tokenized once, cut into
// non-overlapping windows of n_ctx tokens (the first token of each window replaced by BOS when the model adds
// BOS), and only the second half of each window is scored, so every scored token has at least n_ctx/2 tokens
// of context. ppl = exp(mean NLL), with the standard error of the mean NLL carried to ppl.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/model/decoder.hpp"
#include "qsafe/model/ops.hpp"

namespace qsafe {

struct WindowOptions {
    std::size_t n_ctx = 512;
    std::size_t max_windows = 0;  // 0 = every full window of the text
    bool replace_first_with_bos = false;
    std::int32_t bos_id = -1;
};

/// Called for every scored position: window index, position in the window, the logits predicting the next
/// token, and that next token.
using ScoredPositionVisitor =
    std::function<void(std::size_t window, std::size_t position, std::span<const float> logits, std::int32_t next_token)>;

inline std::size_t window_count(std::size_t n_tokens, const WindowOptions& opt) {
    std::size_t n = n_tokens / opt.n_ctx;
    if (opt.max_windows > 0) n = std::min(n, opt.max_windows);
    return n;
}

/// Runs the model over the windows and visits the scored positions [n_ctx/2, n_ctx - 1) of each window.
inline void visit_scored_positions(LlamaModel& model, std::span<const std::int32_t> tokens, const WindowOptions& opt,
                                   const ScoredPositionVisitor& visit) {
    if (opt.n_ctx < 4) throw config_error("perplexity: the window must be at least 4 tokens");
    if (opt.n_ctx > model.config().context_length)
        throw config_error("perplexity: window of " + std::to_string(opt.n_ctx) + " tokens exceeds the context length " +
                           std::to_string(model.config().context_length));
    const std::size_t windows = window_count(tokens.size(), opt);
    if (windows == 0)
        throw config_error("perplexity: the text has " + std::to_string(tokens.size()) + " tokens, fewer than one window of " +
                           std::to_string(opt.n_ctx));
    const std::size_t first = opt.n_ctx / 2;
    for (std::size_t w = 0; w < windows; ++w) {
        std::vector<std::int32_t> window(tokens.begin() + static_cast<std::ptrdiff_t>(w * opt.n_ctx),
                                         tokens.begin() + static_cast<std::ptrdiff_t>((w + 1) * opt.n_ctx));
        if (opt.replace_first_with_bos && opt.bos_id >= 0) window[0] = opt.bos_id;
        KvCache cache = model.new_cache();
        std::vector<TokenSlot> slots(opt.n_ctx);
        for (std::size_t i = 0; i < opt.n_ctx; ++i) slots[i] = {&cache, window[i], i >= first && i + 1 < opt.n_ctx};
        const RowMatrixF logits = model.forward(slots);
        for (std::size_t i = first; i + 1 < opt.n_ctx; ++i) {
            const auto row = static_cast<Eigen::Index>(i - first);
            visit(w, i, {logits.row(row).data(), static_cast<std::size_t>(logits.cols())}, window[i + 1]);
        }
    }
}

struct PerplexityResult {
    std::size_t n_ctx = 0, windows = 0, scored_tokens = 0;
    double mean_nll = 0.0, ppl = 0.0, ppl_stderr = 0.0;
    std::vector<double> window_mean_nll;
};

/// Accumulates NLL values into llama.cpp's ppl and standard error.
class PerplexityAccumulator {
  public:
    void add(std::size_t window, double nll) {
        if (window >= window_sum_.size()) {
            window_sum_.resize(window + 1, 0.0);
            window_count_.resize(window + 1, 0);
        }
        window_sum_[window] += nll;
        ++window_count_[window];
        sum_ += nll;
        sum2_ += nll * nll;
        ++count_;
    }
    PerplexityResult result(std::size_t n_ctx) const {
        PerplexityResult r;
        r.n_ctx = n_ctx;
        r.windows = window_sum_.size();
        r.scored_tokens = count_;
        if (count_ == 0) return r;
        const double n = static_cast<double>(count_);
        r.mean_nll = sum_ / n;
        r.ppl = std::exp(r.mean_nll);
        const double var = sum2_ / n - r.mean_nll * r.mean_nll;
        r.ppl_stderr = count_ > 1 ? r.ppl * std::sqrt(std::max(var, 0.0) / (n - 1.0)) : 0.0;
        for (std::size_t w = 0; w < window_sum_.size(); ++w)
            r.window_mean_nll.push_back(window_count_[w] ? window_sum_[w] / static_cast<double>(window_count_[w]) : 0.0);
        return r;
    }

  private:
    std::vector<double> window_sum_;
    std::vector<std::size_t> window_count_;
    double sum_ = 0.0, sum2_ = 0.0;
    std::size_t count_ = 0;
};

inline PerplexityResult perplexity(LlamaModel& model, std::span<const std::int32_t> tokens, const WindowOptions& opt) {
    PerplexityAccumulator acc;
    std::vector<float> logp;
    visit_scored_positions(model, tokens, opt, [&](std::size_t w, std::size_t, std::span<const float> logits, std::int32_t next) {
        logp.resize(logits.size());
        ops::log_softmax(logits, logp);
        acc.add(w, -static_cast<double>(logp[static_cast<std::size_t>(next)]));
    });
    return acc.result(opt.n_ctx);
}

}  // namespace qsafe
