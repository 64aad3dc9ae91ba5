// The training layer on tiny random Llamas (tests/model/tiny_llama.hpp): its forward pass against the
// decoder's logits, every parameter's gradient against central finite differences of the whole model's
// loss, the NEOX RoPE layout against the adjacent-pair layout on permuted weights, LoRA over a quantized
// base, merging, adapter files, and thread-count independence.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "common/model_fixtures.hpp"
#include "common/tiny_weights.hpp"
#include "model/tiny_llama.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/train/objectives.hpp"
#include "qsafe/train/trainable_llama.hpp"

using namespace qsafe;
using namespace qsafe::train;
using test_fixtures::temp_dir;

namespace {

LlamaWeights tiny_weights(std::uint64_t seed, bool tied = false, const char* rules = "*=fp32") {
    return test_fixtures::tiny_weights("train", seed, tied, rules);
}

TrainBatch tiny_batch() {
    // Three sequences of different lengths (right-padded with 0), tokens of the 61-token vocabulary.
    return TrainBatch::padded({{3, 17, 60, 0, 42, 42, 9, 31, 5, 58, 1, 22, 47, 8, 8, 19, 33, 2, 7, 50},
                               {12, 4, 4, 30, 59, 21, 6, 18, 40, 11, 3},
                               {9, 9, 1, 45, 27, 36, 14, 52, 5, 23, 38, 44, 2, 16}},
                              0);
}

/// Random coefficients for every position ≥ 1 (zero on a few, as a loss mask would): the loss Σ c·logp.
std::vector<double> coefficients(const TrainBatch& b, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g(0.0, 1.0);
    std::vector<double> c(b.size(), 0.0);
    for (std::size_t i = 0; i < c.size(); ++i)
        if (i % b.length != 0 && i % 5 != 2) c[i] = g(rng);
    return c;
}

double loss(TrainableLlama& m, const TrainBatch& b, const std::vector<double>& c) {
    const std::vector<double> logp = m.forward(b);
    double s = 0;
    for (std::size_t i = 0; i < c.size(); ++i) s += c[i] * logp[i];
    return s;
}

/// Compares analytic gradient entries with central differences of the loss for a sample of entries of one
/// parameter tensor; returns ‖g_fd − g‖ / ‖g_fd‖ over the sample.
double fd_relative_error(TrainableLlama& m, const TrainBatch& b, const std::vector<double>& c, float* values, const float* grad,
                         std::size_t n, std::size_t samples, std::uint64_t seed, const std::function<void()>& after_change = {},
                         float h = 2e-3f) {
    std::mt19937_64 rng(seed);
    double err = 0, norm = 0;
    for (std::size_t k = 0; k < std::min(samples, n); ++k) {
        const std::size_t i = samples >= n ? k : static_cast<std::size_t>(rng() % n);
        const float keep = values[i];
        values[i] = keep + h;
        if (after_change) after_change();
        const double up = loss(m, b, c);
        values[i] = keep - h;
        if (after_change) after_change();
        const double down = loss(m, b, c);
        values[i] = keep;
        if (after_change) after_change();
        const double fd = (up - down) / (2.0 * static_cast<double>(h));
        err += (fd - grad[i]) * (fd - grad[i]);
        norm += fd * fd;
    }
    return norm > 0 ? std::sqrt(err / norm) : 0.0;
}

}  // namespace

