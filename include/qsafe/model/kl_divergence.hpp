#pragma once
// KL divergence of a variant's next-token distributions from the full-precision model's, over the scored
// positions of perplexity windows, with the statistics llama.cpp's --kl-divergence prints: mean and
// percentiles of KL(ref || variant), same-top-token %, and both perplexities with their ratio.
//
// Two ways to get the reference: side by side (both models in memory; exact over the whole vocabulary),
// or stored (ReferenceLogprobs: the reference's top-k log-probabilities per position, written once by the
// fp model). With a stored top-k, the vocabulary outside the top k is merged into one "tail" outcome,
// which gives a lower bound of the exact KL (log-sum inequality) that is tight when the top k hold almost
// all the mass (k = 128 keeps > 99.9 % of it for SmolLM2 on WikiText-2; the tail mass is reported).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/byte_buffer.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/io/mmap_file.hpp"
#include "qsafe/model/perplexity.hpp"
#include "qsafe/model/sampler.hpp"

namespace qsafe {

struct KlStats {
    std::size_t positions = 0;
    double mean_kl = 0.0, kl_stderr = 0.0, median_kl = 0.0, p90_kl = 0.0, p99_kl = 0.0, max_kl = 0.0;
    double same_top_fraction = 0.0, same_top_stderr = 0.0;
    double ppl_reference = 0.0, ppl_variant = 0.0, ppl_ratio = 0.0;
    double mean_reference_tail_mass = 0.0;  // stored top-k only: mass outside the top k
};

class KlAccumulator {
  public:
    void add(double kl, bool same_top, double ref_nll, double var_nll, double tail_mass = 0.0) {
        kls_.push_back(std::max(kl, 0.0));
        same_ += same_top ? 1 : 0;
        ref_nll_ += ref_nll;
        var_nll_ += var_nll;
        tail_ += tail_mass;
    }
    KlStats result() const {
        KlStats s;
        s.positions = kls_.size();
        if (kls_.empty()) return s;
        const double n = static_cast<double>(kls_.size());
        double sum = 0.0, sum2 = 0.0;
        for (double k : kls_) {
            sum += k;
            sum2 += k * k;
        }
        s.mean_kl = sum / n;
        s.kl_stderr = n > 1 ? std::sqrt(std::max(sum2 / n - s.mean_kl * s.mean_kl, 0.0) / (n - 1.0)) : 0.0;
        std::vector<double> sorted = kls_;
        std::sort(sorted.begin(), sorted.end());
        auto pct = [&](double q) { return sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(q * (n - 1.0) + 0.5))]; };
        s.median_kl = pct(0.5);
        s.p90_kl = pct(0.9);
        s.p99_kl = pct(0.99);
        s.max_kl = sorted.back();
        s.same_top_fraction = static_cast<double>(same_) / n;
        s.same_top_stderr = std::sqrt(s.same_top_fraction * (1.0 - s.same_top_fraction) / n);
        s.ppl_reference = std::exp(ref_nll_ / n);
        s.ppl_variant = std::exp(var_nll_ / n);
        s.ppl_ratio = s.ppl_variant / s.ppl_reference;
        s.mean_reference_tail_mass = tail_ / n;
        return s;
    }

  private:
    std::vector<double> kls_;
    std::size_t same_ = 0;
    double ref_nll_ = 0.0, var_nll_ = 0.0, tail_ = 0.0;
};

/// KL(p || q) where p is known only by its top-k log-probs (`ids`, `logp`, most likely first) and q fully
/// (`logq`, log-softmax over the vocabulary): the vocabulary outside the top k is merged into one tail
/// outcome on both sides, a lower bound of the exact KL. Also returns p's tail mass.
struct TopKKl {
    double kl = 0.0, tail_mass = 0.0;
};
inline TopKKl top_k_kl(std::span<const std::int32_t> ids, std::span<const float> logp, std::span<const float> logq) {
    double kl = 0.0, p_top = 0.0, q_top = 0.0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const double lp = logp[i];
        const double lq = logq[static_cast<std::size_t>(ids[i])];
        const double pp = std::exp(lp);
        kl += pp * (lp - lq);
        p_top += pp;
        q_top += std::exp(lq);
    }
    const double p_tail = std::max(1.0 - p_top, 0.0), q_tail = std::max(1.0 - q_top, 1e-30);
    if (p_tail > 1e-12) kl += p_tail * (std::log(p_tail) - std::log(q_tail));
    return {kl, p_tail};
}

