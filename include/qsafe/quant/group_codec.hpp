#pragma once
// Fitting one group's scale (and zero point) and coding its values under a scheme. Shared by RTN and the
// calibrated methods (GPTQ quantizes column by column with parameters fitted here).
//
// Grids, for L = 2^bits levels:
//   asymmetric uniform: range [min(w,0), max(w,0)] -> s = (hi - lo) / (L - 1), integer z = round(-lo / s),
//                       q = clamp(round(w / s) + z), w' = s (q - z)
//   symmetric uniform:  m = the value of largest magnitude, s = m / -(L/2), q = clamp(round(w / s) + L/2),
//                       w' = s (q - L/2); the extreme value lands on the extra negative level (as ggml's Q4_0)
//   table / learned:    s = absmax / max|table|, q = nearest table entry to w / s, w' = s table[q]
// The scale is rounded to its storage format before the codes are chosen, so w' is exactly what a kernel
// reconstructs. Clip search tries s computed from ratio * range for ratio in [clip_min_ratio, 1].
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "qsafe/policy/scheme.hpp"
#include "qsafe/quant/quantize_options.hpp"

namespace qsafe {

template <QuantScheme S>
struct GroupParams {
    typename S::scale_format::storage_type stored_scale{};
    float scale = 0.0f;  // == scale_format::load(stored_scale)
    int zero = 0;        // asymmetric grids only
};

/// Parameters with scale s rounded to the scheme's storage format (an fp16 overflow becomes the largest
/// finite fp16 of the same sign) and the given zero point (asymmetric grids), clamped to the codes.
template <QuantScheme S>
GroupParams<S> stored_group_params(float s, int zero = 0) noexcept {
    using F = typename S::scale_format;
    GroupParams<S> p;
    p.stored_scale = F::store(s);
    p.scale = F::load(p.stored_scale);
    if (!std::isfinite(p.scale)) {
        p.stored_scale = F::store(std::copysign(65504.0f, s));
        p.scale = F::load(p.stored_scale);
    }
    p.zero = std::clamp(zero, 0, S::levels - 1);
    return p;
}

template <QuantScheme S>
class GroupCodec {
  public:
    static constexpr int levels = S::levels;

    /// `table` is the codebook for table and learned schemes (levels entries); unused for uniform grids.
    explicit GroupCodec(std::span<const float> table = {}) {
        if constexpr (S::table) {
            table_.assign(S::codebook::values.begin(), S::codebook::values.end());
        } else if constexpr (S::learned) {
            table_.assign(table.begin(), table.end());
        }
        if constexpr (!S::uniform) {
            order_.resize(table_.size());
            std::iota(order_.begin(), order_.end(), 0u);
            std::stable_sort(order_.begin(), order_.end(), [&](unsigned a, unsigned b) { return table_[a] < table_[b]; });
            // Fixed tables map the group's absmax onto their largest entry; learned tables are fitted to
            // w / absmax, so their scale is the absmax itself.
            table_abs_max_ = 0.0f;
            for (float v : table_) table_abs_max_ = std::max(table_abs_max_, std::abs(v));
            if constexpr (S::learned) table_abs_max_ = 1.0f;
            zero_code_ = 0;
            for (unsigned i = 0; i < table_.size(); ++i)
                if (table_[i] == 0.0f) {
                    zero_code_ = i;
                    break;
                }
        }
    }

    float level(unsigned code, const GroupParams<S>& p) const noexcept {
        if constexpr (S::uniform) {
            if constexpr (S::asymmetric) return static_cast<float>(static_cast<int>(code) - p.zero);
            else return static_cast<float>(static_cast<int>(code) - levels / 2);
        } else {
            return table_[code];
        }
    }
    float decode(unsigned code, const GroupParams<S>& p) const noexcept { return p.scale * level(code, p); }

    unsigned zero_code(const GroupParams<S>& p) const noexcept {
        if constexpr (S::uniform) return S::asymmetric ? static_cast<unsigned>(p.zero) : static_cast<unsigned>(levels / 2);
        else return zero_code_;
    }