TEST_CASE("training forward pass: the decoder's logits at every position of every sequence") {
    for (const bool tied : {false, true}) {
        LlamaModel model(tiny_weights(21, tied));
        TrainableLlama trainable(model.mutable_weights(), nullptr);
        TrainBatch batch = tiny_batch();
        const RowMatrixF logits = trainable.logits(batch);
        const std::vector<std::size_t> lengths = {20, 11, 14};
        double worst = 0;
        for (std::size_t s = 0; s < batch.sequences; ++s) {
            const std::vector<std::int32_t> seq(batch.tokens.begin() + static_cast<std::ptrdiff_t>(s * batch.length),
                                                batch.tokens.begin() + static_cast<std::ptrdiff_t>(s * batch.length + lengths[s]));
            const RowMatrixF ref = test_fixtures::all_logits(model, seq);
            for (Eigen::Index t = 0; t < ref.rows(); ++t) {
                const auto row = logits.row(static_cast<Eigen::Index>(s * batch.length) + t);
                worst = std::max(worst, static_cast<double>((row - ref.row(t)).cwiseAbs().maxCoeff() / ref.row(t).cwiseAbs().maxCoeff()));
            }
        }
        MESSAGE("tied=" << tied << ": largest |logit difference| / largest |logit| over all positions: " << worst);
        CHECK(worst <= 1e-6);
    }
}

TEST_CASE("whole-model gradients of every fp32 parameter match central finite differences (tiny Llama, GQA, untied and tied)") {
    for (const bool tied : {false, true}) {
        LlamaModel model(tiny_weights(23, tied));
        LlamaWeights& w = model.mutable_weights();
        TrainableLlama m(w, nullptr, {.full_gradients = true});
        const TrainBatch b = tiny_batch();
        const std::vector<double> c = coefficients(b, 5);
        const std::vector<double> logp = m.forward(b);
        m.backward(c);
        BaseGradients& g = m.base_gradients();
        auto refresh = [&] { m.refresh_weight_caches(); };
        auto dense = [](std::unique_ptr<QuantizedLinear>& q) { return &dynamic_cast<DenseLinear&>(*q).mutable_weights(); };
        struct Case {
            std::string name;
            float* values;
            const float* grad;
            std::size_t n;
            bool linear;
        };
        std::vector<Case> cases;
        // A tied model's output layer is a copy of the embedding: perturb both together.
        for (std::size_t l = 0; l < w.layers.size(); ++l) {
            auto& L = w.layers[l];
            auto& G = g.layers[l];
            const std::string p = "blk." + std::to_string(l) + ".";
            cases.push_back({p + "attn_norm", L.attn_norm.data(), G.attn_norm.data(), static_cast<std::size_t>(L.attn_norm.size()), false});
            cases.push_back({p + "ffn_norm", L.ffn_norm.data(), G.ffn_norm.data(), static_cast<std::size_t>(L.ffn_norm.size()), false});
            std::unique_ptr<QuantizedLinear>* layers[] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
            RowMatrixF* grads[] = {&G.wq, &G.wk, &G.wv, &G.wo, &G.w_gate, &G.w_up, &G.w_down};
            for (std::size_t k = 0; k < 7; ++k)
                cases.push_back({p + block_projections[k], dense(*layers[k])->data(), grads[k]->data(), static_cast<std::size_t>(grads[k]->size()), true});
        }
        cases.push_back({"output_norm", w.output_norm.data(), g.output_norm.data(), static_cast<std::size_t>(w.output_norm.size()), false});
        if (!tied) cases.push_back({"output", dense(w.output)->data(), g.output.data(), static_cast<std::size_t>(g.output.size()), true});
        for (const Case& k : cases) {
            const double err = fd_relative_error(m, b, c, k.values, k.grad, k.n, 24, 99, k.linear ? std::function<void()>(refresh) : std::function<void()>());
            INFO(k.name << (tied ? " (tied)" : ""));
            CHECK(err < 5e-3);
        }
        // The embedding: only the rows of tokens in the batch have a gradient; for a tied model the same
        // entry of the output matrix moves with it.
        RowMatrixF& out = *dense(w.output);
        std::mt19937_64 rng(7);
        double err = 0, norm = 0;
        for (int k = 0; k < 24; ++k) {
            const auto token = static_cast<Eigen::Index>(b.tokens[rng() % b.tokens.size()]);
            const auto col = static_cast<Eigen::Index>(rng() % static_cast<std::uint64_t>(w.token_embedding.cols()));
            const float keep = w.token_embedding(token, col), h = 2e-3f;
            auto set = [&](float v) {
                w.token_embedding(token, col) = v;
                if (tied) out(token, col) = v;
                m.refresh_weight_caches();
            };
            set(keep + h);
            const double up = loss(m, b, c);
            set(keep - h);
            const double down = loss(m, b, c);
            set(keep);
            const double fd = (up - down) / (2.0 * h);
            err += (fd - g.token_embedding(token, col)) * (fd - g.token_embedding(token, col));
            norm += fd * fd;
        }
        INFO("token_embd" << (tied ? " (tied: embedding + output)" : ""));
        CHECK(std::sqrt(err / norm) < 5e-3);
    }
}

