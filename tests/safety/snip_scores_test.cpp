// SNIP scores (safety/snip_scores.hpp) on tiny random Llamas against central finite differences of each
// example's own loss, the global threshold Q-resafe selects with, and `--protect snip` plans.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "common/model_fixtures.hpp"
#include "common/tiny_weights.hpp"
#include "qsafe/safety/protection.hpp"
#include "qsafe/safety/snip_scores.hpp"

using namespace qsafe;

namespace {

LlamaWeights snip_tiny_weights(std::uint64_t seed, const char* rules = "*=fp32") { return test_fixtures::tiny_weights("snip", seed, false, rules); }

/// Three "prompt → refusal" examples of the 61-token vocabulary: the mask covers the answer part only.
std::vector<train::MaskedSequence> snip_examples() {
    auto example = [](std::vector<std::int32_t> prompt, std::vector<std::int32_t> answer) {
        train::MaskedSequence s;
        s.tokens = prompt;
        s.loss_mask.assign(prompt.size(), 0);
        s.tokens.insert(s.tokens.end(), answer.begin(), answer.end());
        s.loss_mask.resize(s.tokens.size(), 1);
        return s;
    };
    return {example({1, 17, 60, 42, 9}, {31, 5, 58, 2}), example({1, 4, 30, 59, 21, 6, 18}, {40, 11, 3, 7, 2}),
            example({1, 45, 27}, {36, 14, 52, 2})};
}

/// Mean token cross-entropy of one example's counted tokens.
double example_loss(train::TrainableLlama& net, const train::MaskedSequence& s) {
    const train::MaskedBatch b = train::MaskedBatch::from(std::span(&s, 1), 0);
    const std::vector<double> logp = net.forward(b.batch, b.mask, false);
    double loss = 0;
    for (std::size_t i = 0; i < logp.size(); ++i)
        if (b.mask[i]) loss -= logp[i];
    return loss / static_cast<double>(s.counted());
}

}  // namespace

TEST_CASE("SNIP scores equal the mean over examples of |w · dL/dw| by central finite differences (every block projection)") {
    const LlamaWeights model = snip_tiny_weights(41);
    const auto examples = snip_examples();
    const SnipScores scores = snip_scores(model, examples, 0);
    CHECK(scores.examples == 3);
    CHECK(scores.tokens == 13);
    CHECK(scores.tensors.size() == 2 * 7);
    LlamaWeights w = dense_copy(model);
    train::TrainableLlama net(w, nullptr);
    std::mt19937_64 rng(5);
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
        auto& L = w.layers[l];
        std::unique_ptr<QuantizedLinear>* layers[] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
        for (std::size_t p = 0; p < 7; ++p) {
            const std::string name = "blk." + std::to_string(l) + "." + train::block_projections[p] + ".weight";
            RowMatrixF& weight = dynamic_cast<DenseLinear&>(**layers[p]).mutable_weights();
            const std::vector<float>& s = scores.require(name);
            REQUIRE(s.size() == static_cast<std::size_t>(weight.size()));
            double err = 0, norm = 0;
            for (int k = 0; k < 12; ++k) {
                const auto i = static_cast<std::size_t>(rng() % s.size());
                float& v = weight.data()[i];
                const float keep = v, h = 2e-3f;
                double reference = 0;
                for (const auto& x : examples) {
                    v = keep + h;
                    net.refresh_weight_caches();
                    const double up = example_loss(net, x);
                    v = keep - h;
                    net.refresh_weight_caches();
                    const double down = example_loss(net, x);
                    reference += std::abs(static_cast<double>(keep) * (up - down) / (2.0 * h)) / static_cast<double>(examples.size());
                }
                v = keep;
                net.refresh_weight_caches();
                err += (reference - s[i]) * (reference - s[i]);
                norm += reference * reference;
            }
            INFO(name);
            REQUIRE(norm > 0);
            CHECK(std::sqrt(err / norm) < 5e-3);
        }
    }
}

TEST_CASE("SNIP scores of a group gradient are at most the per-example scores (|Σ g| ≤ Σ |g|), and not all zero") {
    const LlamaWeights model = snip_tiny_weights(43);
    const auto examples = snip_examples();
    const SnipScores single = snip_scores(model, examples, 0);
    SnipOptions grouping;
    grouping.examples_per_gradient = 3;
    const SnipScores grouped = snip_scores(model, examples, 0, grouping);
    double total = 0, strictly_smaller = 0, count = 0;
    for (const auto& [name, s] : single.tensors) {
        const auto& g = grouped.require(name);
        REQUIRE(g.size() == s.size());
        for (std::size_t i = 0; i < s.size(); ++i) {
            CHECK_MESSAGE(g[i] <= s[i] * (1 + 1e-4f) + 1e-12f, name << "[" << i << "]");
            total += g[i];
            strictly_smaller += g[i] < s[i] * 0.999f ? 1 : 0;
            ++count;
        }
    }
    CHECK(total > 0);
    CHECK(strictly_smaller / count > 0.1);  // gradients of different examples do cancel somewhere
}

