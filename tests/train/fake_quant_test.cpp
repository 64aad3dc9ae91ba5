// STE quantization-aware training (train/fake_quant.hpp) on tiny random Llamas: the fake-quantized forward is
// the scheme's own RTN model, training lowers the loss of the quantized model, the exported packed model
// computes what training computed, and bad rules are refused.
#include <doctest/doctest.h>

#include <filesystem>
#include <tuple>
#include <vector>

#include "common/model_fixtures.hpp"
#include "common/tiny_weights.hpp"
#include "qsafe/train/adamw.hpp"
#include "qsafe/train/fake_quant.hpp"
#include "qsafe/train/objectives.hpp"
#include "qsafe/train/trainer.hpp"

using namespace qsafe;
using namespace qsafe::train;

namespace {

LlamaWeights qat_tiny_weights(std::uint64_t seed, bool tied = false, const char* rules = "*=fp32") {
    return test_fixtures::tiny_weights("qat", seed, tied, rules);
}

const std::vector<std::int32_t> qat_sequence = {3, 17, 60, 0, 42, 42, 9, 31, 5, 58, 1, 22, 47, 8, 8, 19, 33, 2, 7, 50};

/// Mean next-token cross-entropy of every position of the sequence under `model`.
double sequence_loss(LlamaModel& model) {
    const RowMatrixF logits = test_fixtures::all_logits(model, qat_sequence);
    double loss = 0;
    for (std::size_t t = 0; t + 1 < qat_sequence.size(); ++t) {
        const auto row = logits.row(static_cast<Eigen::Index>(t)).cast<double>();
        const double max = row.maxCoeff();
        loss -= row(qat_sequence[t + 1]) - max - std::log((row.array() - max).exp().sum());
    }
    return loss / static_cast<double>(qat_sequence.size() - 1);
}

}  // namespace

TEST_CASE("STE: the fake-quantized forward is the scheme's RTN model, and 30 steps lower the quantized model's loss") {
    const char* rules = "blk.*=int2-g16-asym,output=int2-g16-asym";
    LlamaModel rtn(qat_tiny_weights(61, false, rules));
    const double rtn_loss = sequence_loss(rtn);
    LlamaWeights w = qat_tiny_weights(61);
    FakeQuantizedLlama qat(w, SchemeRules::parse(rules));
    CHECK(qat.covered_layers() == 2 * 7 + 1);
    TrainableLlama net(w, nullptr, {.full_gradients = true});
    const TrainBatch batch = TrainBatch::padded({qat_sequence}, 0);
    {
        // Before any step the fake-quantized forward is RTN under the same rules, position by position.
        const RowMatrixF mine = net.logits(batch);
        const RowMatrixF ref = test_fixtures::all_logits(rtn, qat_sequence);
        CHECK((mine.topRows(ref.rows()) - ref).cwiseAbs().maxCoeff() <= 1e-4f * ref.cwiseAbs().maxCoeff());
    }
    net.zero_base_gradients();
    AdamW optimizer(qat.parameters(net), {.weight_decay = 0.0});
    const RowMatrixF start = qat.master("blk.0.attn_q.weight");
    std::vector<std::uint8_t> mask(batch.size(), 1);
    mask[0] = 0;
    std::vector<double> dlogp;
    double first = 0, last = 0;
    for (int step = 0; step < 30; ++step) {
        net.zero_base_gradients();
        const auto logp = net.forward(batch, mask);
        const double loss = sft_loss(logp, mask, static_cast<double>(qat_sequence.size() - 1), dlogp);
        if (step == 0) first = loss;
        last = loss;
        net.backward(dlogp);
        optimizer.step(1e-2);
        qat.fake_quantize();
        net.refresh_weight_caches();
    }
    MESSAGE("fake-quantized loss " << first << " -> " << last << " (RTN model before training: " << rtn_loss << ")");
    CHECK(first == doctest::Approx(rtn_loss).epsilon(1e-4));
    CHECK(last < 0.8 * first);
    CHECK((qat.master("blk.0.attn_q.weight") - start).cwiseAbs().maxCoeff() > 0.0f);  // the masters moved

    // The packed export computes what the last fake-quantized forward computed.
    const RowMatrixF trained = net.logits(batch);
    qat.export_packed();
    CHECK(w.layers[0].wq->scheme_name() == "int2-g16-asym");
    CHECK(w.output->scheme_name() == "int2-g16-asym");
    LlamaModel packed(std::move(w));
    const RowMatrixF ref = test_fixtures::all_logits(packed, qat_sequence);
    CHECK((trained.topRows(ref.rows()) - ref).cwiseAbs().maxCoeff() <= 1e-4f * ref.cwiseAbs().maxCoeff());
    CHECK(sequence_loss(packed) < 0.8 * rtn_loss);
}

