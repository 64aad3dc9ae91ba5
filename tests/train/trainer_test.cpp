// The optimizer and the training loop on a tiny random Llama: AdamW against the update written out in
// double, the schedule's published shape, the data order, gradient accumulation against one big batch,
// SFT and DPO learning what they are given, thread-count independence, checkpoints that resume to the same
// bytes, and the errors a run stops with.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "common/model_fixtures.hpp"
#include "common/tiny_weights.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/train/adamw.hpp"
#include "qsafe/train/trainer.hpp"
#include "qsafe/train/training_report.hpp"

using namespace qsafe;
using namespace qsafe::train;

namespace {

LlamaWeights tiny_base(std::uint64_t seed) { return test_fixtures::tiny_weights("trainer", seed); }

/// Sequences of a 61-token vocabulary: a "prompt" of random tokens, then a response that is a fixed
/// function of the prompt's last token (learnable), masked.
std::vector<MaskedSequence> tiny_examples(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<MaskedSequence> out;
    for (std::size_t i = 0; i < n; ++i) {
        MaskedSequence s;
        const std::size_t prompt = 3 + rng() % 6, response = 2 + rng() % 5;
        for (std::size_t t = 0; t < prompt; ++t) s.tokens.push_back(static_cast<std::int32_t>(1 + rng() % 60));
        for (std::size_t t = 0; t < response; ++t) s.tokens.push_back(static_cast<std::int32_t>(1 + (s.tokens.back() * 7 + 3) % 60));
        s.loss_mask.assign(prompt, 0);
        s.loss_mask.resize(prompt + response, 1);
        out.push_back(std::move(s));
    }
    return out;
}

std::vector<PreferenceTriple> tiny_triples(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<PreferenceTriple> out;
    for (std::size_t i = 0; i < n; ++i) {
        PreferenceTriple t;
        for (std::size_t k = 0; k < 3 + rng() % 4; ++k) t.prompt.push_back(static_cast<std::int32_t>(1 + rng() % 60));
        for (std::size_t k = 0; k < 2 + rng() % 4; ++k) t.chosen.push_back(static_cast<std::int32_t>(1 + rng() % 30));
        for (std::size_t k = 0; k < 2 + rng() % 4; ++k) t.rejected.push_back(static_cast<std::int32_t>(31 + rng() % 30));
        out.push_back(std::move(t));
    }
    return out;
}

LoraAdapter tiny_adapter(const LlamaWeights& w, std::size_t rank = 4) {
    LoraConfig cfg;
    cfg.rank = rank;
    cfg.alpha = 8.0f;
    cfg.seed = 5;
    return LoraAdapter::create(w, cfg);
}

std::vector<std::byte> file_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(c.size());
    std::memcpy(out.data(), c.data(), c.size());
    return out;
}

TrainerConfig sft_config() {
    TrainerConfig c;
    c.steps = 6;
    c.batch_size = 4;
    c.micro_batch = 2;
    c.lr = 5e-3;
    c.warmup_steps = 2;
    c.lora_dropout = 0.1f;
    c.seed = 11;
    return c;
}

}  // namespace

TEST_CASE("AdamW: one step equals the decoupled-weight-decay update written out in double") {
    std::vector<float> p = {0.5f, -1.25f, 3.0f, 0.0f}, g = {0.1f, -0.2f, 0.0f, 1e-3f};
    const std::vector<float> p0 = p;
    AdamWConfig cfg;
    cfg.weight_decay = 0.1;
    AdamW opt({{"p", p.data(), g.data(), p.size()}}, cfg);
    std::vector<double> m(4, 0), v(4, 0), want(p0.begin(), p0.end());
    for (int t = 1; t <= 3; ++t) {
        const double lr = 0.01 * t;
        for (std::size_t i = 0; i < 4; ++i) {
            want[i] *= 1 - lr * cfg.weight_decay;
            m[i] = 0.9 * m[i] + 0.1 * g[i];
            v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
            const double mhat = m[i] / (1 - std::pow(0.9, t)), vhat = v[i] / (1 - std::pow(0.999, t));
            want[i] -= lr * mhat / (std::sqrt(vhat) + cfg.eps);
        }
        opt.step(lr);
    }
    for (std::size_t i = 0; i < 4; ++i) CHECK(p[i] == doctest::Approx(want[i]).epsilon(1e-6));
    CHECK(opt.steps() == 3);
}