TEST_CASE("q/k/v bias gradients (Qwen2-style blocks) match finite differences") {
    LlamaWeights w = tiny_weights(29);
    w.config.qkv_bias = true;
    std::mt19937_64 rng(3);
    std::normal_distribution<float> gauss(0.0f, 0.3f);
    for (auto& L : w.layers) {
        for (auto* bias : {&L.bq, &L.bk, &L.bv}) {
            const std::size_t n = bias == &L.bq ? w.config.n_heads * w.config.head_dim : w.config.n_kv_heads * w.config.head_dim;
            bias->resize(static_cast<Eigen::Index>(n));
            for (float& v : *bias) v = gauss(rng);
        }
    }
    TrainableLlama m(w, nullptr, {.full_gradients = true});
    const TrainBatch b = tiny_batch();
    const std::vector<double> c = coefficients(b, 8);
    m.forward(b);
    m.backward(c);
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
        auto& L = w.layers[l];
        auto& G = m.base_gradients().layers[l];
        for (auto [v, gr] : {std::pair{&L.bq, &G.bq}, std::pair{&L.bk, &G.bk}, std::pair{&L.bv, &G.bv}})
            CHECK(fd_relative_error(m, b, c, v->data(), gr->data(), static_cast<std::size_t>(v->size()), 16, 4) < 5e-3);
    }
}

TEST_CASE("LoRA gradients (A and B, every projection) match finite differences") {
    LlamaModel model(tiny_weights(31));
    LoraConfig cfg;
    cfg.rank = 3;
    cfg.alpha = 6.0f;
    cfg.seed = 4;
    LoraAdapter adapter = LoraAdapter::create(model.weights(), cfg);
    CHECK(adapter.pairs().size() == 14);
    // B starts at zero (PEFT): give it values so A's gradient is not zero too.
    std::mt19937_64 rng(2);
    std::normal_distribution<float> gauss(0.0f, 0.2f);
    for (auto& p : adapter.pairs())
        for (Eigen::Index i = 0; i < p.b.size(); ++i) p.b.data()[i] = gauss(rng);
    TrainableLlama m(model.mutable_weights(), &adapter);
    const TrainBatch b = tiny_batch();
    const std::vector<double> c = coefficients(b, 9);
    m.forward(b);
    m.backward(c);
    for (auto& p : adapter.pairs()) {
        INFO(p.tensor);
        CHECK(fd_relative_error(m, b, c, p.a.data(), p.grad_a.data(), static_cast<std::size_t>(p.a.size()), 12, 5) < 5e-3);
        CHECK(fd_relative_error(m, b, c, p.b.data(), p.grad_b.data(), static_cast<std::size_t>(p.b.size()), 12, 6) < 5e-3);
    }
}

