#pragma once
// AdamW (Loshchilov & Hutter: decoupled weight decay) with PyTorch's exact update order, global-norm
// gradient clipping as torch.nn.utils.clip_grad_norm_, and a linear warm-up + cosine learning-rate
// schedule as transformers' get_cosine_schedule_with_warmup. Parameters are flat float arrays named for
// checkpoints (train/parameters.hpp); moments are kept in float like PyTorch's, so a step here and a
// step there differ only by rounding.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/train/parameters.hpp"

namespace qsafe::train {

struct AdamWConfig {
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.01;

    void validate() const {
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
            throw config_error("AdamW: betas must lie in [0, 1), got " + std::to_string(beta1) + ", " + std::to_string(beta2));
        if (!(eps > 0)) throw config_error("AdamW: eps must be positive");
        if (!(weight_decay >= 0)) throw config_error("AdamW: weight decay must be non-negative");
    }
};

/// Learning rate at an optimizer step (0-based): linear warm-up from 0 over `warmup_steps`, then a half
/// cosine from `peak` down to `peak · min_ratio` at `total_steps`. As transformers' scheduler, step 0 of a
/// warm-up runs at lr 0 (min_ratio 0 gives its schedule exactly).
struct CosineSchedule {
    double peak = 1e-4;
    std::size_t warmup_steps = 0;
    std::size_t total_steps = 1;
    double min_ratio = 0.0;

    double at(std::size_t step) const noexcept {
        if (step < warmup_steps) return peak * static_cast<double>(step) / static_cast<double>(warmup_steps);
        const double span = static_cast<double>(total_steps > warmup_steps ? total_steps - warmup_steps : 1);
        const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
        const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
        return peak * (min_ratio + (1.0 - min_ratio) * cosine);
    }
};

/// √(Σ g²) over every parameter's gradient, summed in double.
inline double global_grad_norm(std::span<const ParameterRef> params) {
    double sum = 0.0;
    for (const ParameterRef& p : params)
        for (std::size_t i = 0; i < p.size; ++i) sum += static_cast<double>(p.grad[i]) * p.grad[i];
    return std::sqrt(sum);
}

/// Scales all gradients so their global norm is at most max_norm (torch's clip_grad_norm_: coefficient
/// max_norm / (norm + 1e-6), capped at 1). Returns the norm before clipping. A non-finite norm is returned
/// untouched: the caller decides (the trainer stops and names the step).
inline double clip_grad_norm(std::span<const ParameterRef> params, double max_norm) {
    const double norm = global_grad_norm(params);
    if (!std::isfinite(norm) || max_norm <= 0) return norm;
    const double coefficient = max_norm / (norm + 1e-6);
    if (coefficient < 1.0) {
        const auto c = static_cast<float>(coefficient);
        for (const ParameterRef& p : params)
            for (std::size_t i = 0; i < p.size; ++i) p.grad[i] *= c;
    }
    return norm;
}

class AdamW {
  public:
    AdamW(std::vector<ParameterRef> params, AdamWConfig config) : params_(std::move(params)), config_(config) {
        config_.validate();
        m_.resize(params_.size());
        v_.resize(params_.size());
        for (std::size_t i = 0; i < params_.size(); ++i) {
            m_[i].assign(params_[i].size, 0.0f);
            v_[i].assign(params_[i].size, 0.0f);
        }
    }

    /// One update with learning rate `lr` from the gradients as they stand (clip them first).
    void step(double lr) {
        ++steps_;
        const double bias1 = 1.0 - std::pow(config_.beta1, static_cast<double>(steps_));
        const double bias2_sqrt = std::sqrt(1.0 - std::pow(config_.beta2, static_cast<double>(steps_)));
        const auto decay = static_cast<float>(1.0 - lr * config_.weight_decay);
        const auto one_minus_b1 = static_cast<float>(1.0 - config_.beta1);
        const auto b2 = static_cast<float>(config_.beta2), one_minus_b2 = static_cast<float>(1.0 - config_.beta2);
        const auto step_size = static_cast<float>(lr / bias1);
        const auto inv_bias2_sqrt = static_cast<float>(bias2_sqrt), eps = static_cast<float>(config_.eps);
        for (std::size_t k = 0; k < params_.size(); ++k) {
            float* p = params_[k].value;
            const float* g = params_[k].grad;
            float* m = m_[k].data();
            float* v = v_[k].data();
            for (std::size_t i = 0; i < params_[k].size; ++i) {
                p[i] *= decay;
                m[i] += (g[i] - m[i]) * one_minus_b1;  // torch: exp_avg.lerp_(grad, 1 - beta1)
                v[i] = v[i] * b2 + one_minus_b2 * g[i] * g[i];
                const float denom = std::sqrt(v[i]) / inv_bias2_sqrt + eps;
                p[i] -= step_size * (m[i] / denom);
            }
        }
    }

    std::size_t steps() const noexcept { return steps_; }
    const std::vector<ParameterRef>& parameters() const noexcept { return params_; }
    const AdamWConfig& config() const noexcept { return config_; }

    // Optimizer state for checkpoints: the step count and both moments of every parameter.
    std::vector<float>& first_moment(std::size_t k) { return m_.at(k); }
    std::vector<float>& second_moment(std::size_t k) { return v_.at(k); }
    void set_steps(std::size_t steps) noexcept { steps_ = steps; }

  private:
    std::vector<ParameterRef> params_;
    AdamWConfig config_;
    std::vector<std::vector<float>> m_, v_;
    std::size_t steps_ = 0;
};

}  // namespace qsafe::train
