// qsafe's fp32 decoder on the real SmolLM2-135M-Instruct against llama.cpp's logits and greedy
// continuations (tests/fixtures/smollm2, made by tools/reference/make_fixtures.py). Skipped when the model
// is not in the cache (scripts/fetch_model.sh puts it there).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "common/skip.hpp"
#include "qsafe/model/generation.hpp"
#include "qsafe/model/model_loader.hpp"

using namespace qsafe;

namespace {
LoadedModel* real_model() {
    static std::unique_ptr<LoadedModel> model;
    static bool tried = false;
    if (!tried) {
        tried = true;
        const auto path = default_model_path();
        if (std::filesystem::exists(path)) model = std::make_unique<LoadedModel>(load_model(path));
    }
    return model.get();
}
nlohmann::json fixture(const char* name) {
    std::ifstream in(std::filesystem::path(QSAFE_FIXTURE_DIR) / "smollm2" / name);
    REQUIRE(in.good());
    return nlohmann::json::parse(in);
}

struct Agreement {
    std::size_t positions = 0, top1 = 0, same_continuations = 0, cases = 0;
    double mean_kl = 0.0;
    double max_logprob_diff = 0.0;  // over every position's reference top 64
    double top1_rate() const { return static_cast<double>(top1) / static_cast<double>(positions); }
};

// Scores qsafe's fp32 decoder against one llama.cpp logits fixture: top-1 agreement and KL at every scored
// position, and the greedy continuation of every prompt. Every disagreement must be at a near-tie of the
// reference (a decisive difference is a bug, not noise).
Agreement agreement_with(LoadedModel* m, const char* fixture_name) {
    const auto fx = fixture(fixture_name);
    constexpr double near_tie_nats = 0.1;
    std::size_t positions = 0, top1 = 0, same_continuations = 0, cases = 0;
    double kl_sum = 0.0, max_logprob_diff = 0.0;
    std::vector<float> logp;
    for (const auto& c : fx["cases"]) {
        ++cases;
        const auto scored = c["scored_ids"].get<std::vector<std::int32_t>>();
        const auto prompt = c["prompt_ids"].get<std::vector<std::int32_t>>();
        CHECK(m->tokenizer.encode(c["prompt"].get<std::string>(), {.add_bos = false, .parse_special = true}) == prompt);
        std::map<Eigen::Index, double> gap_at;
        KvCache cache = m->model.new_cache();
        const RowMatrixF logits = m->model.forward_sequence(cache, scored, true);
        for (const auto& p : c["positions"]) {
            const auto pos = p["pos"].get<Eigen::Index>();
            logp.resize(static_cast<std::size_t>(logits.cols()));
            ops::log_softmax({logits.row(pos).data(), logp.size()}, logp);
            const auto ids = p["top_ids"].get<std::vector<std::int32_t>>();
            const auto ref = p["top_logprobs"].get<std::vector<double>>();
            // KL(llama.cpp || qsafe) over the reference top 64 plus one merged tail outcome (a lower bound
            // of the full KL, tight here: the top 64 hold nearly all the mass).
            double kl = 0.0, p_top = 0.0, q_top = 0.0;
            for (std::size_t i = 0; i < ids.size(); ++i) {
                const double pp = std::exp(ref[i]), lq = logp[static_cast<std::size_t>(ids[i])];
                max_logprob_diff = std::max(max_logprob_diff, std::abs(ref[i] - lq));
                kl += pp * (ref[i] - lq);
                p_top += pp;
                q_top += std::exp(lq);
            }
            const double p_tail = std::max(1.0 - p_top, 0.0), q_tail = std::max(1.0 - q_top, 1e-30);
            if (p_tail > 1e-12) kl += p_tail * std::log(p_tail / q_tail);
            kl_sum += kl;
            const double gap = ref[0] - ref[1];
            gap_at[pos] = gap;
            if (Sampler::argmax(logp) == ids[0]) {
                ++top1;
            } else {
                // A disagreement is acceptable only where llama.cpp itself is undecided between its top two.
                MESSAGE(c["name"].get<std::string>() << " position " << pos << ": top-1 differs, reference top-2 gap " << gap << " nats");
                CHECK(gap < near_tie_nats);
            }
            ++positions;
        }
        // Greedy continuation of the prompt, as many tokens as the reference generated.
        const auto ref_ids = c["continuation"]["ids"].get<std::vector<std::int32_t>>();
        GenerationOptions go;
        go.max_new_tokens = ref_ids.size();
        const std::vector<std::vector<std::int32_t>> prompts = {prompt};
        const auto out = generate(m->model, m->tokenizer, prompts, go);
        std::vector<std::int32_t> ours = out[0].tokens;
        std::vector<std::int32_t> theirs = ref_ids;
        if (c["continuation"].value("includes_stop_token", false) && !theirs.empty()) theirs.pop_back();
        const bool same = ours == theirs;
        same_continuations += same ? 1 : 0;
        if (!same) {
            std::size_t k = 0;
            while (k < ours.size() && k < theirs.size() && ours[k] == theirs[k]) ++k;
            const auto pos = static_cast<Eigen::Index>(prompt.size() - 1 + k);
            const double gap = gap_at.count(pos) ? gap_at[pos] : 0.0;
            MESSAGE(c["name"].get<std::string>() << ": greedy continuation diverges at token " << k << " where the reference top-2 gap is "
                                                 << gap << " nats");
            CHECK(gap < near_tie_nats);
        } else {
            MESSAGE(c["name"].get<std::string>() << ": greedy continuation identical");
        }
    }
    Agreement a{positions, top1, same_continuations, cases, kl_sum / static_cast<double>(positions), max_logprob_diff};
    MESSAGE(std::string(fixture_name) << ": max |log-prob difference| " << max_logprob_diff << ", positions " << positions << ", top-1 agreement " << 100.0 * a.top1_rate() << " %, mean KL "
                         << a.mean_kl << " nats, identical greedy continuations " << same_continuations << "/" << cases);
    return a;
}
}  // namespace

