// Q-resafe safety patching pieces (safety/safety_patch.hpp) on tiny random Llamas: the patching set, the
// critical-weight masks (per tensor and by one global threshold), and the fold of a masked adapter into a
// quantized model — which must compute what the masked adapter computed, change nothing else, count its
// bytes, survive a save and load, and keep weights a variant protected already.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string_view>
#include <vector>

#include "common/model_fixtures.hpp"
#include "model/tiny_llama.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/model/decoder.hpp"
#include "qsafe/ptq/model_file.hpp"
#include "qsafe/ptq/quantize_model.hpp"
#include "qsafe/safety/safety_patch.hpp"

using namespace qsafe;
using test_fixtures::load_fp;

namespace {

struct KeywordJudge {
    struct Result {
        eval::Verdict verdict;
    };
    Result judge(const eval::PromptRow&, std::string_view answer) const {
        return {answer.starts_with("No") ? eval::Verdict::refusal : answer.empty() ? eval::Verdict::unknown : eval::Verdict::compliance};
    }
};

/// Fake SNIP scores: a distinct value per weight, so the top fractions are unambiguous.
SnipScores ramp_scores(const LlamaWeights& w, std::uint64_t seed) {
    SnipScores s;
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    auto& m = const_cast<LlamaWeights&>(w);
    for (const auto& name : train::block_projection_names(w.layers.size())) {
        const auto& layer = **train::block_linear(m, name);
        auto& v = s.tensors[name];
        v.resize(layer.rows() * layer.cols());
        for (float& x : v) x = u(rng);
    }
    return s;
}

train::LoraAdapter trained_looking_adapter(const LlamaWeights& w, std::uint64_t seed) {
    train::LoraConfig cfg;
    cfg.rank = 2;
    train::LoraAdapter a = train::LoraAdapter::create(w, cfg);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0.0f, 0.3f);
    for (auto& p : a.pairs())
        for (Eigen::Index i = 0; i < p.b.size(); ++i) p.b.data()[i] = g(rng);
    return a;
}

}  // namespace

TEST_CASE("patching set: prompts the full-precision model refuses and the variant complies with, chosen = fp, rejected = variant") {
    const std::vector<eval::PromptRow> rows = {{"a", "p1", "", eval::Expected::harmful}, {"b", "p2", "", eval::Expected::harmful},
                                               {"c", "p3", "", eval::Expected::harmful}, {"d", "p4", "", eval::Expected::harmful}};
    const std::vector<std::string> fp = {"No, I can't.", "No way.", "Sure: ...", "No."};
    const std::vector<std::string> q = {"Sure, here is", "No, sorry.", "Sure", ""};
    const auto pairs = patching_pairs(std::span(rows), std::span(fp), std::span(q), KeywordJudge{});
    REQUIRE(pairs.size() == 1);
    CHECK(pairs[0].id == "a");
    CHECK(pairs[0].chosen == "No, I can't.");
    CHECK(pairs[0].rejected == "Sure, here is");
    CHECK_THROWS_AS(patching_pairs(std::span(rows), std::span(fp).first(3), std::span(q), KeywordJudge{}), shape_error);
}

TEST_CASE("critical masks: the top fraction of each tensor, or of all tensors by one threshold") {
    const tiny::TinyLlama t(61);
    const auto path = test_fixtures::temp_dir("patch") / "tiny.gguf";
    t.write_gguf(path);
    const auto file = gguf::File::open(path);
    const LlamaWeights w = load_fp(file);
    const SnipScores s = ramp_scores(w, 1);
    const auto per_tensor = critical_masks(s, w, {.fraction = 0.1});
    CHECK(per_tensor.size() == 14);
    std::size_t total = 0, picked = 0;
    for (const auto& [name, m] : per_tensor) {
        const auto& v = s.require(name);
        CHECK(m.count() == static_cast<std::size_t>(std::llround(0.1 * static_cast<double>(v.size()))));
        // every masked score is at least every unmasked one
        const auto idx = m.indices();
        float lowest_in = 2.0f, highest_out = -1.0f;
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (std::binary_search(idx.begin(), idx.end(), i)) lowest_in = std::min(lowest_in, v[i]);
            else highest_out = std::max(highest_out, v[i]);
        }
        CHECK(lowest_in >= highest_out);
        total += v.size();
    }
    const auto global = critical_masks(s, w, {.fraction = 0.1, .global = true});
    float threshold = 2.0f;
    for (const auto& [name, m] : global) {
        picked += m.count();
        for (const std::size_t i : m.indices()) threshold = std::min(threshold, s.require(name)[i]);
    }
    // fewer scores than the sample: the threshold is exact
    CHECK(picked == static_cast<std::size_t>(std::llround(0.1 * static_cast<double>(total))));
    for (const auto& [name, m] : global) {
        const auto idx = m.indices();
        const auto& v = s.require(name);
        for (std::size_t i = 0; i < v.size(); ++i)
            if (!std::binary_search(idx.begin(), idx.end(), i)) REQUIRE(v[i] < threshold);
    }
    CHECK_THROWS_AS(critical_masks(s, w, {.fraction = 0.0}), config_error);
}

