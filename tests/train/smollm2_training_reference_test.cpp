// The training path on the real SmolLM2-135M-Instruct against PyTorch autograd on the same fp32 weights
// (tests/fixtures/smollm2_train, written by tools/reference/make_training_fixtures.py): the masked SFT loss
// and the gradient of all 420 LoRA matrices, 10 AdamW steps with clipping, and the DPO loss, rewards,
// accuracy and gradients. Tolerances come from the fixture's own fp32-vs-fp64 noise floor (its README).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/model/model_loader.hpp"
#include "qsafe/train/adamw.hpp"
#include "qsafe/train/objectives.hpp"
#include "qsafe/train/parameters.hpp"
#include "qsafe/train/trainable_llama.hpp"

using namespace qsafe;
using namespace qsafe::train;

namespace {

LoadedModel& smollm2() {
    static std::unique_ptr<LoadedModel> model;
    if (!model) {
        const auto path = default_model_path();
        INFO("the default model is fetched by scripts/fetch_model.sh (scripts/test.sh runs it)");
        REQUIRE(std::filesystem::exists(path));
        model = std::make_unique<LoadedModel>(load_model(path));
    }
    return *model;
}

nlohmann::json fixture(const char* name) {
    std::ifstream in(std::filesystem::path(QSAFE_FIXTURE_DIR) / "smollm2_train" / name);
    REQUIRE(in.good());
    return nlohmann::json::parse(in);
}

// The fixture's deterministic LoRA init (its README): rank 4, alpha 8, all 7 projections of every layer.
LoraAdapter fixture_adapter(const LlamaWeights& w) {
    LoraConfig cfg;
    cfg.rank = 4;
    cfg.alpha = 8.0f;
    cfg.targets = "*";
    LoraAdapter adapter = LoraAdapter::create(w, cfg);
    for (LoraPair& p : adapter.pairs()) {
        const std::size_t layer = std::stoul(p.tensor.substr(4, p.tensor.find('.', 4) - 4));
        std::size_t proj = 0;
        while (p.tensor.find(std::string(".") + block_projections[proj] + ".") == std::string::npos) ++proj;
        const double l = static_cast<double>(layer), pr = static_cast<double>(proj);
        for (Eigen::Index i = 0; i < p.a.rows(); ++i)
            for (Eigen::Index j = 0; j < p.a.cols(); ++j)
                p.a(i, j) = static_cast<float>(0.02 * std::sin(0.37 * static_cast<double>(i) + 0.011 * static_cast<double>(j) + 1.3 * l + 0.7 * pr + 1.0));
        for (Eigen::Index i = 0; i < p.b.rows(); ++i)
            for (Eigen::Index j = 0; j < p.b.cols(); ++j)
                p.b(i, j) = static_cast<float>(0.02 * std::cos(0.23 * static_cast<double>(i) + 0.57 * static_cast<double>(j) + 0.9 * l + 0.3 * pr));
    }
    return adapter;
}

const RowMatrixF& matrix_of(const LoraAdapter& adapter, const std::string& name, bool grad) {
    const bool is_a = name.ends_with(".lora_a");
    const LoraPair* p = adapter.find(name.substr(0, name.size() - 7));
    REQUIRE(p != nullptr);
    return is_a ? (grad ? p->grad_a : p->a) : (grad ? p->grad_b : p->b);
}

double relative_error(const RowMatrixF& got, const std::vector<double>& want) {
    REQUIRE(static_cast<std::size_t>(got.size()) == want.size());
    double diff = 0, ref = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double d = static_cast<double>(got.data()[i]) - want[i];
        diff += d * d;
        ref += want[i] * want[i];
    }
    return std::sqrt(diff / ref);
}

double frobenius(const RowMatrixF& m) { return m.cast<double>().norm(); }

MaskedBatch fixture_batch(const nlohmann::json& fx) {
    std::vector<MaskedSequence> seqs;
    for (std::size_t b = 0; b < fx["batch"]["tokens"].size(); ++b) {
        MaskedSequence s;
        s.tokens = fx["batch"]["tokens"][b].get<std::vector<std::int32_t>>();
        s.loss_mask = fx["batch"]["loss_mask"][b].get<std::vector<std::uint8_t>>();
        seqs.push_back(std::move(s));
    }
    return MaskedBatch::from(seqs, 2);
}

double sft_step_loss(TrainableLlama& m, const MaskedBatch& b, bool backward) {
    const std::vector<double> logp = m.forward(b.batch, b.mask);
    std::vector<double> dlogp;
    const double count = static_cast<double>(std::count(b.mask.begin(), b.mask.end(), 1));
    const double loss = sft_loss(logp, b.mask, count, dlogp);
    if (backward) m.backward(dlogp);
    return loss;
}

}  // namespace