TEST_CASE("global-norm clipping scales as torch's clip_grad_norm_ and reports the norm before clipping") {
    std::vector<float> a = {3.0f, 0.0f}, b = {4.0f}, va(2), vb(1);
    std::vector<ParameterRef> ps = {{"a", va.data(), a.data(), 2}, {"b", vb.data(), b.data(), 1}};
    CHECK(global_grad_norm(ps) == doctest::Approx(5.0));
    CHECK(clip_grad_norm(ps, 1.0) == doctest::Approx(5.0));
    CHECK(a[0] == doctest::Approx(3.0 / (5.0 + 1e-6)));
    CHECK(global_grad_norm(ps) == doctest::Approx(1.0).epsilon(1e-6));
    CHECK(clip_grad_norm(ps, 10.0) == doctest::Approx(1.0).epsilon(1e-6));  // below the limit: untouched
    CHECK(a[0] == doctest::Approx(3.0 / (5.0 + 1e-6)));
}

TEST_CASE("warm-up + cosine schedule: transformers' shape, with a floor") {
    const CosineSchedule s{1e-3, 10, 110, 0.0};
    CHECK(s.at(0) == 0.0);
    CHECK(s.at(5) == doctest::Approx(5e-4));
    CHECK(s.at(10) == doctest::Approx(1e-3));
    CHECK(s.at(60) == doctest::Approx(5e-4));  // half way down the cosine
    CHECK(s.at(110) == doctest::Approx(0.0));
    const CosineSchedule floor{1e-3, 0, 100, 0.1};
    CHECK(floor.at(0) == doctest::Approx(1e-3));
    CHECK(floor.at(100) == doctest::Approx(1e-4));
}