TEST_CASE("NEOX RoPE on Hugging Face-order q/k weights gives the adjacent-pair model's log-probabilities and gradients") {
    const tiny::TinyLlama t(37);
    LlamaWeights gguf_order = tiny_weights(37);
    LlamaWeights hf_order = tiny_weights(37);
    for (std::size_t l = 0; l < hf_order.layers.size(); ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
        hf_order.layers[l].wq = std::make_unique<DenseLinear>(t.w.at(p + "q_proj.weight"));
        hf_order.layers[l].wk = std::make_unique<DenseLinear>(t.w.at(p + "k_proj.weight"));
    }
    TrainableLlama adjacent(gguf_order, nullptr, {.full_gradients = true});
    TrainableLlama neox(hf_order, nullptr, {.rope_layout = train::ops::RopeLayout::neox, .full_gradients = true});
    const TrainBatch b = tiny_batch();
    const std::vector<double> c = coefficients(b, 10);
    const auto la = adjacent.forward(b), ln = neox.forward(b);
    for (std::size_t i = 0; i < la.size(); ++i) CHECK(la[i] == doctest::Approx(ln[i]).epsilon(1e-5));
    adjacent.backward(c);
    neox.backward(c);
    // Gradients of the unpermuted parts agree directly; q's rows agree after llama.cpp's permutation.
    const auto& ga = adjacent.base_gradients().layers[1];
    const auto& gn = neox.base_gradients().layers[1];
    CHECK((ga.w_down - gn.w_down).norm() <= 1e-4 * ga.w_down.norm());
    CHECK((ga.attn_norm - gn.attn_norm).norm() <= 1e-4 * ga.attn_norm.norm());
    const RowMatrixF permuted = tiny::TinyLlama::to_gguf_rows(gn.wq, t.heads);
    CHECK((ga.wq - permuted).norm() <= 1e-4 * ga.wq.norm());
}

TEST_CASE("LoRA over a quantized base: products on the packed weights, gradients close to the dequantized fp32 base's") {
    LlamaModel quantized(tiny_weights(41, false, "*=int2-g16-asym,output=fp32"));
    LlamaWeights dense_base = tiny_weights(41, false, "*=int2-g16-asym,output=fp32");
    for (auto& L : dense_base.layers)
        for (auto* q : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) *q = std::make_unique<DenseLinear>((*q)->dequantize());
    CHECK(quantized.weights().layers[0].wq->scheme_name() == "int2-g16-asym");
    LoraConfig cfg;
    cfg.rank = 2;
    cfg.targets = "attn_*,ffn_down";
    LoraAdapter a1 = LoraAdapter::create(quantized.weights(), cfg), a2 = LoraAdapter::create(dense_base, cfg);
    CHECK(a1.pairs().size() == 10);
    for (auto* a : {&a1, &a2})
        for (auto& p : a->pairs()) p.b.setConstant(0.05f);
    TrainableLlama m1(quantized.mutable_weights(), &a1), m2(dense_base, &a2);
    const TrainBatch b = tiny_batch();
    const auto c = coefficients(b, 11);
    const auto l1 = m1.forward(b), l2 = m2.forward(b);
    double diff = 0;
    for (std::size_t i = 0; i < l1.size(); ++i) diff = std::max(diff, std::abs(l1[i] - l2[i]));
    MESSAGE("int2-g16 base vs its dequantized fp32 copy: max |Δ log p| " << diff);
    CHECK(diff < 1e-3);
    m1.backward(c);
    m2.backward(c);
    for (std::size_t k = 0; k < a1.pairs().size(); ++k) {
        const auto &p1 = a1.pairs()[k], &p2 = a2.pairs()[k];
        CHECK((p1.grad_a - p2.grad_a).norm() <= 1e-2 * p2.grad_a.norm());
        CHECK((p1.grad_b - p2.grad_b).norm() <= 1e-2 * p2.grad_b.norm());
    }
}