TEST_CASE("SmolLM2 training reference: SFT loss and every LoRA gradient match PyTorch autograd") {
    const auto fx = fixture("lora_sft_reference.json");
    LoadedModel& model = smollm2();
    LoraAdapter adapter = fixture_adapter(model.model.weights());
    REQUIRE(adapter.pairs().size() == 210);  // 420 matrices
    for (const auto& [name, samples] : fx["lora"]["init_samples"].items())
        for (const auto& s : samples)
            CHECK(matrix_of(adapter, name, false)(s[0].get<int>(), s[1].get<int>()) == doctest::Approx(s[2].get<double>()).epsilon(1e-6));

    const MaskedBatch batch = fixture_batch(fx);
    CHECK(static_cast<int>(std::count(batch.mask.begin(), batch.mask.end(), 1)) == fx["batch"]["n_masked"].get<int>());
    TrainableLlama trainable(model.model.mutable_weights(), &adapter);
    const double loss = sft_step_loss(trainable, batch, true);
    MESSAGE("SFT loss " << loss << " (PyTorch " << fx["loss"].get<double>() << ")");
    CHECK(loss == doctest::Approx(fx["loss"].get<double>()).epsilon(1e-5));

    double worst_norm = 0, worst_full = 0, worst_sample = 0;
    std::string worst_norm_name;
    for (const auto& [name, g] : fx["grads"].items()) {
        const RowMatrixF& grad = matrix_of(adapter, name, true);
        REQUIRE(grad.rows() == g["shape"][0].get<int>());
        REQUIRE(grad.cols() == g["shape"][1].get<int>());
        const double ref_norm = g["norm"].get<double>();
        const double norm_err = std::abs(frobenius(grad) - ref_norm) / ref_norm;
        if (norm_err > worst_norm) worst_norm = norm_err, worst_norm_name = name;
        // Entries: relative 2e-3 with a floor of 2e-3 × the tensor's RMS entry (small entries are mostly noise).
        const double rms = ref_norm / std::sqrt(static_cast<double>(grad.size()));
        for (const auto& s : g["samples"]) {
            const double want = s[2].get<double>(), got = grad(s[0].get<int>(), s[1].get<int>());
            const double err = std::abs(got - want) / (std::abs(want) + rms);
            worst_sample = std::max(worst_sample, err);
            if (err > 2e-3) FAIL_CHECK(name << "[" << s[0] << "," << s[1] << "] = " << got << ", PyTorch " << want);
        }
        if (g.contains("full")) {
            const double e = relative_error(grad, g["full"].get<std::vector<double>>());
            worst_full = std::max(worst_full, e);
            CHECK_MESSAGE(e <= 1e-3, name << ": relative error " << e);
        }
    }
    MESSAGE("worst gradient-norm error " << worst_norm << " (" << worst_norm_name << "), worst full-tensor error " << worst_full
                                         << ", worst sampled entry " << worst_sample);
    CHECK(worst_norm <= 1e-3);
    CHECK(global_grad_norm(lora_parameters(adapter)) == doctest::Approx(fx["grad_global_norm"].get<double>()).epsilon(1e-4));
}

TEST_CASE("SmolLM2 training reference: 10 AdamW steps with clipping follow PyTorch's losses") {
    const auto fx = fixture("lora_sft_reference.json");
    const auto& opt = fx["adamw"];
    LoadedModel& model = smollm2();
    LoraAdapter adapter = fixture_adapter(model.model.weights());
    const MaskedBatch batch = fixture_batch(fx);
    TrainableLlama trainable(model.model.mutable_weights(), &adapter);
    AdamWConfig cfg;
    cfg.beta1 = opt["betas"][0].get<double>();
    cfg.beta2 = opt["betas"][1].get<double>();
    cfg.eps = opt["eps"].get<double>();
    cfg.weight_decay = opt["weight_decay"].get<double>();
    AdamW adamw(lora_parameters(adapter), cfg);
    const auto losses = opt["losses"].get<std::vector<double>>();
    const auto norms = opt["grad_norms"].get<std::vector<double>>();
    for (std::size_t step = 0; step < losses.size(); ++step) {
        adapter.zero_grad();
        const double loss = sft_step_loss(trainable, batch, true);
        const double norm = clip_grad_norm(adamw.parameters(), opt["max_grad_norm"].get<double>());
        MESSAGE("step " << step << ": loss " << loss << " (PyTorch " << losses[step] << "), grad norm " << norm << " (" << norms[step] << ")");
        CHECK(loss == doctest::Approx(losses[step]).epsilon(1e-3));
        CHECK(norm == doctest::Approx(norms[step]).epsilon(2e-3));
        adamw.step(opt["lr"].get<double>());
    }
    for (const auto& [name, samples] : opt["final_params_samples"].items()) {
        const RowMatrixF& value = matrix_of(adapter, name, false);
        for (const auto& s : samples) {
            const double want = s[2].get<double>(), got = value(s[0].get<int>(), s[1].get<int>());
            // After 10 steps of size ~lr = 1e-3 each, entries agree to a small fraction of one step.
            CHECK_MESSAGE(std::abs(got - want) <= 1e-4 + 1e-3 * std::abs(want), name << "[" << s[0] << "," << s[1] << "] = " << got << ", PyTorch " << want);
        }
    }
}

