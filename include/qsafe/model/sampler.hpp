#pragma once
// Next-token choice: greedy (temperature 0), or temperature / top-k / top-p sampling from a seeded
// generator. The random numbers come from std::mt19937_64 turned into doubles by hand, so a seed gives the
// same tokens with every standard library and thread count.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "qsafe/core/error.hpp"

namespace qsafe {

struct SamplingOptions {
    float temperature = 0.0f;  // 0 = greedy
    std::size_t top_k = 0;     // 0 = no limit
    float top_p = 1.0f;        // nucleus mass
    std::uint64_t seed = 0;
};

class Sampler {
  public:
    /// `stream` separates the random sequences of the sequences in one batch.
    explicit Sampler(SamplingOptions options, std::uint64_t stream = 0)
        : opt_(options), rng_(options.seed * 0x9E3779B97F4A7C15ULL + stream) {
        if (!(opt_.temperature >= 0.0f)) throw config_error("temperature must be >= 0");
        if (!(opt_.top_p > 0.0f && opt_.top_p <= 1.0f)) throw config_error("top-p must be in (0, 1]");
    }

    std::int32_t sample(std::span<const float> logits) {
        if (opt_.temperature == 0.0f) return argmax(logits);
        std::vector<std::int32_t> ids(logits.size());
        std::iota(ids.begin(), ids.end(), 0);
        const auto better = [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
        std::size_t keep = logits.size();
        if (opt_.top_k > 0 && opt_.top_k < keep) keep = opt_.top_k;
        std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep), ids.end(), better);
        ids.resize(keep);
        std::vector<double> p(keep);
        const double m = logits[ids[0]];
        double sum = 0.0;
        for (std::size_t i = 0; i < keep; ++i) sum += p[i] = std::exp((logits[ids[i]] - m) / opt_.temperature);
        if (opt_.top_p < 1.0f) {
            double acc = 0.0;
            std::size_t n = 0;
            while (n < keep && acc < opt_.top_p * sum) acc += p[n++];
            keep = std::max<std::size_t>(n, 1);
            sum = std::accumulate(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
        }
        const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * sum;
        double acc = 0.0;
        for (std::size_t i = 0; i < keep; ++i) {
            acc += p[i];
            if (u < acc) return ids[i];
        }
        return ids[keep - 1];
    }

    static std::int32_t argmax(std::span<const float> logits) {
        return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }

  private:
    SamplingOptions opt_;
    std::mt19937_64 rng_;
};

}  // namespace qsafe