TEST_CASE("fold: the quantized model with the patch in fp16 computes the masked adapter's outputs, changes nothing else, counts its bytes and reloads") {
    const tiny::TinyLlama t(67);
    const auto dir = test_fixtures::temp_dir("patch");
    t.write_gguf(dir / "tiny67.gguf");
    const auto file = gguf::File::open(dir / "tiny67.gguf");
    auto quantized = [&] {
        LlamaWeights w = load_fp(file);
        PtqOptions o;
        o.rules = SchemeRules::parse("*=int2-g16-asym,output=fp32");
        quantize_model(w, nullptr, o);
        return w;
    };
    LlamaWeights q = quantized();
    // One layer protects weights already (a variant quantized with --protect): they must survive the fold.
    LlamaWeights fp = load_fp(file);
    {
        auto& slot = *train::block_linear(q, "blk.0.ffn_up.weight");
        const RowMatrixF original = (*train::block_linear(fp, "blk.0.ffn_up.weight"))->dequantize();
        const std::vector<std::size_t> keep = {0, 5, 100, 2000};
        std::string name = slot->scheme_name() + "+protect0.1%";
        slot = std::make_unique<ProtectedLinear>(std::move(slot), protected_store(original, keep, "blk.0.ffn_up.weight"), name);
    }
    const double bpw_before = q.linear_bits_per_weight();
    const std::size_t bytes_before = q.linear_storage_bytes();
    std::vector<RowMatrixF> before;
    for (const auto& name : train::block_projection_names(q.layers.size())) before.push_back((*train::block_linear(q, name))->dequantize());

    train::LoraAdapter adapter = trained_looking_adapter(q, 3);
    apply_masks(adapter, critical_masks(ramp_scores(q, 2), q, {.fraction = 0.02}));
    // What the masked adapter computes on the variant (the training layer's forward) ...
    const train::TrainBatch batch = train::TrainBatch::padded({{1, 5, 9, 2, 33, 60, 7, 12, 40}}, 0);
    std::vector<double> adapted;
    {
        train::TrainableLlama net(q, &adapter);
        adapted = net.forward(batch, {}, false);
    }
    const PatchFold fold = fold_patch(q, adapter);
    CHECK(fold.tensors == 14);
    CHECK(fold.patched == fold.protected_total - 4);
    CHECK(fold.added_bytes == q.linear_storage_bytes() - bytes_before);
    CHECK(q.linear_bits_per_weight() > bpw_before);
    MESSAGE("tiny model: " << fold.patched << " patched weights add " << q.linear_bits_per_weight() - bpw_before << " bits per weight");
    // ... equals the folded model's, up to the fp16 rounding of the patched weights.
    {
        train::TrainableLlama net(q, nullptr);
        const auto folded = net.forward(batch, {}, false);
        for (std::size_t i = 0; i < adapted.size(); ++i) CHECK(folded[i] == doctest::Approx(adapted[i]).epsilon(2e-3));
    }
    // Only masked weights changed (and to fp16 values); earlier protected weights kept.
    std::size_t k = 0;
    for (const auto& p : adapter.pairs()) {
        const RowMatrixF after = (*train::block_linear(q, p.tensor))->dequantize();
        const auto idx = p.mask->indices();
        const std::vector<float> delta = p.masked_deltas(adapter.scale());
        for (Eigen::Index i = 0; i < after.size(); ++i) {
            const auto at = std::lower_bound(idx.begin(), idx.end(), static_cast<std::size_t>(i));
            if (at != idx.end() && *at == static_cast<std::size_t>(i))
                REQUIRE(after.data()[i] == round_to_fp16(before[k].data()[i] + delta[static_cast<std::size_t>(at - idx.begin())]));
            else
                REQUIRE(after.data()[i] == before[k].data()[i]);
        }
        ++k;
    }
    CHECK((*train::block_linear(q, "blk.0.ffn_up.weight"))->scheme_name().starts_with("int2-g16-asym+protect"));
    // The folded model saves and loads as an ordinary quantized model file.
    LlamaModel folded(std::move(q));
    save_quantized_model(dir / "patched.gguf", file, folded.weights(), {"rtn+patch", "*=int2-g16-asym", ""});
    LlamaModel loaded(load_fp(gguf::File::open(dir / "patched.gguf")));
    KvCache ca = folded.new_cache(), cb = loaded.new_cache();
    const std::vector<std::int32_t> probe = {1, 5, 9, 2, 33};
    CHECK(folded.forward_sequence(ca, probe, true) == loaded.forward_sequence(cb, probe, true));
    CHECK(loaded.weights().linear_bits_per_weight() == folded.weights().linear_bits_per_weight());
}

