// HQQ on the real model: data-free like RTN, and closer to the full-precision model at 3 bits.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/skip.hpp"
#include "common/model_fixtures.hpp"
#include "qsafe/model/kl_divergence.hpp"
#include "qsafe/model/model_loader.hpp"
#include "qsafe/ptq/quantize_model.hpp"

using namespace qsafe;

namespace {
// Mean KL(fp || q) over every position of the tokens.
double hqq_test_mean_kl(LlamaModel& fp, LlamaModel& q, const std::vector<std::int32_t>& tokens) {
    const RowMatrixF p = test_fixtures::all_logits(fp, tokens), r = test_fixtures::all_logits(q, tokens);
    double total = 0.0;
    for (Eigen::Index i = 0; i < p.rows(); ++i) {
        const Eigen::ArrayXd lp = p.row(i).cast<double>().array() - std::log(p.row(i).cast<double>().array().exp().sum());
        const Eigen::ArrayXd lq = r.row(i).cast<double>().array() - std::log(r.row(i).cast<double>().array().exp().sum());
        total += (lp.exp() * (lp - lq)).sum();
    }
    return total / static_cast<double>(p.rows());
}
}  // namespace

TEST_CASE("HQQ on SmolLM2: data-free, and a lower KL to the fp model than RTN at int3-g128") {
    const auto path = default_model_path();
    if (!std::filesystem::exists(path)) {
        test_fixtures::skip_test("SmolLM2 model not found at " + path.string() + " (scripts/fetch_model.sh fetches it)");
        return;
    }
    auto fp = load_model(path);
    const std::string text =
        "The lighthouse keeper climbed the spiral stairs every evening at dusk. From the top he could see the "
        "fishing boats returning to the harbour, their lamps swinging with the waves. In winter the storms came "
        "from the north, and the keeper wrote each one into a leather notebook: the date, the height of the "
        "waves, and the ships that had asked for shelter. Years later his granddaughter found the notebooks in "
        "a box under the stairs and read them aloud to the village school.";
    const std::vector<std::int32_t> tokens = fp.tokenizer.encode(text);
    REQUIRE(tokens.size() > 80);
    PtqOptions opt;
#if defined(__SANITIZE_ADDRESS__)
    opt.rules = SchemeRules::parse("blk.0.*=int3-g128-asym,blk.1.*=int3-g128-asym");  // the sanitizer build is ~10x slower
#else
    opt.rules = SchemeRules::parse("blk.*=int3-g128-asym");
#endif
    auto quantized = [&](PtqMethod method) {
        auto m = load_model(path);
        opt.method = method;
        quantize_model(m.model.mutable_weights(), nullptr, opt);  // no calibration statistics: both are data-free
        return m;
    };
    auto rtn = quantized(PtqMethod::rtn), hqq = quantized(PtqMethod::hqq);
    const double kl_rtn = hqq_test_mean_kl(fp.model, rtn.model, tokens), kl_hqq = hqq_test_mean_kl(fp.model, hqq.model, tokens);
    MESSAGE("SmolLM2 int3-g128-asym, " << tokens.size() << " tokens: mean KL rtn " << kl_rtn << ", hqq " << kl_hqq);
    CHECK(kl_hqq < kl_rtn);
    CHECK(hqq.model.weights().layers[0].w_down->scheme_name() == "int3-g128-asym");
    CHECK(hqq.model.weights().layers[0].w_down->storage_bytes() == rtn.model.weights().layers[0].w_down->storage_bytes());
}
