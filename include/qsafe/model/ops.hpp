#pragma once
// The element-wise and per-row operations of a Llama block, in fp32 with plain loops the compiler
// vectorizes: RMSNorm, rotary position embedding (GGUF's adjacent-pair convention), SwiGLU, softmax.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

namespace qsafe::ops {

/// out = x / sqrt(mean(x^2) + eps) * weight (the sum is accumulated in double, as ggml does).
inline void rms_norm(std::span<const float> x, std::span<const float> weight, float eps, std::span<float> out) noexcept {
    double sum = 0.0;
    for (float v : x) sum += static_cast<double>(v) * v;
    const float scale = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(x.size()) + eps));
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * weight[i];
}

/// Inverse frequencies of the rotated pairs: theta^(-2i / rope_dim), divided by optional per-pair factors.
inline std::vector<double> rope_inverse_frequencies(std::size_t rope_dim, float theta, std::span<const float> factors) {
    std::vector<double> inv(rope_dim / 2);
    for (std::size_t i = 0; i < inv.size(); ++i) {
        inv[i] = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(rope_dim));
        if (!factors.empty()) inv[i] /= static_cast<double>(factors[i]);
    }
    return inv;
}

/// Rotates the adjacent pairs (x[2i], x[2i+1]) of the first rope_dim entries of each head by pos * inv[i].
inline void rope(float* x, std::size_t n_heads, std::size_t head_dim, std::size_t pos, std::span<const double> inv) noexcept {
    for (std::size_t i = 0; i < inv.size(); ++i) {
        const double angle = static_cast<double>(pos) * inv[i];
        const auto c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
        for (std::size_t h = 0; h < n_heads; ++h) {
            float* p = x + h * head_dim + 2 * i;
            const float a = p[0], b = p[1];
            p[0] = a * c - b * s;
            p[1] = a * s + b * c;
        }
    }
}

/// gate <- silu(gate) * up
inline void swiglu(std::span<float> gate, std::span<const float> up) noexcept {
    for (std::size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

/// In-place softmax.
inline void softmax(std::span<float> x) noexcept {
    const float m = *std::max_element(x.begin(), x.end());
    double sum = 0.0;
    for (float& v : x) {
        v = std::exp(v - m);
        sum += v;
    }
    const auto inv = static_cast<float>(1.0 / sum);
    for (float& v : x) v *= inv;
}

/// log-softmax of logits into out; returns log-sum-exp of the logits.
inline double log_softmax(std::span<const float> logits, std::span<float> out) noexcept {
    const float m = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (float v : logits) sum += std::exp(static_cast<double>(v - m));
    const double lse = static_cast<double>(m) + std::log(sum);
    for (std::size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<float>(static_cast<double>(logits[i]) - lse);
    return lse;
}

}  // namespace qsafe::ops