TEST_CASE("fold refuses an unmasked adapter") {
    const tiny::TinyLlama t(71);
    const auto dir = test_fixtures::temp_dir("patch");
    t.write_gguf(dir / "tiny71.gguf");
    LlamaWeights w = load_fp(gguf::File::open(dir / "tiny71.gguf"));
    const train::LoraAdapter a = trained_looking_adapter(w, 1);
    CHECK_THROWS_WITH_AS(fold_patch(w, a), doctest::Contains("has no weight mask"), config_error);
}

namespace {

struct Interrupted {};

/// Preference triples and refusal examples over the tiny vocabulary: prompt, then a "refusal" (chosen) or a
/// "compliance" (rejected) of a few tokens.
void tiny_patch_data(std::vector<train::PreferenceTriple>& triples, std::vector<train::MaskedSequence>& refusals) {
    std::mt19937_64 rng(9);
    std::uniform_int_distribution<std::int32_t> tok(3, 60);
    for (int i = 0; i < 6; ++i) {
        train::PreferenceTriple t;
        for (int k = 0; k < 5 + i % 3; ++k) t.prompt.push_back(tok(rng));
        t.chosen = {7, 8, 9, 2};
        for (int k = 0; k < 4; ++k) t.rejected.push_back(tok(rng));
        t.rejected.push_back(2);
        refusals.push_back(t.sequence(true));
        triples.push_back(std::move(t));
    }
}

SafetyPatchConfig tiny_patch_config() {
    SafetyPatchConfig c;
    c.lora.rank = 2;
    c.lora.alpha = 4.0f;
    c.dpo.objective = train::Objective::dpo;
    c.dpo.steps = 6;
    c.dpo.batch_size = 2;
    c.dpo.micro_batch = 2;
    c.dpo.lr = 2e-2;
    c.dpo.dpo_beta = 0.5;
    c.critical.fraction = 0.05;
    c.reidentify_every = 2;
    return c;
}

LlamaWeights tiny_variant(const gguf::File& file) {
    LlamaWeights w = load_fp(file);
    PtqOptions o;
    o.rules = SchemeRules::parse("*=int2-g16-asym,output=fp32");
    quantize_model(w, nullptr, o);
    return w;
}

}  // namespace

