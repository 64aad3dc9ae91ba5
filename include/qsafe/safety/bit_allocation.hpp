#pragma once
// Bit allocation: one scheme per layer so that the average bits per weight (every stored byte counted, over
// the layers of a sensitivity table) meets a target and the summed sensitivity is smallest — a
// multiple-choice knapsack, solved as such problems usually are for quantization (HAWQ-V3 uses an ILP, many
// mixed-precision papers a Lagrangian): for a price λ per bit every layer independently picks the scheme
// minimising sensitivity + λ · bits; λ is bisected to the cheapest price that fits the budget, then the
// remaining budget is spent greedily on the upgrades with the best sensitivity reduction per byte.
// Summing per-layer KL assumes the layers' errors add up, which holds to first order for small errors.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/safety/sensitivity.hpp"

namespace qsafe {

struct BitAllocation {
    std::map<std::string, std::string> scheme;  // tensor -> scheme
    double bits_per_weight = 0.0;               // over the table's layers
    double predicted_kl = 0.0;                  // sum of the chosen layers' sensitivities

    /// Scheme rules for quantize_model, e.g. "blk.0.attn_q=int4-g128-asym,...".
    std::string rules() const {
        std::string r;
        for (const auto& [tensor, s] : scheme) {
            std::string name = tensor;
            if (name.ends_with(".weight")) name.resize(name.size() - 7);
            r += (r.empty() ? "" : ",") + name + "=" + s;
        }
        return r;
    }
};

inline BitAllocation allocate_bits(const SensitivityTable& table, double target_bits_per_weight) {
    if (table.layers.empty()) throw config_error("bit allocation: the sensitivity table is empty");
    const std::size_t n = table.layers.size(), k = table.candidates.size();
    double params = 0.0;
    std::vector<std::vector<double>> cost(n, std::vector<double>(k)), bits(n, std::vector<double>(k));
    for (std::size_t i = 0; i < n; ++i) {
        const auto& l = table.layers[i];
        params += static_cast<double>(l.params());
        for (std::size_t j = 0; j < k; ++j) {
            const auto& s = table.candidates[j];
            if (!l.kl.contains(s) || !l.bytes.contains(s))
                throw config_error("bit allocation: layer '" + l.tensor + "' has no measurement for scheme '" + s + "'");
            cost[i][j] = l.kl.at(s);
            bits[i][j] = 8.0 * static_cast<double>(l.bytes.at(s));
        }
    }
    const double budget = target_bits_per_weight * params;
    double min_bits = 0.0;
    for (std::size_t i = 0; i < n; ++i) min_bits += *std::min_element(bits[i].begin(), bits[i].end());
    if (min_bits > budget * (1.0 + 1e-12))
        throw config_error("bit allocation: the target of " + std::to_string(target_bits_per_weight) +
                           " bits per weight is below the smallest candidate mix (" + std::to_string(min_bits / params) + ")");

    auto pick = [&](double lambda, std::vector<std::size_t>& choice) {
        double used = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            std::size_t best = 0;
            for (std::size_t j = 1; j < k; ++j) {
                const double a = cost[i][j] + lambda * bits[i][j], b = cost[i][best] + lambda * bits[i][best];
                if (a < b || (a == b && bits[i][j] < bits[i][best])) best = j;
            }
            choice[i] = best;
            used += bits[i][best];
        }
        return used;
    };
    std::vector<std::size_t> choice(n), trial(n);
    // Bracket λ: large enough that the cheapest schemes win everywhere.
    double lo = 0.0, hi = 1e-9;
    while (pick(hi, trial) > budget && hi < 1e12) hi *= 4.0;
    if (pick(lo, choice) > budget) {
        for (int it = 0; it < 100; ++it) {
            const double mid = 0.5 * (lo + hi);
            if (pick(mid, trial) > budget) lo = mid;
            else hi = mid;
        }
        pick(hi, choice);
    }
    double used = 0.0;
    for (std::size_t i = 0; i < n; ++i) used += bits[i][choice[i]];
    // Spend what is left: repeatedly the upgrade with the largest cost reduction per extra bit that fits
    // (upgrades that measure no better are taken last, so the budget is met rather than left unused).
    for (;;) {
        double best_ratio = -1.0;
        std::size_t bi = n, bj = k;
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < k; ++j) {
                const double extra = bits[i][j] - bits[i][choice[i]], gain = cost[i][choice[i]] - cost[i][j];
                if (extra <= 0.0 || gain < 0.0 || used + extra > budget) continue;
                if (gain / extra > best_ratio) {
                    best_ratio = gain / extra;
                    bi = i;
                    bj = j;
                }
            }
        if (bi == n) break;
        used += bits[bi][bj] - bits[bi][choice[bi]];
        choice[bi] = bj;
    }
    BitAllocation a;
    for (std::size_t i = 0; i < n; ++i) {
        a.scheme[table.layers[i].tensor] = table.candidates[choice[i]];
        a.predicted_kl += cost[i][choice[i]];
    }
    a.bits_per_weight = used / params;
    return a;
}

}  // namespace qsafe
