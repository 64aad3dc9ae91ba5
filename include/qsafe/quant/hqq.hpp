#pragma once
// HQQ, half-quadratic quantization (Badri & Shaji, 2023): calibration-free. Each group starts from the
// min-max (round-to-nearest) fit; its parameters are then refined to minimise an l_p error (p < 1), which
// cares little about a few large errors and a lot about the many small ones:
//     min over params  sum_i |w_i - dq(q(w_i))|^p.
// Half-quadratic splitting adds an auxiliary error e ~ w - dq(q(w)) and alternates two easy problems:
//   1. e = shrink_p(w - dq(q(w)), beta): the proximal step of |.|^p, a generalised soft threshold
//      sign(x) * max(|x| - |x|^(p-1) / beta, 0), which keeps only the errors too large to fix;
//   2. the quadratic problem  min || (w - e) - dq(q(w)) ||^2  for the group's parameters, in closed form;
// with beta growing by kappa every iteration, stopping when the l_p error stops falling. Defaults are the
// reference implementation's (p = 0.7, beta = 10, kappa = 1.01, 20 iterations).
//
// Step 2 depends on what the scheme can store. HQQ's reference updates a real-valued zero point with the
// scale fixed; qsafe's asymmetric grids store integer zero points (the kernels subtract them in integers),
// so a real zero would be rounded back to where it started. Here step 2 solves the affine least-squares
// problem for scale and offset together, rounds the zero point and refits the scale for it (asymmetric
// grids); symmetric grids and tables (NF4, FP4, learned) refit the scale alone. The scale is rounded to its
// storage format, so the error is measured on exactly what the kernels reconstruct.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/quant/group_codec.hpp"
#include "qsafe/quant/quantize_options.hpp"
#include "qsafe/quant/rtn.hpp"