TEST_CASE("merging an adapter gives the adapted model's outputs and adapter files round-trip") {
    LlamaModel model(tiny_weights(43));
    LoraConfig cfg;
    cfg.rank = 4;
    cfg.alpha = 16;
    cfg.targets = "blk.1.*,attn_q";
    LoraAdapter adapter = LoraAdapter::create(model.weights(), cfg);
    CHECK(adapter.pairs().size() == 8);  // blk.1's seven + blk.0.attn_q
    for (auto& p : adapter.pairs()) p.b.setConstant(0.03f);
    const TrainBatch b = tiny_batch();
    TrainableLlama adapted(model.mutable_weights(), &adapter);
    const auto before = adapted.forward(b);

    const auto path = test_fixtures::temp_dir("train") / "adapter.gguf";
    adapter.save(path, "llama");
    LoraAdapter loaded = LoraAdapter::load(path);
    REQUIRE(loaded.pairs().size() == adapter.pairs().size());
    CHECK(loaded.alpha() == 16.0f);
    CHECK(loaded.rank() == 4);
    for (std::size_t k = 0; k < loaded.pairs().size(); ++k) {
        CHECK(loaded.pairs()[k].tensor == adapter.pairs()[k].tensor);
        CHECK(loaded.pairs()[k].a == adapter.pairs()[k].a);
        CHECK(loaded.pairs()[k].b == adapter.pairs()[k].b);
    }
    const gguf::File file = gguf::File::open(path);
    CHECK(file.get<std::string>("general.type") == "adapter");
    CHECK(file.get<std::string>("adapter.type") == "lora");
    const auto& ta = file.tensor("blk.0.attn_q.weight.lora_a");
    CHECK(ta.dims == std::vector<std::uint64_t>{48, 4});

    loaded.merge_into(model.mutable_weights());
    TrainableLlama merged(model.mutable_weights(), nullptr);
    const auto after = merged.forward(b);
    for (std::size_t i = 0; i < before.size(); ++i) CHECK(after[i] == doctest::Approx(before[i]).epsilon(1e-4));
}

TEST_CASE("adapter errors name what is wrong") {
    LlamaModel model(tiny_weights(47));
    LoraConfig cfg;
    cfg.targets = "attn_q,ffn_nothing";
    CHECK_THROWS_WITH_AS(LoraAdapter::create(model.weights(), cfg), doctest::Contains("'ffn_nothing' matches no block projection"), config_error);
    cfg.targets = "attn_q";
    cfg.rank = 0;
    CHECK_THROWS_AS(LoraAdapter::create(model.weights(), cfg), config_error);
    TrainableLlama m(model.mutable_weights(), nullptr);
    TrainBatch b = tiny_batch();
    b.tokens[5] = 61;
    CHECK_THROWS_WITH(m.forward(b), doctest::Contains("token id 61 at sequence 0, position 5"));
}

TEST_CASE("gradients are bit-identical for 1 and 2 threads") {
    LlamaModel model(tiny_weights(53));
    LoraConfig cfg;
    cfg.rank = 4;
    cfg.dropout = 0.1f;
    LoraAdapter adapter = LoraAdapter::create(model.weights(), cfg);
    for (auto& p : adapter.pairs()) p.b.setConstant(0.02f);
    const TrainBatch b = tiny_batch();
    const auto c = coefficients(b, 12);
    std::vector<RowMatrixF> grads[2];
    for (int threads : {1, 2}) {
        set_num_threads(threads);
        adapter.zero_grad();
        TrainableLlama m(model.mutable_weights(), &adapter);
        m.set_dropout(0.1f, 77);
        m.forward(b);
        m.backward(c);
        for (const auto& p : adapter.pairs()) {
            grads[threads - 1].push_back(p.grad_a);
            grads[threads - 1].push_back(p.grad_b);
        }
    }
    set_num_threads(2);
    for (std::size_t k = 0; k < grads[0].size(); ++k) CHECK(grads[0][k] == grads[1][k]);
}

TEST_CASE("kept and recomputed block internals give the same gradients (activation budget 0 vs default)") {
    LlamaModel model(tiny_weights(57));
    LoraConfig cfg;
    cfg.rank = 4;
    LoraAdapter adapter = LoraAdapter::create(model.weights(), cfg);
    for (auto& p : adapter.pairs()) p.b.setConstant(0.03f);
    const TrainBatch b = tiny_batch();
    const auto c = coefficients(b, 21);
    std::vector<RowMatrixF> grads[2];
    std::vector<double> logp[2];
    for (int k = 0; k < 2; ++k) {
        TrainableOptions options;
        if (k == 1) options.activation_budget = 0;
        adapter.zero_grad();
        TrainableLlama m(model.mutable_weights(), &adapter, options);
        m.set_dropout(0.2f, 5);
        logp[k] = m.forward(b);
        m.backward(c);
        for (const auto& p : adapter.pairs()) grads[k].push_back(p.grad_a), grads[k].push_back(p.grad_b);
    }
    CHECK(logp[0] == logp[1]);
    for (std::size_t i = 0; i < grads[0].size(); ++i) CHECK(grads[0][i] == grads[1][i]);
}

