#pragma once
// Forward and backward of the per-row operations of a Llama block, templated on the scalar type: the
// training layer runs them in fp32 (the forward pass computes exactly what model/ops.hpp computes, in the
// same order, so a trained model's logits equal the decoder's), the tests run them in double against
// central finite differences. Backward functions take the forward inputs (not outputs) and the gradient of
// the output, and return or accumulate the gradient of each input.
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

namespace qsafe::train::ops {

/// Which entries of a head RoPE rotates together. GGUF files (and qsafe's decoder, whose loader permutes
/// Hugging Face q/k rows into this order) rotate adjacent pairs (x[2i], x[2i+1]); Hugging Face's
/// rotate_half ("NEOX" in llama.cpp) rotates x[i] with x[i + rope_dim/2].
enum class RopeLayout { adjacent_pairs, neox };

// ---- RMSNorm: y = x / sqrt(mean(x²) + eps) ⊙ w -------------------------------------------------------

/// The normalisation factor 1/sqrt(mean(x²) + eps), accumulated in double as the decoder does.
template <class T>
T rms_scale(std::span<const T> x, float eps) noexcept {
    double sum = 0.0;
    for (T v : x) sum += static_cast<double>(v) * static_cast<double>(v);
    return static_cast<T>(1.0 / std::sqrt(sum / static_cast<double>(x.size()) + eps));
}

template <class T>
void rms_norm(std::span<const T> x, std::span<const T> w, float eps, std::span<T> y) noexcept {
    const T s = rms_scale(x, eps);
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
}

/// dx = s·(dy⊙w) − s³/n · x · Σ dy⊙w⊙x (written to dx); dw += dy ⊙ x · s (when dw is not empty).
template <class T>
void rms_norm_backward(std::span<const T> x, std::span<const T> w, float eps, std::span<const T> dy, std::span<T> dx,
                       std::span<T> dw) noexcept {
    const T s = rms_scale(x, eps);
    double dot = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) dot += static_cast<double>(dy[i]) * static_cast<double>(w[i]) * static_cast<double>(x[i]);
    const T c = static_cast<T>(static_cast<double>(s) * s * s * dot / static_cast<double>(x.size()));
    for (std::size_t i = 0; i < x.size(); ++i) dx[i] = s * dy[i] * w[i] - c * x[i];
    if (!dw.empty())
        for (std::size_t i = 0; i < x.size(); ++i) dw[i] += dy[i] * x[i] * s;
}

// ---- RoPE ---------------------------------------------------------------------------------------------

/// Rotates the pairs of the first 2·inv.size() entries of each head by pos·inv[i] (sign = +1), or back
/// (sign = −1: the backward pass, since a rotation's transpose is its inverse). cos/sin are taken in
/// double and rounded to T, as the decoder does.
template <class T>
void rope(T* x, std::size_t n_heads, std::size_t head_dim, std::size_t pos, std::span<const double> inv, RopeLayout layout,
          int sign = 1) noexcept {
    const std::size_t half = inv.size();
    for (std::size_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(pos) * inv[i];
        const auto c = static_cast<T>(std::cos(angle)), s = static_cast<T>(sign * std::sin(angle));
        const std::size_t first = layout == RopeLayout::adjacent_pairs ? 2 * i : i;
        const std::size_t second = layout == RopeLayout::adjacent_pairs ? 2 * i + 1 : i + half;
        for (std::size_t h = 0; h < n_heads; ++h) {
            T* p = x + h * head_dim;
            const T a = p[first], b = p[second];
            p[first] = a * c - b * s;
            p[second] = a * s + b * c;
        }
    }
}

// ---- SwiGLU: out = silu(g) ⊙ u -------------------------------------------------------------------------

template <class T>
void swiglu(std::span<const T> g, std::span<const T> u, std::span<T> out) noexcept {
    for (std::size_t i = 0; i < g.size(); ++i) out[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
}

/// dg = dout ⊙ u ⊙ silu'(g), du = dout ⊙ silu(g), with silu'(g) = σ(g)(1 + g(1 − σ(g))).
template <class T>
void swiglu_backward(std::span<const T> g, std::span<const T> u, std::span<const T> dout, std::span<T> dg, std::span<T> du) noexcept {
    for (std::size_t i = 0; i < g.size(); ++i) {
        const T sig = T(1) / (T(1) + std::exp(-g[i]));
        dg[i] = dout[i] * u[i] * sig * (T(1) + g[i] * (T(1) - sig));
        du[i] = dout[i] * g[i] * sig;
    }
}

// ---- softmax ------------------------------------------------------------------------------------------

/// In place; the same arithmetic as model/ops.hpp's softmax for T = float.
template <class T>
void softmax(std::span<T> x) noexcept {
    T m = x[0];
    for (T v : x) m = v > m ? v : m;
    double sum = 0.0;
    for (T& v : x) {
        v = std::exp(v - m);
        sum += v;
    }
    const auto inv = static_cast<T>(1.0 / sum);
    for (T& v : x) v *= inv;
}

/// ds = p ⊙ (dp − Σ dp⊙p), for p = softmax(s); written to ds (which may alias dp).
template <class T>
void softmax_backward(std::span<const T> p, std::span<const T> dp, std::span<T> ds) noexcept {
    double dot = 0.0;
    for (std::size_t i = 0; i < p.size(); ++i) dot += static_cast<double>(dp[i]) * static_cast<double>(p[i]);
    const auto d = static_cast<T>(dot);
    for (std::size_t i = 0; i < p.size(); ++i) ds[i] = p[i] * (dp[i] - d);
}

// ---- log-probability of a target token ----------------------------------------------------------------

/// log softmax(logits)[target]; also leaves softmax(logits) in `probs` when it is not empty (`probs` may be
/// `logits` itself).
template <class T>
double target_log_prob(std::span<const T> logits, std::size_t target, std::span<T> probs) noexcept {
    T m = logits[0];
    for (T v : logits) m = v > m ? v : m;
    double sum = 0.0;
    for (T v : logits) sum += std::exp(static_cast<double>(v - m));
    const double lse = static_cast<double>(m) + std::log(sum);
    const double result = static_cast<double>(logits[target]) - lse;  // before `probs`, which may alias `logits`
    if (!probs.empty())
        for (std::size_t i = 0; i < logits.size(); ++i) probs[i] = static_cast<T>(std::exp(static_cast<double>(logits[i]) - lse));
    return result;
}

/// d(coef · log softmax(logits)[target]) / d logits = coef · (onehot(target) − softmax(logits)), written over
/// `probs` (which holds softmax(logits) on entry).
template <class T>
void target_log_prob_backward(std::span<T> probs, std::size_t target, T coef) noexcept {
    for (T& p : probs) p = -coef * p;
    probs[target] += coef;
}

}  // namespace qsafe::train::ops