TEST_CASE("SmolLM2 fp32 logits agree with llama.cpp on the all-F32 model (top-1, KL, greedy)") {
    LoadedModel* m = real_model();
    if (!m) {
        test_fixtures::skip_test("SmolLM2 model not found at " + default_model_path().string() + " (scripts/fetch_model.sh fetches it)");
        return;
    }
    // llama.cpp on the same weights converted to F32 (F32 KV cache): both engines compute in fp32, so the
    // issue's bars apply as written.
    const Agreement a = agreement_with(m, "logits_cases_f32.json");
    CHECK(a.positions >= 256);
    CHECK(a.mean_kl <= 0.01);
    CHECK(a.top1_rate() >= 0.99);
    CHECK(a.same_continuations >= 4);
    // Both are fp32 evaluations of the same weights: beyond the bars above, the log-probabilities must agree
    // to float rounding (fixture values carry 6 significant digits).
    CHECK(a.max_logprob_diff <= 2e-3);
}

TEST_CASE("SmolLM2 fp32 logits agree with llama.cpp on the Q4_1 file (int8 activations in llama.cpp)") {
    LoadedModel* m = real_model();
    if (!m) {
        test_fixtures::skip_test("SmolLM2 model not found at " + default_model_path().string() + " (scripts/fetch_model.sh fetches it)");
        return;
    }
    // On the Q4_1 file llama.cpp multiplies with int8-quantized activations and an f16 KV cache, and its own
    // batched and token-by-token paths agree on 361 of these 366 positions (fixture README); an exact fp32
    // engine cannot beat that on near-ties. The bar: every disagreement at a near-tie and >= 98 % overall.
    const Agreement a = agreement_with(m, "logits_cases.json");
    CHECK(a.positions >= 256);
    CHECK(a.mean_kl <= 0.01);
    CHECK(a.top1_rate() >= 0.98);
    CHECK(a.same_continuations >= 3);
}