TEST_CASE("packed rows (several sequences per row) give the padded batch's log-probabilities and gradients") {
    LlamaModel model(tiny_weights(61));
    LoraConfig cfg;
    cfg.rank = 4;
    LoraAdapter adapter = LoraAdapter::create(model.weights(), cfg);
    for (auto& p : adapter.pairs()) p.b.setConstant(0.02f);
    std::vector<MaskedSequence> seqs;
    std::mt19937_64 rng(8);
    for (std::size_t len : {9, 14, 5, 20, 11, 7}) {
        MaskedSequence s;
        for (std::size_t t = 0; t < len; ++t) s.tokens.push_back(static_cast<std::int32_t>(rng() % 61));
        s.loss_mask.assign(len, 1);
        s.loss_mask[0] = s.loss_mask[1] = 0;
        seqs.push_back(std::move(s));
    }
    std::vector<double> per_seq[2];
    std::vector<RowMatrixF> grads[2];
    for (int k = 0; k < 2; ++k) {
        const MaskedBatch b = MaskedBatch::from(seqs, 0, k == 0 ? 0 : 30);
        if (k == 1) CHECK(b.batch.sequences < seqs.size());  // really packed
        adapter.zero_grad();
        TrainableLlama m(model.mutable_weights(), &adapter);
        const std::vector<double> logp = m.forward(b.batch, b.mask);
        per_seq[k] = sequence_log_probs(logp, b);
        std::vector<double> c(seqs.size());
        for (std::size_t i = 0; i < c.size(); ++i) c[i] = 0.3 * static_cast<double>(i) - 0.7;
        m.backward(spread_sequence_gradient(c, b));
        for (const auto& p : adapter.pairs()) grads[k].push_back(p.grad_a), grads[k].push_back(p.grad_b);
    }
    for (std::size_t i = 0; i < seqs.size(); ++i) CHECK(per_seq[1][i] == doctest::Approx(per_seq[0][i]).epsilon(1e-5));
    for (std::size_t i = 0; i < grads[0].size(); ++i) CHECK((grads[1][i] - grads[0][i]).norm() <= 1e-4 * grads[0][i].norm() + 1e-9);
}

namespace {

/// A random mask over each pair of `adapter` keeping about `fraction` of its positions.
void mask_randomly(LoraAdapter& adapter, double fraction, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (auto& p : adapter.pairs()) {
        std::vector<std::size_t> picked;
        for (std::size_t i = 0; i < p.out_features() * p.in_features(); ++i)
            if (u(rng) < fraction) picked.push_back(i);
        p.mask = WeightMask::from_indices(p.out_features(), p.in_features(), picked, p.tensor);
    }
}

void randomize_b(LoraAdapter& adapter, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> gauss(0.0f, 0.2f);
    for (auto& p : adapter.pairs())
        for (Eigen::Index i = 0; i < p.b.size(); ++i) p.b.data()[i] = gauss(rng);
}

}  // namespace