TEST_CASE("the data order visits every example once per epoch and depends only on seed and step") {
    LlamaWeights w = tiny_base(3);
    LoraAdapter adapter = tiny_adapter(w);
    TrainerConfig c = sft_config();
    c.batch_size = 5;
    c.micro_batch = 5;
    Trainer t(w, adapter, c);
    t.set_examples(tiny_examples(10, 1), 0);
    std::multiset<std::size_t> epoch0, epoch1;
    for (std::size_t s = 0; s < 2; ++s)
        for (std::size_t i : t.step_examples(s)) epoch0.insert(i);
    for (std::size_t s = 2; s < 4; ++s)
        for (std::size_t i : t.step_examples(s)) epoch1.insert(i);
    CHECK(epoch0 == std::multiset<std::size_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    CHECK(epoch1 == epoch0);
    const auto again = t.step_examples(1);
    CHECK(t.step_examples(3) != t.step_examples(1));
    CHECK(t.step_examples(1) == again);
}

TEST_CASE("gradient accumulation over micro-batches gives the one-batch update") {
    LlamaWeights w = tiny_base(4);
    const auto data = tiny_examples(8, 2);
    std::vector<std::vector<float>> after[2];
    std::vector<double> loss(2);
    for (int k = 0; k < 2; ++k) {
        LoraAdapter adapter = tiny_adapter(w);
        for (auto& p : adapter.pairs()) p.b.setConstant(0.01f);
        TrainerConfig c = sft_config();
        c.lora_dropout = 0.0f;
        c.warmup_steps = 0;
        c.batch_size = 8;
        c.micro_batch = k == 0 ? 8 : 2;
        Trainer t(w, adapter, c);
        t.set_examples(data, 0);
        loss[static_cast<std::size_t>(k)] = t.step().loss;
        for (const auto& p : adapter.pairs()) after[k].emplace_back(p.a.data(), p.a.data() + p.a.size());
    }
    CHECK(loss[1] == doctest::Approx(loss[0]).epsilon(1e-6));
    double worst = 0;
    for (std::size_t i = 0; i < after[0].size(); ++i)
        for (std::size_t j = 0; j < after[0][i].size(); ++j) worst = std::max(worst, static_cast<double>(std::abs(after[0][i][j] - after[1][i][j])));
    CHECK(worst < 1e-6);
}

TEST_CASE("SFT learns the masked responses and DPO separates chosen from rejected") {
    LlamaWeights w = tiny_base(6);
    {
        LoraAdapter adapter = tiny_adapter(w, 8);
        TrainerConfig c = sft_config();
        c.steps = 40;
        c.lora_dropout = 0.0f;
        c.lr = 2e-2;
        Trainer t(w, adapter, c);
        t.set_examples(tiny_examples(8, 3), 0);
        for (std::size_t s = 0; s < c.steps; ++s) t.step();
        const double first = t.history().front().loss, last = t.history().back().loss;
        MESSAGE("SFT loss " << first << " -> " << last);
        CHECK(last < 0.5 * first);
    }
    {
        LoraAdapter adapter = tiny_adapter(w, 8);
        TrainerConfig c = sft_config();
        c.objective = Objective::dpo;
        c.steps = 30;
        c.lora_dropout = 0.0f;
        c.lr = 2e-2;
        c.dpo_beta = 0.5;
        Trainer t(w, adapter, c);
        t.set_preferences(tiny_triples(8, 4), 0);
        for (std::size_t s = 0; s < c.steps; ++s) t.step();
        const StepRecord& first = t.history().front();
        const StepRecord& last = t.history().back();
        MESSAGE("DPO loss " << first.loss << " -> " << last.loss << ", accuracy " << last.accuracy);
        CHECK(first.loss == doctest::Approx(std::log(2.0)).epsilon(1e-6));  // the policy starts as the reference
        CHECK(last.loss < 0.3);
        CHECK(last.accuracy == 1.0);
        CHECK(last.reward_chosen > last.reward_rejected);
    }
}

TEST_CASE("a run is bit-identical for 1 and 2 threads") {
    LlamaWeights w = tiny_base(7);
    std::vector<std::vector<std::byte>> saved;
    for (int threads : {1, 2}) {
        set_num_threads(threads);
        LoraAdapter adapter = tiny_adapter(w);
        Trainer t(w, adapter, sft_config());
        t.set_examples(tiny_examples(12, 5), 0);
        for (int s = 0; s < 3; ++s) t.step();
        const auto path = test_fixtures::temp_dir("trainer") / ("threads" + std::to_string(threads) + ".gguf");
        adapter.save(path, "llama");
        saved.push_back(file_bytes(path));
    }
    set_num_threads(2);
    CHECK(saved[0] == saved[1]);
}

TEST_CASE("a run resumed from its checkpoint ends with the same adapter bytes as one never stopped (SFT and DPO)") {
    LlamaWeights w = tiny_base(8);
    const auto dir = test_fixtures::temp_dir("trainer_resume");
    for (Objective objective : {Objective::sft, Objective::dpo}) {
        TrainerConfig c = sft_config();
        c.objective = objective;
        auto make = [&](LoraAdapter& adapter) {
            auto t = std::make_unique<Trainer>(w, adapter, c);
            if (objective == Objective::sft) t->set_examples(tiny_examples(10, 6), 0);
            else t->set_preferences(tiny_triples(10, 6), 0);
            return t;
        };
        LoraAdapter straight = tiny_adapter(w);
        auto full = make(straight);
        for (std::size_t s = 0; s < c.steps; ++s) full->step();
        straight.save(dir / "straight.gguf", "llama");

        LoraAdapter first_half = tiny_adapter(w);
        auto part = make(first_half);
        for (int s = 0; s < 3; ++s) part->step();
        part->save_checkpoint(dir / "ckpt.gguf");
        part.reset();

        LoraAdapter resumed = tiny_adapter(w);  // fresh values, overwritten by the checkpoint
        auto rest = make(resumed);
        rest->resume(dir / "ckpt.gguf");
        CHECK(rest->steps_done() == 3);
        while (rest->steps_done() < c.steps) rest->step();
        resumed.save(dir / "resumed.gguf", "llama");
        CHECK(file_bytes(dir / "straight.gguf") == file_bytes(dir / "resumed.gguf"));
        for (std::size_t s = 0; s < c.steps; ++s) CHECK(rest->history()[s].loss == full->history()[s].loss);

        // Another configuration must not continue this checkpoint.
        TrainerConfig other = c;
        other.lr *= 2;
        LoraAdapter a2 = tiny_adapter(w);
        Trainer t2(w, a2, other);
        CHECK_THROWS_WITH_AS(t2.resume(dir / "ckpt.gguf"), doctest::Contains("other settings"), config_error);

        // Nor the same configuration on other data (one example more, or the same count with other tokens).
        for (std::size_t n : {11, 10}) {
            LoraAdapter a3 = tiny_adapter(w);
            Trainer t3(w, a3, c);
            if (objective == Objective::sft) t3.set_examples(tiny_examples(n, n == 10 ? 60 : 6), 0);
            else t3.set_preferences(tiny_triples(n, n == 10 ? 60 : 6), 0);
            CHECK_THROWS_WITH_AS(t3.resume(dir / "ckpt.gguf"), doctest::Contains("other training data"), config_error);
        }
    }
}

TEST_CASE("a non-finite loss stops the run at its step and leaves the adapter as it was") {
    LlamaWeights w = tiny_base(9);
    LoraAdapter adapter = tiny_adapter(w);
    Trainer t(w, adapter, sft_config());
    t.set_examples(tiny_examples(8, 7), 0);
    t.step();
    adapter.pairs()[3].b(0, 0) = std::numeric_limits<float>::quiet_NaN();
    const float other = adapter.pairs()[5].a(1, 2);
    CHECK_THROWS_WITH_AS(t.step(), doctest::Contains("step 2: the loss is not finite"), numeric_error);
    CHECK(adapter.pairs()[5].a(1, 2) == other);
    CHECK(t.steps_done() == 1);
}

TEST_CASE("training input errors say what is wrong") {
    LlamaWeights w = tiny_base(10);
    LoraAdapter adapter = tiny_adapter(w);
    TrainerConfig c = sft_config();
    c.batch_size = 3;
    CHECK_THROWS_WITH_AS(Trainer(w, adapter, c), doctest::Contains("multiple of the micro-batch"), config_error);
    Trainer t(w, adapter, sft_config());
    auto data = tiny_examples(4, 8);
    data[2].tokens.assign(65, 1);
    data[2].loss_mask.assign(65, 1);
    CHECK_THROWS_WITH_AS(t.set_examples(data, 0), doctest::Contains("example 2 is 65 tokens, longer than the context (64)"), config_error);
    data[2].tokens.resize(10);
    data[2].loss_mask.assign(10, 0);
    CHECK_THROWS_WITH_AS(t.set_examples(data, 0), doctest::Contains("example 2 has no response tokens"), config_error);
    CHECK_THROWS_WITH_AS(t.set_preferences(tiny_triples(2, 1), 0), doctest::Contains("given to an SFT trainer"), config_error);
}

TEST_CASE("the training record: a CSV row per step (DPO adds rewards, margin, accuracy) and an SVG of the curves") {
    std::vector<StepRecord> history(3);
    for (std::size_t i = 0; i < 3; ++i) {
        history[i].step = i + 1;
        history[i].loss = 0.7 - 0.1 * static_cast<double>(i);
        history[i].reward_chosen = 0.1 * static_cast<double>(i);
        history[i].reward_rejected = -0.05 * static_cast<double>(i);
        history[i].accuracy = 0.5;
    }
    const std::string sft = training_csv(history, Objective::sft), dpo = training_csv(history, Objective::dpo);
    CHECK(sft.starts_with("step,lr,loss,grad_norm,tokens,seconds\n"));
    CHECK(std::count(sft.begin(), sft.end(), '\n') == 4);
    CHECK(dpo.starts_with("step,lr,loss,grad_norm,tokens,seconds,reward_chosen,reward_rejected,reward_margin,accuracy\n"));
    CHECK(dpo.find("\n3,0,0.500000,0.000000,0,0.000,0.200000,-0.100000,0.300000,0.5000\n") != std::string::npos);
    const std::string svg = training_curves_svg(history, Objective::dpo, "a <title> & more");
    CHECK(svg.starts_with("<svg"));
    CHECK(std::count(svg.begin(), svg.end(), '\n') > 10);
    CHECK(svg.find("a &lt;title&gt; &amp; more") != std::string::npos);
    CHECK(svg.find("<polyline") != std::string::npos);
}