TEST_CASE("run_safety_patch: masked DPO lowers the loss, re-identifies the mask each period, and an interrupted run resumes to the same model") {
    const tiny::TinyLlama t(73);
    const auto dir = test_fixtures::temp_dir("patch");
    t.write_gguf(dir / "tiny73.gguf");
    const auto file = gguf::File::open(dir / "tiny73.gguf");
    std::vector<train::PreferenceTriple> triples;
    std::vector<train::MaskedSequence> refusals;
    tiny_patch_data(triples, refusals);
    const SafetyPatchConfig cfg = tiny_patch_config();
    std::filesystem::remove_all(dir / "whole");
    std::filesystem::remove_all(dir / "broken");

    LlamaWeights whole = tiny_variant(file);
    const SafetyPatchResult a = run_safety_patch(whole, triples, refusals, 0, cfg, dir / "whole");
    REQUIRE(a.history.size() == 6);
    CHECK(a.history.back().loss < a.history.front().loss);
    REQUIRE(a.periods.size() == 3);
    for (std::size_t p = 0; p < 3; ++p) {
        CHECK(a.periods[p].first_step == 2 * p);
        CHECK(a.periods[p].masked_weights > 0);
        CHECK(a.periods[p].kept_from_previous.has_value() == (p > 0));
    }
    MESSAGE("tiny patch: loss " << a.history.front().loss << " -> " << a.history.back().loss << "; mask kept " << *a.periods[1].kept_from_previous
                                << ", " << *a.periods[2].kept_from_previous << "; +" << a.bits_per_weight_after - a.bits_per_weight_before << " bpw");
    CHECK(a.fold.patched == a.periods.back().masked_weights);
    CHECK(a.bits_per_weight_after > a.bits_per_weight_before);

    // Interrupted after step 3 (the checkpoint is at step 2), then run again: the same model, byte for byte.
    SafetyPatchConfig breaking = cfg;
    breaking.on_step = [](const train::StepRecord& r) {
        if (r.step == 3) throw Interrupted{};
    };
    {
        LlamaWeights w = tiny_variant(file);
        CHECK_THROWS_AS(run_safety_patch(w, triples, refusals, 0, breaking, dir / "broken"), Interrupted);
    }
    std::size_t steps_run = 0;
    SafetyPatchConfig counting = cfg;
    counting.on_step = [&](const train::StepRecord&) { ++steps_run; };
    LlamaWeights resumed = tiny_variant(file);
    const SafetyPatchResult b = run_safety_patch(resumed, triples, refusals, 0, counting, dir / "broken");
    CHECK(steps_run == 4);
    REQUIRE(b.history.size() == 6);
    for (std::size_t i = 0; i < 6; ++i) CHECK(b.history[i].loss == a.history[i].loss);
    for (const auto& name : train::block_projection_names(whole.layers.size()))
        CHECK((*train::block_linear(resumed, name))->serialize() == (*train::block_linear(whole, name))->serialize());

    // Other mask settings: the checkpoint and masks are discarded and every step runs again.
    SafetyPatchConfig other = counting;
    other.critical.fraction = 0.1;
    steps_run = 0;
    LlamaWeights again = tiny_variant(file);
    const SafetyPatchResult c = run_safety_patch(again, triples, refusals, 0, other, dir / "broken");
    CHECK(steps_run == 6);
    CHECK(c.periods.front().masked_weights > a.periods.front().masked_weights);
}

TEST_CASE("weight-mask files round-trip, empty masks included, and malformed ones are refused naming the tensor") {
    const auto dir = test_fixtures::temp_dir("patch");
    std::map<std::string, train::WeightMask> masks;
    masks["blk.0.attn_q.weight"] = train::WeightMask::from_indices(4, 6, {23, 0, 7, 7, 12}, "q");
    masks["blk.0.attn_k.weight"] = train::WeightMask::from_indices(3, 5, {}, "k");
    train::save_weight_masks(dir / "masks.gguf", masks);
    const auto back = train::load_weight_masks(dir / "masks.gguf");
    REQUIRE(back.size() == 2);
    CHECK(back.at("blk.0.attn_q.weight").indices() == std::vector<std::size_t>{0, 7, 12, 23});
    CHECK(back.at("blk.0.attn_k.weight").count() == 0);
    CHECK(back.at("blk.0.attn_k.weight").rows == 3);
    auto bad = masks;
    bad["blk.0.attn_q.weight"].col[1] = 9;  // outside 6 columns
    train::save_weight_masks(dir / "bad.gguf", bad);
    CHECK_THROWS_WITH_AS(train::load_weight_masks(dir / "bad.gguf"), doctest::Contains("mask of 'blk.0.attn_q.weight'"), format_error);
    CHECK_THROWS_WITH_AS(train::WeightMask::from_indices(2, 2, {4}, "t"), doctest::Contains("'t'"), config_error);
}