/// Appends the k most likely tokens of `logp` (ties by lower id) and their log-probs.
inline void append_top_k(std::span<const float> logp, std::uint32_t k, std::vector<std::int32_t>& ids, std::vector<float>& top_logp) {
    thread_local std::vector<std::int32_t> order;
    order.resize(logp.size());
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](std::int32_t a, std::int32_t b) { return logp[a] > logp[b] || (logp[a] == logp[b] && a < b); });
    for (std::uint32_t i = 0; i < k; ++i) {
        ids.push_back(order[i]);
        top_logp.push_back(logp[static_cast<std::size_t>(order[i])]);
    }
}

/// Exact KL over the whole vocabulary, both models run on the same windows.
inline KlStats compare_side_by_side(LlamaModel& reference, LlamaModel& variant, std::span<const std::int32_t> tokens,
                                    const WindowOptions& opt) {
    // Reference log-probs of one window are kept while the variant runs the same window.
    const std::size_t first = opt.n_ctx / 2, per_window = opt.n_ctx - 1 - first;
    const std::size_t vocab = reference.config().vocab_size;
    if (variant.config().vocab_size != vocab) throw config_error("compare: the two models have different vocabularies");
    KlAccumulator acc;
    std::vector<float> ref_logp(per_window * vocab), logq(vocab);
    std::vector<std::int32_t> ref_top(per_window);
    const std::size_t windows = window_count(tokens.size(), opt);
    for (std::size_t w = 0; w < windows; ++w) {
        WindowOptions one = opt;
        const auto begin = static_cast<std::ptrdiff_t>(w * opt.n_ctx);
        const std::span<const std::int32_t> window = tokens.subspan(static_cast<std::size_t>(begin), opt.n_ctx);
        one.max_windows = 1;
        visit_scored_positions(reference, window, one, [&](std::size_t, std::size_t i, std::span<const float> logits, std::int32_t) {
            ops::log_softmax(logits, {ref_logp.data() + (i - first) * vocab, vocab});
            ref_top[i - first] = Sampler::argmax(logits);
        });
        visit_scored_positions(variant, window, one, [&](std::size_t, std::size_t i, std::span<const float> logits, std::int32_t next) {
            ops::log_softmax(logits, logq);
            const float* logp = ref_logp.data() + (i - first) * vocab;
            double kl = 0.0;
            for (std::size_t v = 0; v < vocab; ++v)
                if (logp[v] > -30.0f) kl += std::exp(static_cast<double>(logp[v])) * (static_cast<double>(logp[v]) - logq[v]);
            acc.add(kl, Sampler::argmax(logits) == ref_top[i - first], -static_cast<double>(logp[static_cast<std::size_t>(next)]),
                    -static_cast<double>(logq[static_cast<std::size_t>(next)]));
        });
    }
    return acc.result();
}

/// The reference model's top-k log-probabilities over the scored positions of the windows.
struct ReferenceLogprobs {
    static constexpr std::uint32_t magic = 0x4C4B5351;  // "QSKL"
    std::uint32_t n_ctx = 0, windows = 0, k = 0, vocab = 0;
    std::vector<std::int32_t> next_token;  // per position
    std::vector<float> next_logp;          // per position: log p_ref(next token)
    std::vector<std::int32_t> top_ids;     // positions x k, most likely first
    std::vector<float> top_logp;           // positions x k

    std::size_t positions() const noexcept { return next_token.size(); }

