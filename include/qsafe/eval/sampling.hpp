#pragma once
// Choosing a subset of a dataset for quick runs (`--limit N --seed S`). The choice depends only on the
// rows, N and S: the random numbers come from std::mt19937_64 (fully specified by the standard) and are
// turned into indices by hand, because std::shuffle and the std distributions differ between standard
// libraries. Stratified sampling gives each category a share of N proportional to its size (largest
// remainder method), so a small run still covers every large category; chosen rows keep their file order.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "qsafe/eval/dataset.hpp"

namespace qsafe::eval {

struct SampleOptions {
    std::size_t limit = 0;  // 0 = keep every row
    std::uint64_t seed = 0;
    bool stratify_by_category = true;
};

namespace detail {

/// Uniform integer in [0, bound) without modulo bias (rejection of the top partial range).
inline std::size_t uniform_below(std::mt19937_64& rng, std::size_t bound) {
    const std::uint64_t n = bound;
    constexpr std::uint64_t top = std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t limit = top - (top % n + 1) % n;  // accept [0, k*n) for the largest k*n <= 2^64
    std::uint64_t x = rng();
    while (x > limit) x = rng();
    return static_cast<std::size_t>(x % n);
}

/// `count` distinct elements of `pool`, chosen uniformly (partial Fisher-Yates).
inline std::vector<std::size_t> choose(std::vector<std::size_t> pool, std::size_t count, std::mt19937_64& rng) {
    count = std::min(count, pool.size());
    for (std::size_t i = 0; i < count; ++i) std::swap(pool[i], pool[i + uniform_below(rng, pool.size() - i)]);
    pool.resize(count);
    return pool;
}

}  // namespace detail

/// How many of each group's rows a stratified sample of `limit` takes: floor of the proportional share,
/// then the leftover rows go to the largest fractional parts (ties: the larger group, then the earlier).
inline std::vector<std::size_t> proportional_allocation(const std::vector<std::size_t>& group_sizes, std::size_t limit) {
    std::size_t total = 0;
    for (auto s : group_sizes) total += s;
    std::vector<std::size_t> quota(group_sizes.size(), 0);
    if (total == 0) return quota;
    limit = std::min(limit, total);
    std::vector<std::size_t> remainder(group_sizes.size());  // share numerator modulo total: exact integers
    std::size_t given = 0;
    for (std::size_t g = 0; g < group_sizes.size(); ++g) {
        const std::uint64_t share = static_cast<std::uint64_t>(limit) * group_sizes[g];
        quota[g] = static_cast<std::size_t>(share / total);
        remainder[g] = static_cast<std::size_t>(share % total);
        given += quota[g];
    }
    std::vector<std::size_t> order(group_sizes.size());
    for (std::size_t g = 0; g < order.size(); ++g) order[g] = g;
    std::ranges::stable_sort(order, [&](std::size_t a, std::size_t b) {
        if (remainder[a] != remainder[b]) return remainder[a] > remainder[b];
        return group_sizes[a] > group_sizes[b];
    });
    for (std::size_t k = 0; given < limit && k < order.size(); ++k) {
        if (quota[order[k]] < group_sizes[order[k]]) {
            ++quota[order[k]];
            ++given;
        }
    }
    return quota;
}

/// Indices (ascending) of the rows a sample keeps.
inline std::vector<std::size_t> sample_indices(const std::vector<PromptRow>& rows, const SampleOptions& options) {
    std::vector<std::size_t> chosen;
    if (options.limit == 0 || options.limit >= rows.size()) {
        chosen.resize(rows.size());
        for (std::size_t i = 0; i < rows.size(); ++i) chosen[i] = i;
        return chosen;
    }
    std::mt19937_64 rng(options.seed);
    if (!options.stratify_by_category) {
        std::vector<std::size_t> all(rows.size());
        for (std::size_t i = 0; i < rows.size(); ++i) all[i] = i;
        chosen = detail::choose(std::move(all), options.limit, rng);
    } else {
        // Groups in order of first appearance, so the result does not depend on how categories sort.
        std::map<std::string, std::size_t> group_of;
        std::vector<std::vector<std::size_t>> groups;
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const auto [it, inserted] = group_of.try_emplace(rows[i].category, groups.size());
            if (inserted) groups.emplace_back();
            groups[it->second].push_back(i);
        }
        std::vector<std::size_t> sizes;
        for (const auto& g : groups) sizes.push_back(g.size());
        const auto quota = proportional_allocation(sizes, options.limit);
        for (std::size_t g = 0; g < groups.size(); ++g) {
            const auto part = detail::choose(groups[g], quota[g], rng);
            chosen.insert(chosen.end(), part.begin(), part.end());
        }
    }
    std::ranges::sort(chosen);
    return chosen;
}

inline PromptDataset sample(const PromptDataset& dataset, const SampleOptions& options) {
    std::vector<PromptRow> rows;
    for (const std::size_t i : sample_indices(dataset.rows(), options)) rows.push_back(dataset[i]);
    return PromptDataset(dataset.name(), std::move(rows));
}

}  // namespace qsafe::eval
