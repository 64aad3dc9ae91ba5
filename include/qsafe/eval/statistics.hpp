#pragma once
// The two statistics the safety report rests on: a Wilson score interval for a rate (refusal rate, ASR,
// over-refusal) and McNemar's exact test for paired verdicts (the same prompts answered by the reference
// and by a quantized variant). Both must behave at the edges that small evaluation sets hit all the time:
// 0 of n, n of n, n = 0, no discordant pairs.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>

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

}  // namespace qsafe::eval