TEST_CASE("STE: rules that do not resolve, or a scheme for a tied output layer, are refused before anything changes") {
    LlamaWeights w = qat_tiny_weights(67, true);
    CHECK_THROWS_WITH_AS(FakeQuantizedLlama(w, SchemeRules::parse("blk.*=int2-g16-asym,output=int2-g16-asym")),
                         doctest::Contains("output.weight: the output layer is the token embedding"), config_error);
    CHECK_THROWS_WITH_AS(FakeQuantizedLlama(w, SchemeRules::parse("blk.1.ffn_up=int9-g16-asym")),
                         doctest::Contains("blk.1.ffn_up.weight: unknown quantization scheme"), config_error);
    CHECK_THROWS_WITH_AS(FakeQuantizedLlama(w, SchemeRules::parse("blk.7.*=int2-g16-asym")), doctest::Contains("cover no linear layer"), config_error);
    CHECK(w.layers[0].wq->scheme_name() == "fp32");
    const FakeQuantizedLlama fine(w, SchemeRules::parse("blk.*=int2-g16-asym"));
    CHECK(fine.covered_layers() == 14);
}

TEST_CASE("STE through the Trainer: SFT steps lower the loss, and a run resumed from a checkpoint ends with the same masters and packed layers") {
    const char* rules = "blk.*=int2-g16-asym";
    auto examples = [] {
        std::vector<MaskedSequence> out;
        for (int i = 0; i < 4; ++i) {
            MaskedSequence s;
            for (std::size_t t = 0; t < qat_sequence.size(); ++t) s.tokens.push_back((qat_sequence[t] + 7 * i) % 61);
            s.loss_mask.assign(s.tokens.size(), 1);
            std::fill(s.loss_mask.begin(), s.loss_mask.begin() + 5, 0);
            out.push_back(s);
        }
        return out;
    };
    TrainerConfig c;
    c.steps = 8;
    c.batch_size = 2;
    c.micro_batch = 1;
    c.lr = 1e-2;
    const auto dir = test_fixtures::temp_dir("qat");
    auto run = [&](std::size_t steps, const std::filesystem::path* resume_from, const std::filesystem::path* save_to) {
        LlamaWeights w = qat_tiny_weights(71);
        FakeQuantizedLlama qat(w, SchemeRules::parse(rules));
        TrainerConfig cc = c;
        Trainer trainer(w, qat, cc);
        trainer.set_examples(examples(), 0);
        if (resume_from) trainer.resume(*resume_from);
        while (trainer.steps_done() < steps) trainer.step();
        if (save_to) trainer.save_checkpoint(*save_to);
        std::vector<double> losses;
        for (const auto& r : trainer.history()) losses.push_back(r.loss);
        const RowMatrixF master = qat.master("blk.1.ffn_down.weight");
        qat.export_packed();
        return std::make_tuple(losses, master, w.layers[1].w_down->serialize());
    };
    const auto [losses, master, packed] = run(8, nullptr, nullptr);
    MESSAGE("STE SFT through the Trainer: loss " << losses.front() << " -> " << losses.back());
    CHECK(losses.back() < losses.front());
    const auto ckpt = dir / "qat.ckpt.gguf";
    (void)run(3, nullptr, &ckpt);
    const auto [losses2, master2, packed2] = run(8, &ckpt, nullptr);
    CHECK(losses2 == losses);
    CHECK(master2 == master);
    CHECK(packed2 == packed);
    // LoRA dropout means nothing without an adapter.
    LlamaWeights w = qat_tiny_weights(71);
    FakeQuantizedLlama qat(w, SchemeRules::parse(rules));
    TrainerConfig dropout = c;
    dropout.lora_dropout = 0.1f;
    CHECK_THROWS_WITH_AS(Trainer(w, qat, dropout), doctest::Contains("dropout"), config_error);
}
