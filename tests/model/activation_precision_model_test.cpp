// The integer kernels' activation precisions on the real model: SmolLM2-135M-Instruct with int4-g128-asym
// blocks run with exact fp32 activations, int16 activations (what `automatic` chooses for fewer than 16 vectors) and int8 ones
// (llama.cpp's q8_0). int16 must track the exact path far more closely than int8 does.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "common/skip.hpp"
#include "common/model_fixtures.hpp"
#include "qsafe/model/model_loader.hpp"
#include "qsafe/registry/quantized_linear.hpp"

using namespace qsafe;

namespace {
// Mean KL(p || q) over the rows of two logit matrices, and how many rows share their top token.
struct PrecisionKl {
    double mean_kl = 0.0;
    Eigen::Index same_top = 0;
};
PrecisionKl activation_precision_kl(const RowMatrixF& p, const RowMatrixF& q) {
    PrecisionKl out;
    for (Eigen::Index i = 0; i < p.rows(); ++i) {
        const Eigen::ArrayXd lp = p.row(i).cast<double>().array() - std::log(p.row(i).cast<double>().array().exp().sum());
        const Eigen::ArrayXd lq = q.row(i).cast<double>().array() - std::log(q.row(i).cast<double>().array().exp().sum());
        out.mean_kl += (lp.exp() * (lp - lq)).sum();
        Eigen::Index ap = 0, aq = 0;
        p.row(i).maxCoeff(&ap);
        q.row(i).maxCoeff(&aq);
        out.same_top += ap == aq;
    }
    out.mean_kl /= static_cast<double>(p.rows());
    return out;
}
}  // namespace

TEST_CASE("SmolLM2 int4-g128: int16 activations stay within 1e-4 nats of the exact path, int8 ones do not") {
    const auto path = default_model_path();
    if (!std::filesystem::exists(path)) {
        test_fixtures::skip_test("SmolLM2 model not found at " + path.string() + " (scripts/fetch_model.sh fetches it)");
        return;
    }
    LoadOptions lo;
#if defined(__SANITIZE_ADDRESS__)
    lo.build_linear = rtn_builder(SchemeRules::parse("blk.0.*=int4-g128-asym,blk.1.*=int4-g128-asym"));  // ~10x slower build
#else
    lo.build_linear = rtn_builder(SchemeRules::parse("blk.*=int4-g128-asym"));
#endif
    auto m = load_model(path, lo);
    const std::vector<std::int32_t> tokens = m.tokenizer.encode(
        "The river rose for three days after the snow melted in the hills. On the fourth morning the ferryman "
        "tied his boat to the old oak and walked into town to ask the mayor whether the bridge would hold.");
    REQUIRE(tokens.size() > 30);
    const ActivationPrecision saved = activation_precision();
    auto logits_with = [&](ActivationPrecision p) {
        set_activation_precision(p);
        return test_fixtures::all_logits(m.model, tokens);
    };
    const RowMatrixF exact = logits_with(ActivationPrecision::fp32);
    const RowMatrixF int16 = logits_with(ActivationPrecision::int16);
    const RowMatrixF automatic = logits_with(ActivationPrecision::automatic);
    const RowMatrixF int8 = logits_with(ActivationPrecision::int8);
    set_activation_precision(saved);

    const PrecisionKl kl16 = activation_precision_kl(exact, int16), kl8 = activation_precision_kl(exact, int8);
    MESSAGE("SmolLM2 int4-g128-asym, " << tokens.size() << " tokens, KL from fp32 activations: int16 " << kl16.mean_kl
                                       << " (same top token " << kl16.same_top << "), int8 " << kl8.mean_kl << " ("
                                       << kl8.same_top << ")");
    // The whole prompt is one batch of more than 16 vectors: with fp32 or automatic activations it runs on
    // dequantized tiles (fp32 activations), so both give the same logits; int16 is asked for explicitly.
    REQUIRE(tokens.size() >= default_dequantized_tiles_min_batch);
    CHECK(automatic == exact);
    CHECK(kl16.mean_kl < 1e-4);
    CHECK(kl16.mean_kl * 10.0 < kl8.mean_kl);
    CHECK(kl16.same_top == exact.rows());
}
