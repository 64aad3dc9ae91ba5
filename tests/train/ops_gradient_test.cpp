// Each differentiable op of the training layer (train/ops.hpp) against central finite differences, in
// double precision: for a random upstream gradient g, d(g · f(x))/dx from the backward function must equal
// the finite-difference derivative of g · f(x) for every input entry.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "qsafe/model/ops.hpp"
#include "qsafe/train/ops.hpp"

using namespace qsafe;
using namespace qsafe::train;

namespace {
std::vector<double> random_vector(std::size_t n, std::mt19937_64& rng, double scale = 1.0) {
    std::normal_distribution<double> g(0.0, scale);
    std::vector<double> v(n);
    for (double& x : v) x = g(rng);
    return v;
}

/// Central difference of a scalar function of x, for every entry.
std::vector<double> numeric_gradient(std::vector<double> x, const std::function<double(const std::vector<double>&)>& f, double h = 1e-6) {
    std::vector<double> g(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double keep = x[i];
        x[i] = keep + h;
        const double up = f(x);
        x[i] = keep - h;
        const double down = f(x);
        x[i] = keep;
        g[i] = (up - down) / (2 * h);
    }
    return g;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

void check_close(const std::vector<double>& analytic, const std::vector<double>& numeric, double tol = 1e-7) {
    REQUIRE(analytic.size() == numeric.size());
    double err = 0, norm = 0;
    for (std::size_t i = 0; i < analytic.size(); ++i) {
        err += (analytic[i] - numeric[i]) * (analytic[i] - numeric[i]);
        norm += numeric[i] * numeric[i];
    }
    CHECK(norm > 0);
    CHECK(std::sqrt(err / norm) < tol);
}
}  // namespace

TEST_CASE("rms_norm backward matches finite differences for x and the weight") {
    std::mt19937_64 rng(1);
    const std::size_t n = 24;
    const auto x = random_vector(n, rng), w = random_vector(n, rng), g = random_vector(n, rng);
    const float eps = 1e-5f;
    auto f_x = [&](const std::vector<double>& xv) {
        std::vector<double> y(n);
        train::ops::rms_norm<double>(xv, w, eps, y);
        return dot(g, y);
    };
    auto f_w = [&](const std::vector<double>& wv) {
        std::vector<double> y(n);
        train::ops::rms_norm<double>(x, wv, eps, y);
        return dot(g, y);
    };
    std::vector<double> dx(n), dw(n, 0.0);
    train::ops::rms_norm_backward<double>(x, w, eps, g, dx, dw);
    check_close(dx, numeric_gradient(x, f_x));
    check_close(dw, numeric_gradient(w, f_w));
}

TEST_CASE("rope backward (inverse rotation) matches finite differences in both layouts, partial rotation included") {
    std::mt19937_64 rng(2);
    const std::size_t heads = 3, hd = 8;
    for (const auto layout : {train::ops::RopeLayout::adjacent_pairs, train::ops::RopeLayout::neox}) {
        for (const std::size_t rope_dim : {std::size_t{8}, std::size_t{4}}) {
            const std::vector<double> inv = qsafe::ops::rope_inverse_frequencies(rope_dim, 10000.0f, {});
            const auto x = random_vector(heads * hd, rng), g = random_vector(heads * hd, rng);
            const std::size_t pos = 7;
            auto f = [&](const std::vector<double>& xv) {
                std::vector<double> y = xv;
                train::ops::rope(y.data(), heads, hd, pos, inv, layout);
                return dot(g, y);
            };
            std::vector<double> dx = g;
            train::ops::rope(dx.data(), heads, hd, pos, inv, layout, -1);
            check_close(dx, numeric_gradient(x, f));
        }
    }
}

TEST_CASE("rope layouts: NEOX on a head equals adjacent pairs on the head's entries regrouped") {
    const std::size_t hd = 8, half = 4;
    const std::vector<double> inv = qsafe::ops::rope_inverse_frequencies(hd, 10000.0f, {});
    std::mt19937_64 rng(3);
    const auto x = random_vector(hd, rng);
    std::vector<double> neox = x, adjacent(hd);
    for (std::size_t i = 0; i < half; ++i) {
        adjacent[2 * i] = x[i];
        adjacent[2 * i + 1] = x[i + half];
    }
    train::ops::rope(neox.data(), 1, hd, 5, inv, train::ops::RopeLayout::neox);
    train::ops::rope(adjacent.data(), 1, hd, 5, inv, train::ops::RopeLayout::adjacent_pairs);
    for (std::size_t i = 0; i < half; ++i) {
        CHECK(neox[i] == doctest::Approx(adjacent[2 * i]).epsilon(1e-12));
        CHECK(neox[i + half] == doctest::Approx(adjacent[2 * i + 1]).epsilon(1e-12));
    }
}

TEST_CASE("swiglu backward matches finite differences for gate and up") {
    std::mt19937_64 rng(4);
    const std::size_t n = 20;
    const auto gate = random_vector(n, rng, 2.0), up = random_vector(n, rng), g = random_vector(n, rng);
    auto f_gate = [&](const std::vector<double>& gv) {
        std::vector<double> y(n);
        train::ops::swiglu<double>(gv, up, y);
        return dot(g, y);
    };
    auto f_up = [&](const std::vector<double>& uv) {
        std::vector<double> y(n);
        train::ops::swiglu<double>(gate, uv, y);
        return dot(g, y);
    };
    std::vector<double> dg(n), du(n);
    train::ops::swiglu_backward<double>(gate, up, g, dg, du);
    check_close(dg, numeric_gradient(gate, f_gate));
    check_close(du, numeric_gradient(up, f_up));
}

TEST_CASE("softmax backward matches finite differences") {
    std::mt19937_64 rng(5);
    const std::size_t n = 17;
    const auto s = random_vector(n, rng, 3.0), g = random_vector(n, rng);
    auto f = [&](const std::vector<double>& sv) {
        std::vector<double> p = sv;
        train::ops::softmax<double>(p);
        return dot(g, p);
    };
    std::vector<double> p = s;
    train::ops::softmax<double>(p);
    std::vector<double> ds(n);
    train::ops::softmax_backward<double>(p, g, ds);
    check_close(ds, numeric_gradient(s, f));
}

TEST_CASE("target log-probability backward matches finite differences") {
    std::mt19937_64 rng(6);
    const std::size_t n = 31, target = 11;
    const auto logits = random_vector(n, rng, 2.0);
    const double coef = -0.37;
    auto f = [&](const std::vector<double>& l) { return coef * train::ops::target_log_prob<double>(l, target, {}); };
    std::vector<double> probs(n);
    train::ops::target_log_prob<double>(logits, target, probs);
    train::ops::target_log_prob_backward<double>(probs, target, coef);
    check_close(probs, numeric_gradient(logits, f));
}

TEST_CASE("fp32 forward ops compute exactly what the decoder's ops compute") {
    std::mt19937 rng(7);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(64), w(64), y1(64), y2(64);
    for (auto* v : {&x, &w})
        for (float& e : *v) e = g(rng);
    qsafe::ops::rms_norm(x, w, 1e-5f, y1);
    train::ops::rms_norm<float>(x, w, 1e-5f, y2);
    CHECK(y1 == y2);
    std::vector<float> gate = x, act(64);
    train::ops::swiglu<float>(x, w, act);
    qsafe::ops::swiglu(gate, w);
    CHECK(gate == act);
    std::vector<float> s1 = x, s2 = x;
    qsafe::ops::softmax(s1);
    train::ops::softmax<float>(s2);
    CHECK(s1 == s2);
    const std::vector<double> inv = qsafe::ops::rope_inverse_frequencies(16, 10000.0f, {});
    std::vector<float> r1 = x, r2 = x;
    qsafe::ops::rope(r1.data(), 2, 32, 9, inv);
    train::ops::rope(r2.data(), 2, 32, 9, inv, train::ops::RopeLayout::adjacent_pairs);
    CHECK(r1 == r2);
}

TEST_CASE("target log-probability: the softmax may be written over the logits themselves") {
    std::vector<float> logits = {0.5f, -1.0f, 2.0f, 0.25f}, separate(4);
    const double want = train::ops::target_log_prob<float>(logits, 2, separate);
    const double got = train::ops::target_log_prob<float>(logits, 2, logits);
    CHECK(got == want);
    CHECK(logits == separate);
}