TEST_CASE("masked LoRA: a mask over every position computes plain LoRA's log-probabilities and gradients") {
    LlamaModel model(tiny_weights(43, false, "*=int2-g16-asym,output=fp32"));
    LoraConfig cfg;
    cfg.rank = 2;
    cfg.targets = "attn_q,attn_output,ffn_up,ffn_down";
    LoraAdapter plain = LoraAdapter::create(model.weights(), cfg), masked = LoraAdapter::create(model.weights(), cfg);
    randomize_b(plain, 3);
    randomize_b(masked, 3);
    mask_randomly(masked, 1.1, 1);  // every position
    TrainableLlama mp(model.mutable_weights(), &plain), mm(model.mutable_weights(), &masked);
    const TrainBatch b = tiny_batch();
    const auto c = coefficients(b, 12);
    const auto lp = mp.forward(b), lm = mm.forward(b);
    for (std::size_t i = 0; i < lp.size(); ++i) CHECK(lm[i] == doctest::Approx(lp[i]).epsilon(1e-5));
    mp.backward(c);
    mm.backward(c);
    for (std::size_t k = 0; k < plain.pairs().size(); ++k) {
        const auto &p = plain.pairs()[k], &m = masked.pairs()[k];
        INFO(p.tensor);
        CHECK((p.grad_a - m.grad_a).norm() <= 1e-4 * p.grad_a.norm());
        CHECK((p.grad_b - m.grad_b).norm() <= 1e-4 * p.grad_b.norm());
    }
}

TEST_CASE("masked LoRA: gradients of A and B match finite differences, with and without dropout, over a quantized base") {
    for (const float dropout : {0.0f, 0.25f}) {
        CAPTURE(dropout);
        LlamaModel model(tiny_weights(47, false, "*=int2-g16-asym,output=fp32"));
        LoraConfig cfg;
        cfg.rank = 3;
        cfg.alpha = 6.0f;
        LoraAdapter adapter = LoraAdapter::create(model.weights(), cfg);
        randomize_b(adapter, 5);
        mask_randomly(adapter, 0.15, 2);
        TrainableLlama m(model.mutable_weights(), &adapter);
        m.set_dropout(dropout, 17);
        const TrainBatch b = tiny_batch();
        const auto c = coefficients(b, 13);
        m.forward(b);
        m.backward(c);
        for (auto& p : adapter.pairs()) {
            INFO(p.tensor);
            CHECK(p.mask->count() > 0);
            CHECK(fd_relative_error(m, b, c, p.a.data(), p.grad_a.data(), static_cast<std::size_t>(p.a.size()), 10, 7) < 5e-3);
            CHECK(fd_relative_error(m, b, c, p.b.data(), p.grad_b.data(), static_cast<std::size_t>(p.b.size()), 10, 8) < 5e-3);
        }
    }
}

TEST_CASE("masked LoRA: merging changes the masked weights only and gives the adapted model's outputs") {
    LlamaModel model(tiny_weights(53));
    LoraConfig cfg;
    cfg.rank = 2;
    LoraAdapter adapter = LoraAdapter::create(model.weights(), cfg);
    randomize_b(adapter, 6);
    mask_randomly(adapter, 0.05, 3);
    TrainableLlama m(model.mutable_weights(), &adapter);
    const TrainBatch b = tiny_batch();
    const auto adapted = m.forward(b, {}, false);
    LlamaWeights merged = tiny_weights(53);
    adapter.merge_into(merged);
    for (const auto& p : adapter.pairs()) {
        const RowMatrixF before = (*block_linear(model.mutable_weights(), p.tensor))->dequantize();
        const RowMatrixF after = (*block_linear(merged, p.tensor))->dequantize();
        const std::vector<std::size_t> kept = p.mask->indices();
        std::size_t changed = 0, outside = 0;
        for (Eigen::Index i = 0; i < before.size(); ++i)
            if (before.data()[i] != after.data()[i]) {
                ++changed;
                if (!std::binary_search(kept.begin(), kept.end(), static_cast<std::size_t>(i))) ++outside;
            }
        CHECK(outside == 0);
        CHECK(changed > 0);
    }
    TrainableLlama plain(merged, nullptr);
    const auto folded = plain.forward(b, {}, false);
    for (std::size_t i = 0; i < adapted.size(); ++i) CHECK(folded[i] == doctest::Approx(adapted[i]).epsilon(1e-5));
    CHECK_THROWS_WITH_AS(adapter.save(temp_dir("train") / "masked.gguf", "llama"), doctest::Contains("masked LoRA adapter"), config_error);
}