    unsigned encode(float w, const GroupParams<S>& p) const noexcept {
        if (p.scale == 0.0f) return zero_code(p);
        if constexpr (S::uniform) {
            const int offset = S::asymmetric ? p.zero : levels / 2;
            const float q = std::nearbyint(w / p.scale) + static_cast<float>(offset);
            return static_cast<unsigned>(std::clamp(q, 0.0f, static_cast<float>(levels - 1)));
        } else {
            const float x = w / p.scale;
            // Binary search in the sorted table, then pick the nearer neighbour.
            std::size_t lo = 0, hi = order_.size();
            while (hi - lo > 1) {
                const std::size_t mid = (lo + hi) / 2;
                if (table_[order_[mid]] <= x) lo = mid;
                else hi = mid;
            }
            if (lo + 1 < order_.size() && std::abs(table_[order_[lo + 1]] - x) < std::abs(table_[order_[lo]] - x))
                ++lo;
            return order_[lo];
        }
    }

    /// Fits the group's parameters to n values. `importance` (per value, may be null) weights the squared
    /// error; `excluded` (per value, may be null) marks values that are stored elsewhere (outliers).
    GroupParams<S> fit(const float* w, const float* importance, const std::uint8_t* excluded, std::size_t n,
                       const QuantizeOptions& opt) const {
        float lo = 0.0f, hi = 0.0f, extreme = 0.0f;
        for (std::size_t i = 0; i < n; ++i) {
            if (excluded && excluded[i]) continue;
            lo = std::min(lo, w[i]);
            hi = std::max(hi, w[i]);
            if (std::abs(w[i]) > std::abs(extreme)) extreme = w[i];
        }
        const int steps = opt.clip_search ? std::max(opt.clip_steps, 1) : 1;
        GroupParams<S> best = params_for(lo, hi, extreme, 1.0f);
        if (steps == 1) return best;
        double best_err = error(w, importance, excluded, n, best);
        for (int s = 1; s < steps; ++s) {
            const float ratio = 1.0f - (1.0f - opt.clip_min_ratio) * static_cast<float>(s) / static_cast<float>(steps - 1);
            const GroupParams<S> cand = params_for(lo, hi, extreme, ratio);
            const double err = error(w, importance, excluded, n, cand);
            if (err < best_err) {
                best_err = err;
                best = cand;
            }
        }
        return best;
    }

    /// Sum of importance-weighted squared reconstruction errors of the included values.
    double error(const float* w, const float* importance, const std::uint8_t* excluded, std::size_t n,
                 const GroupParams<S>& p) const noexcept {
        double e = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            if (excluded && excluded[i]) continue;
            const double d = static_cast<double>(w[i]) - decode(encode(w[i], p), p);
            e += (importance ? importance[i] : 1.0) * d * d;
        }
        return e;
    }

  private:
    GroupParams<S> params_for(float lo, float hi, float extreme, float ratio) const noexcept {
        GroupParams<S> p;
        float s = 0.0f;
        if constexpr (S::uniform && S::asymmetric) {
            lo *= ratio;
            hi *= ratio;
            s = (hi - lo) / static_cast<float>(levels - 1);
        } else if constexpr (S::uniform) {
            s = ratio * extreme / -static_cast<float>(levels / 2);
        } else {
            s = table_abs_max_ > 0.0f ? ratio * std::abs(extreme) / table_abs_max_ : 0.0f;
        }
        p = stored_group_params<S>(s);
        if constexpr (S::uniform && S::asymmetric) {
            if (p.scale != 0.0f) {
                const float z = std::nearbyint(-lo / p.scale);
                p.zero = static_cast<int>(std::clamp(z, 0.0f, static_cast<float>(levels - 1)));
            }
        }
        return p;
    }

    std::vector<float> table_;
    std::vector<unsigned> order_;
    float table_abs_max_ = 1.0f;
    unsigned zero_code_ = 0;
};

}  // namespace qsafe
