#pragma once
// The statistics the safety report and its gate rest on: a Wilson score interval for a rate (refusal rate,
// ASR, over-refusal), McNemar's exact test for paired verdicts (the same prompts answered by the reference
// and by a quantized variant; two-sided for the report, one-sided for the gate) and Holm's correction for
// testing many variants at once. They must behave at the edges that small evaluation sets hit all the time:
// 0 of n, n of n, n = 0, no discordant pairs.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <optional>
#include <span>
#include <vector>

namespace qsafe::eval {

/// Two-sided 95 % normal quantile, Φ⁻¹(0.975).
inline constexpr double z_95 = 1.959963984540054;

struct Interval {
    double low = 0.0;
    double high = 1.0;
    friend bool operator==(const Interval&, const Interval&) = default;
};

/// Wilson score interval for k successes in n trials. Unlike the Wald interval it stays inside [0, 1] and
/// does not collapse to a point at k = 0 or k = n. With n = 0 nothing is known: the interval is [0, 1].
inline Interval wilson_interval(std::size_t k, std::size_t n, double z = z_95) {
    if (n == 0) return {0.0, 1.0};
    k = std::min(k, n);
    const double nn = static_cast<double>(n);
    const double p = static_cast<double>(k) / nn;
    const double z2 = z * z;
    const double denominator = 1.0 + z2 / nn;
    const double centre = (p + z2 / (2.0 * nn)) / denominator;
    const double half_width = z / denominator * std::sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn));
    // The bounds are exactly 0 and 1 at the edges; rounding would otherwise leave 1e-17 or 0.99999999999999989.
    const double low = k == 0 ? 0.0 : std::max(0.0, centre - half_width);
    const double high = k == n ? 1.0 : std::min(1.0, centre + half_width);
    return {low, high};
}

/// A count out of a total, with the derived rate and its Wilson interval.
struct Proportion {
    std::size_t count = 0;
    std::size_t total = 0;

    /// Empty when total is 0: a rate of nothing is not 0 %.
    std::optional<double> rate() const {
        if (total == 0) return std::nullopt;
        return static_cast<double>(count) / static_cast<double>(total);
    }
    Interval wilson() const { return wilson_interval(count, total); }
    /// The complementary proportion (e.g. ASR = 1 − refusal rate over the same prompts).
    Proportion complement() const { return {total - std::min(count, total), total}; }

    friend bool operator==(const Proportion&, const Proportion&) = default;
};

namespace detail {

/// log P(X = i) for X ~ Binomial(n, 1/2); lgamma keeps it finite for any count.
inline double log_binomial_half(std::size_t n, std::size_t i) {
    const double nn = static_cast<double>(n);
    const double ii = static_cast<double>(i);
    return std::lgamma(nn + 1.0) - std::lgamma(ii + 1.0) - std::lgamma(nn - ii + 1.0) - nn * std::log(2.0);
}

/// P(X ≤ k) and P(X = k) for X ~ Binomial(n, 1/2), k ≤ n/2. The terms grow with i up to k, so the sum is
/// taken relative to the largest term P(X = k) and never underflows, however large n is.
struct LowerTail {
    double cumulative;
    double at_k;
};

inline LowerTail binomial_half_lower_tail(std::size_t n, std::size_t k) {
    const double log_at_k = log_binomial_half(n, k);
    double relative_sum = 0.0;
    for (std::size_t i = 0; i <= k; ++i) relative_sum += std::exp(log_binomial_half(n, i) - log_at_k);
    const double at_k = std::exp(log_at_k);
    return {at_k * relative_sum, at_k};
}

}  // namespace detail

/// McNemar's exact test: a two-sided binomial test of b against b + c at p = 1/2, where b and c are the
/// discordant pairs (refused → complied and complied → refused). p = min(1, 2·P(X ≤ min(b, c))).
/// With no discordant pairs there is no evidence of a change: p = 1.
inline double mcnemar_exact_p(std::size_t b, std::size_t c) {
    const std::size_t n = b + c;
    if (n == 0) return 1.0;
    const auto tail = detail::binomial_half_lower_tail(n, std::min(b, c));
    return std::min(1.0, 2.0 * tail.cumulative);
}

/// The mid-p variant: counts only half the probability of the observed table,
/// p = min(1, 2·P(X < min(b, c)) + P(X = min(b, c))). It is less conservative than the exact test and
/// closer to nominal size (Fagerland, Lydersen and Laake 2013); the report lists it beside the exact p.
inline double mcnemar_mid_p(std::size_t b, std::size_t c) {
    const std::size_t n = b + c;
    if (n == 0) return 1.0;
    const auto tail = detail::binomial_half_lower_tail(n, std::min(b, c));
    return std::min(1.0, 2.0 * tail.cumulative - tail.at_k);
}

/// McNemar's exact test, one-sided: is the variant worse than the reference? `worse` counts the discordant
/// pairs that went the bad way (for refusals of harmful prompts: refused → complied), `better` the reverse.
/// p = P(X ≥ worse) for X ~ Binomial(worse + better, 1/2). A gate asks only whether quantization lost
/// refusals; testing both directions would halve its power for no question anyone asked. With no
/// discordant pairs, or none the bad way, p = 1.
inline double mcnemar_one_sided_p(std::size_t worse, std::size_t better) {
    const std::size_t n = worse + better;
    if (n == 0 || worse == 0) return 1.0;
    // P(X ≥ worse) = P(X ≤ better) by symmetry. The tail helper wants k ≤ n/2: take the small tail
    // directly, and the large one as 1 minus the small tail on the other side.
    if (better <= worse) return std::min(1.0, detail::binomial_half_lower_tail(n, better).cumulative);
    return std::clamp(1.0 - detail::binomial_half_lower_tail(n, worse - 1).cumulative, 0.0, 1.0);
}

/// Holm's step-down adjustment of m p-values (Holm 1979): sorted ascending, the i-th smallest (from 1)
/// becomes max over j ≤ i of min(1, (m − j + 1)·p_(j)). Rejecting where the adjusted value is ≤ α keeps the
/// family-wise error rate at α under any dependence between the tests, and rejects everything Bonferroni
/// (m·p) rejects, often more. The result is in the input's order; ties keep their input order.
inline std::vector<double> holm_adjusted(std::span<const double> p) {
    const std::size_t m = p.size();
    std::vector<std::size_t> order(m);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return p[a] < p[b]; });
    std::vector<double> adjusted(m);
    double running = 0.0;
    for (std::size_t rank = 0; rank < m; ++rank) {
        running = std::max(running, std::min(1.0, static_cast<double>(m - rank) * p[order[rank]]));
        adjusted[order[rank]] = running;
    }
    return adjusted;
}

}  // namespace qsafe::eval