namespace qsafe {

struct HqqOptions {
    double lp_norm = 0.7;  // p of the l_p error, in (0, 1]
    double beta = 10.0;    // initial weight of the quadratic coupling (in the weights' own units)
    double kappa = 1.01;   // beta grows by this factor per iteration
    int iterations = 20;
};

namespace detail {

struct HqqErrors {
    double lp = 0.0;   // sum |w_i - dq(q(w_i))|^p
    double max = 0.0;  // max |w_i - dq(q(w_i))|
};

/// The l_p and the largest reconstruction error over the group's included values, in one pass.
template <QuantScheme S>
HqqErrors hqq_errors(const GroupCodec<S>& codec, const float* w, const std::uint8_t* excluded, std::size_t n,
                     const GroupParams<S>& p, double lp_norm) noexcept {
    HqqErrors e;
    for (std::size_t i = 0; i < n; ++i) {
        if (excluded && excluded[i]) continue;
        const double d = std::abs(static_cast<double>(w[i]) - codec.decode(codec.encode(w[i], p), p));
        e.lp += std::pow(d, lp_norm);
        e.max = std::max(e.max, d);
    }
    return e;
}

/// The proximal operator of |x|^p with coupling beta: sign(x) max(|x| - |x|^(p-1) / beta, 0).
inline double hqq_shrink(double x, double beta, double lp_norm) noexcept {
    const double a = std::abs(x);
    if (a == 0.0) return 0.0;
    return std::copysign(std::max(a - std::pow(a, lp_norm - 1.0) / beta, 0.0), x);
}

/// The largest distance between adjacent levels of the codec's grid, in units of the scale (1 for
/// uniform grids; e.g. 0.277 for NF4, between 0.72 and 1).
template <QuantScheme S>
double codec_max_gap(const GroupCodec<S>& codec, const GroupParams<S>& p) {
    if constexpr (S::uniform) {
        return 1.0;
    } else {
        std::vector<double> levels(static_cast<std::size_t>(S::levels));
        for (int c = 0; c < S::levels; ++c) levels[static_cast<std::size_t>(c)] = codec.level(static_cast<unsigned>(c), p);
        std::sort(levels.begin(), levels.end());
        double gap = 0.0;
        for (std::size_t i = 1; i < levels.size(); ++i) gap = std::max(gap, levels[i] - levels[i - 1]);
        return gap;
    }
}

/// The half-quadratic refinement of one group's parameters (see the header comment).
template <QuantScheme S>
GroupParams<S> hqq_refine(const GroupCodec<S>& codec, const float* w, const std::uint8_t* excluded, std::size_t n,
                          GroupParams<S> start, const HqqOptions& o) {
    // The range of the group. The l_p error cares little about a few large errors, so left alone the
    // solver shrinks the scale and clips the group's extreme weights, which a model feels (its largest
    // weights matter most). HQQ's reference never clips: its scale stays the min-max one. Here the scale
    // may move, so candidates that push a value more than half a level gap outside the grid are refused.
    double lo = 0.0, hi = 0.0;
    for (std::size_t i = 0; i < n; ++i)
        if (!excluded || !excluded[i]) {
            lo = std::min(lo, static_cast<double>(w[i]));
            hi = std::max(hi, static_cast<double>(w[i]));
        }
    const double half_gap = 0.5 * codec_max_gap(codec, start);
    // (A symmetric grid's min-max fit already leaves one side a full step short: that much stays allowed.)
    const HqqErrors start_errors = hqq_errors(codec, w, excluded, n, start, o.lp_norm);
    auto keeps_range = [&](const GroupParams<S>& p, const HqqErrors& e) {
        return e.max <= std::max(start_errors.max, std::abs(static_cast<double>(p.scale)) * half_gap) * (1.0 + 1e-6);
    };
    GroupParams<S> best = start, p = start;
    double best_error = start_errors.lp;
    double beta = o.beta;
    std::vector<unsigned> codes(n);
    std::vector<double> target(n);
    for (int it = 0; it < o.iterations && p.scale != 0.0f; ++it, beta *= o.kappa) {
        // Step 1: codes at the current parameters, and the target the grid should represent, w - e.
        double sum_t = 0.0, sum_q = 0.0, sum_qq = 0.0, sum_tq = 0.0, count = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            if (excluded && excluded[i]) continue;
            codes[i] = codec.encode(w[i], p);
            const double residual = static_cast<double>(w[i]) - codec.decode(codes[i], p);
            target[i] = static_cast<double>(w[i]) - hqq_shrink(residual, beta, o.lp_norm);
            // Unit-scale levels for the scale fit; uniform grids use the raw code (offset fitted below).
            const double q = S::uniform && S::asymmetric ? static_cast<double>(codes[i]) : codec.level(codes[i], p);
            sum_t += target[i];
            sum_q += q;
            sum_qq += q * q;
            sum_tq += target[i] * q;
            count += 1.0;
        }
        if (count == 0.0) break;
        // Step 2: least-squares parameters for the target with the codes fixed.
        GroupParams<S> next;
        if constexpr (S::uniform && S::asymmetric) {
            // target ~ s q + b  ->  s, then z = round(-b / s), then s refitted for the integer z.
            const double det = count * sum_qq - sum_q * sum_q;
            if (det <= 0.0) break;
            const double s = (count * sum_tq - sum_q * sum_t) / det;
            if (!(s > 0.0)) break;
            const double b = (sum_t - s * sum_q) / count;
            const int z = std::clamp(static_cast<int>(std::nearbyint(-b / s)), 0, S::levels - 1);
            double num = 0.0, den = 0.0;
            for (std::size_t i = 0; i < n; ++i) {
                if (excluded && excluded[i]) continue;
                const double l = static_cast<double>(codes[i]) - z;
                num += target[i] * l;
                den += l * l;
            }
            if (den <= 0.0 || !(num / den > 0.0)) break;
            // Keep the group's range: no value may fall more than half a step outside the grid.
            const double cover = std::max(hi / (S::levels - 1 - z + 0.5), -lo / (z + 0.5));
            next = stored_group_params<S>(static_cast<float>(std::max(num / den, cover)), z);
        } else {
            // target ~ s * level(q): the scale alone (its sign follows the fit, as symmetric grids allow).
            if (sum_qq <= 0.0) break;
            const double s = sum_tq / sum_qq;  // level() is the unit-scale level: decode = scale * level
            if (s == 0.0 || !std::isfinite(s)) break;
            next = stored_group_params<S>(static_cast<float>(s));
        }
        const HqqErrors errors = hqq_errors(codec, w, excluded, n, next, o.lp_norm);
        if (!keeps_range(next, errors) || !(errors.lp < best_error)) break;
        best_error = errors.lp;
        best = p = next;
    }
    return best;
}

}  // namespace detail

/// Quantizes w under scheme S with HQQ: round-to-nearest whose group parameters are refined by the
/// half-quadratic solver. Same storage as RTN, so every kernel runs the result unchanged.
template <QuantScheme S>
QuantizedMatrix<S> quantize_hqq(ConstMatrixView w, const HqqOptions& hqq, const QuantizeOptions& opt = {}) {
    if (!(hqq.lp_norm > 0.0 && hqq.lp_norm <= 1.0) || !(hqq.beta > 0.0) || !(hqq.kappa >= 1.0) || hqq.iterations < 0)
        throw config_error(detail::tensor_label(opt) + ": HQQ needs 0 < p <= 1, beta > 0, kappa >= 1 and iterations >= 0");
    return detail::quantize_groupwise<S>(
        w, opt, [&](const GroupCodec<S>& codec, const float* values, const std::uint8_t* excluded, std::size_t n, GroupParams<S> start) {
            return detail::hqq_refine<S>(codec, values, excluded, n, start, hqq);
        });
}

}  // namespace qsafe