    void save(const std::filesystem::path& path) const {
        ByteWriter out;
        out.put(magic);
        out.put(std::uint32_t{1});
        for (auto v : {n_ctx, windows, k, vocab}) out.put(v);
        out.put_array(next_token);
        out.put_array(next_logp);
        out.put_array(top_ids);
        out.put_array(top_logp);
        io::atomic_write(path, [&](auto&& sink) { sink(out.bytes().data(), out.bytes().size()); });
    }
    static ReferenceLogprobs load(const std::filesystem::path& path) {
        const auto file = io::MappedFile::open(path);
        ByteReader in(file.bytes(), path.string());
        ReferenceLogprobs r;
        if (in.get<std::uint32_t>("magic") != magic) in.fail("not a qsafe reference log-prob file");
        if (in.get<std::uint32_t>("version") != 1) in.fail("unsupported version");
        r.n_ctx = in.get<std::uint32_t>("n_ctx");
        r.windows = in.get<std::uint32_t>("windows");
        r.k = in.get<std::uint32_t>("k");
        r.vocab = in.get<std::uint32_t>("vocab");
        in.get_array(r.next_token, "next tokens");
        in.get_array(r.next_logp, "next log-probs");
        in.get_array(r.top_ids, "top ids");
        in.get_array(r.top_logp, "top log-probs");
        const std::size_t n = r.next_token.size();
        if (r.n_ctx < 4 || r.k == 0 || r.next_logp.size() != n || r.top_ids.size() != n * r.k || r.top_logp.size() != n * r.k ||
            n != static_cast<std::size_t>(r.windows) * (r.n_ctx - 1 - r.n_ctx / 2))
            in.fail("inconsistent sizes");
        for (auto id : r.top_ids)
            if (id < 0 || static_cast<std::uint32_t>(id) >= r.vocab) in.fail("token id out of range");
        return r;
    }
};

inline ReferenceLogprobs record_reference(LlamaModel& model, std::span<const std::int32_t> tokens, const WindowOptions& opt,
                                          std::uint32_t k = 128) {
    ReferenceLogprobs r;
    r.n_ctx = static_cast<std::uint32_t>(opt.n_ctx);
    r.windows = static_cast<std::uint32_t>(window_count(tokens.size(), opt));
    r.vocab = static_cast<std::uint32_t>(model.config().vocab_size);
    r.k = std::min<std::uint32_t>(k, r.vocab);
    std::vector<float> logp(r.vocab);
    visit_scored_positions(model, tokens, opt, [&](std::size_t, std::size_t, std::span<const float> logits, std::int32_t next) {
        ops::log_softmax(logits, logp);
        r.next_token.push_back(next);
        r.next_logp.push_back(logp[static_cast<std::size_t>(next)]);
        append_top_k(logp, r.k, r.top_ids, r.top_logp);
    });
    return r;
}

/// KL of `variant` from a stored reference (top-k plus one merged tail outcome).
inline KlStats compare_to_reference(LlamaModel& variant, std::span<const std::int32_t> tokens, const WindowOptions& opt,
                                    const ReferenceLogprobs& ref) {
    if (ref.n_ctx != opt.n_ctx || ref.windows != window_count(tokens.size(), opt) || ref.vocab != variant.config().vocab_size)
        throw config_error("KL reference was recorded with n_ctx " + std::to_string(ref.n_ctx) + ", " + std::to_string(ref.windows) +
                           " windows and vocabulary " + std::to_string(ref.vocab) + "; this run does not match");
    KlAccumulator acc;
    std::vector<float> logq(ref.vocab);
    std::size_t p = 0;
    visit_scored_positions(variant, tokens, opt, [&](std::size_t, std::size_t, std::span<const float> logits, std::int32_t next) {
        if (next != ref.next_token[p]) throw config_error("KL reference was recorded on a different text");
        ops::log_softmax(logits, logq);
        const TopKKl d = top_k_kl({ref.top_ids.data() + p * ref.k, ref.k}, {ref.top_logp.data() + p * ref.k, ref.k}, logq);
        acc.add(d.kl, Sampler::argmax(logits) == ref.top_ids[p * ref.k], -static_cast<double>(ref.next_logp[p]),
                -static_cast<double>(logq[static_cast<std::size_t>(next)]), d.tail_mass);
        ++p;
    });
    return acc.result();
}

}  // namespace qsafe