TEST_CASE("SNIP on a quantized model scores its dequantized weights: the dense copy computes the same logits") {
    const LlamaWeights quantized = snip_tiny_weights(47, "*=int2-g16-asym");
    LlamaWeights copy = dense_copy(quantized);
    LlamaModel reference(snip_tiny_weights(47, "*=int2-g16-asym"));
    train::TrainableLlama net(copy, nullptr);
    const std::vector<std::int32_t> seq = {1, 17, 60, 42, 9, 31, 5, 58, 2};
    const RowMatrixF mine = net.logits(train::TrainBatch::padded({seq}, 0));
    const RowMatrixF ref = test_fixtures::all_logits(reference, seq);
    REQUIRE(mine.rows() == ref.rows());
    CHECK((mine - ref).cwiseAbs().maxCoeff() <= 1e-4f * ref.cwiseAbs().maxCoeff());
    CHECK(dynamic_cast<const DenseLinear*>(copy.layers[0].wq.get()) != nullptr);
    CHECK(quantized.layers[0].wq->scheme_name() == "int2-g16-asym");  // the model scored is left as it was
}

TEST_CASE("global threshold: exact over few scores, estimated from a sample over many") {
    std::vector<float> a(10), b(10);
    std::iota(a.begin(), a.end(), 1.0f);
    std::iota(b.begin(), b.end(), 11.0f);
    const std::vector<std::span<const float>> two = {a, b};
    CHECK(sampled_top_threshold(two, 0.25) == 16.0f);  // the top 5 of 1..20
    CHECK(at_or_above(b, 16.0f) == std::vector<std::size_t>{5, 6, 7, 8, 9});
    CHECK(std::isinf(sampled_top_threshold(two, 0.0)));
    CHECK(sampled_top_threshold(two, 1.0) == 1.0f);
    CHECK_THROWS_AS(sampled_top_threshold(two, 1.5), config_error);

    // 200 000 scores uniform in [0, 1): the top 20 % lie above 0.8; a 20 000-score sample lands close.
    std::mt19937_64 rng(9);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    std::vector<float> big1(120000), big2(80000);
    for (auto& x : big1) x = u(rng);
    for (auto& x : big2) x = u(rng);
    const std::vector<std::span<const float>> many = {big1, big2};
    const float t = sampled_top_threshold(many, 0.2, 20000, 3);
    CHECK(t == doctest::Approx(0.8).epsilon(0.02));
    CHECK(sampled_top_threshold(many, 0.2, 20000, 3) == t);  // seeded: the same threshold again
}

TEST_CASE("--protect snip: per-tensor fractions keep each tensor's top SNIP scores, a global fraction one threshold over all") {
    LlamaWeights model = snip_tiny_weights(53);
    const SnipScores scores = snip_scores(model, snip_examples(), 0);
    ProtectOptions opt;
    opt.mode = parse_protect_mode("snip");
    opt.fraction = FractionRules::parse("blk.*=5%");
    CHECK_THROWS_AS(plan_protection(model, nullptr, nullptr, opt), config_error);  // scores are required
    const ProtectedWeights per_tensor = plan_protection(model, nullptr, nullptr, opt, &scores);
    CHECK(per_tensor.method == "snip");
    CHECK(per_tensor.indices.size() == 14);
    for (const auto& [name, chosen] : per_tensor.indices) {
        const auto& s = scores.require(name);
        CHECK(chosen.size() == fraction_count(0.05, s.size()));
        std::vector<std::uint8_t> in(s.size(), 0);
        float lowest_chosen = std::numeric_limits<float>::infinity(), highest_other = 0;
        for (auto i : chosen) in[i] = 1, lowest_chosen = std::min(lowest_chosen, s[i]);
        for (std::size_t i = 0; i < s.size(); ++i)
            if (!in[i]) highest_other = std::max(highest_other, s[i]);
        INFO(name);
        CHECK(lowest_chosen >= highest_other);
    }

    opt.global_fraction = 0.05;
    const ProtectedWeights global = plan_protection(model, nullptr, nullptr, opt, &scores);
    std::size_t total = 0;
    for (const auto& [name, s] : scores.tensors) total += s.size();
    CHECK(global.total() == fraction_count(0.05, total));  // exact: fewer scores than the sample size
    float lowest_chosen = std::numeric_limits<float>::infinity(), highest_other = 0;
    std::size_t min_count = total, max_count = 0;
    for (const auto& [name, s] : scores.tensors) {
        std::vector<std::uint8_t> in(s.size(), 0);
        const auto* chosen = global.for_tensor(name);
        const std::size_t n = chosen ? chosen->size() : 0;
        min_count = std::min(min_count, n * 1000 / s.size());
        max_count = std::max(max_count, n * 1000 / s.size());
        if (chosen)
            for (auto i : *chosen) in[i] = 1, lowest_chosen = std::min(lowest_chosen, s[i]);
        for (std::size_t i = 0; i < s.size(); ++i)
            if (!in[i]) highest_other = std::max(highest_other, s[i]);
    }
    CHECK(lowest_chosen >= highest_other);
    CHECK(max_count > min_count);  // tensors keep different shares, unlike the per-tensor form

    CHECK_NOTHROW(check_protectable(model, SchemeRules::parse("*=int4-g32-asym"), opt));
    opt.mode = ProtectMode::safety;  // its scores are a set difference, not one comparable number
    CHECK_THROWS_WITH_AS(check_protectable(model, SchemeRules::parse("*=int4-g32-asym"), opt), doctest::Contains("global"), config_error);
    opt.mode = ProtectMode::snip;
    opt.fraction = FractionRules::parse("output=1%");
    CHECK_THROWS_WITH_AS(check_protectable(model, SchemeRules::parse("*=int4-g32-asym"), opt), doctest::Contains("output.weight: SNIP"), config_error);
    CHECK_THROWS_AS(parse_protect_mode("snipp"), config_error);
}