TEST_CASE("SmolLM2 training reference: DPO log-probabilities, rewards, loss, accuracy and gradients match PyTorch") {
    const auto fx = fixture("dpo_reference.json");
    LoadedModel& model = smollm2();
    LoraAdapter adapter = fixture_adapter(model.model.weights());
    const double beta = fx["beta"].get<double>();
    std::vector<PreferenceTriple> triples;
    for (const auto& t : fx["triples"]) {
        PreferenceTriple p;
        p.prompt = t["prompt_tokens"].get<std::vector<std::int32_t>>();
        p.chosen = t["chosen_tokens"].get<std::vector<std::int32_t>>();
        p.rejected = t["rejected_tokens"].get<std::vector<std::int32_t>>();
        // The fixture's tokens are qsafe's own tokenization of its texts with the template (no system turn).
        const MaskedSequence rendered = render_example(model.tokenizer, model.chat_template, t["prompt"].get<std::string>(), t["chosen"].get<std::string>(), false);
        CHECK(rendered.tokens == p.sequence(true).tokens);
        CHECK(rendered.loss_mask == p.sequence(true).loss_mask);
        triples.push_back(std::move(p));
    }
    // One batch: chosen and rejected of every triple, padded.
    std::vector<MaskedSequence> seqs;
    for (const auto& t : triples) seqs.push_back(t.sequence(true)), seqs.push_back(t.sequence(false));
    const MaskedBatch batch = MaskedBatch::from(seqs, 2);
    auto pairs_of = [&](const std::vector<double>& per_seq) {
        std::vector<PreferenceLogProbs> out;
        for (std::size_t i = 0; i < triples.size(); ++i) out.push_back({per_seq[2 * i], per_seq[2 * i + 1]});
        return out;
    };
    TrainableLlama reference_model(model.model.mutable_weights(), nullptr);
    const auto reference = pairs_of(sequence_log_probs(reference_model.forward(batch.batch, batch.mask, /*for_backward=*/false), batch));
    TrainableLlama policy_model(model.model.mutable_weights(), &adapter);
    const auto policy = pairs_of(sequence_log_probs(policy_model.forward(batch.batch, batch.mask), batch));
    const DpoResult r = dpo_loss(policy, reference, beta, static_cast<double>(triples.size()));
    for (std::size_t i = 0; i < triples.size(); ++i) {
        const auto& t = fx["triples"][i];
        CHECK(std::abs(policy[i].chosen - t["policy_chosen_logp"].get<double>()) <= 1e-3);
        CHECK(std::abs(policy[i].rejected - t["policy_rejected_logp"].get<double>()) <= 1e-3);
        CHECK(std::abs(reference[i].chosen - t["reference_chosen_logp"].get<double>()) <= 1e-3);
        CHECK(std::abs(reference[i].rejected - t["reference_rejected_logp"].get<double>()) <= 1e-3);
        CHECK(std::abs(r.rewards_chosen[i] - t["reward_chosen"].get<double>()) <= 1e-4);
        CHECK(std::abs(r.rewards_rejected[i] - t["reward_rejected"].get<double>()) <= 1e-4);
        CHECK(std::abs(r.losses[i] - t["loss"].get<double>()) <= 1e-4);
    }
    CHECK(std::abs(r.loss - fx["loss"].get<double>()) <= 1e-5);
    CHECK(r.accuracy == doctest::Approx(fx["accuracy"].get<double>()));

    std::vector<double> per_seq;
    for (std::size_t i = 0; i < triples.size(); ++i) per_seq.push_back(r.dchosen[i]), per_seq.push_back(r.drejected[i]);
    policy_model.backward(spread_sequence_gradient(per_seq, batch));
    double worst = 0;
    for (const auto& [name, norm] : fx["grad_norms"].items()) {
        const double e = std::abs(frobenius(matrix_of(adapter, name, true)) - norm.get<double>()) / norm.get<double>();
        worst = std::max(worst, e);
        CHECK_MESSAGE(e <= 1e-3, name << ": gradient norm off by " << e);
    }
    MESSAGE("DPO: loss " << r.loss << " (PyTorch " << fx["loss"].get<double>() << "), worst gradient-norm error " << worst);
    for (const auto& [name, g] : fx["grads_full"].items()) {
        const double e = relative_error(matrix_of(adapter, name, true), g["values"].get<std::vector<double>>());
        CHECK_MESSAGE(e <= 1e-3, name << ": relative error " << e);
    }
    CHECK(global_grad_norm(lora_parameters(adapter)) == doctest::Approx(fx["grad_global_norm"].get<double>()).epsilon(1e-4));
}
