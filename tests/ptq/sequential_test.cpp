// Sequential calibration (ptq/sequential.hpp): with nothing quantized it sees exactly what the ordinary
// collection sees; with quantization each block's statistics come from the quantized blocks before it.
#include <doctest/doctest.h>

#include <filesystem>
#include <random>
#include <unistd.h>

#include "common/skip.hpp"
#include "model/tiny_llama.hpp"
#include "qsafe/calib/collect.hpp"
#include "qsafe/model/model_loader.hpp"
#include "qsafe/ptq/quantize_model.hpp"
#include "qsafe/ptq/sequential.hpp"

#include "common/model_fixtures.hpp"

using namespace qsafe;
using test_fixtures::all_logits;
using test_fixtures::load_fp;
using test_fixtures::probe;
using test_fixtures::temp_dir;

namespace {
std::vector<std::vector<std::int32_t>> random_samples(const std::vector<std::size_t>& lengths, std::size_t vocab, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<std::int32_t> tok(0, static_cast<std::int32_t>(vocab) - 1);
    std::vector<std::vector<std::int32_t>> out;
    for (const std::size_t len : lengths) {
        out.emplace_back(len);
        for (auto& t : out.back()) t = tok(rng);
    }
    return out;
}
double mean_kl(LlamaModel& p_model, LlamaModel& q_model, const std::vector<std::vector<std::int32_t>>& samples) {
    double total = 0.0;
    std::size_t n = 0;
    for (const auto& s : samples) {
        const RowMatrixF p = all_logits(p_model, s), q = all_logits(q_model, s);
        for (Eigen::Index i = 0; i < p.rows(); ++i) {
            const Eigen::ArrayXd lp = p.row(i).cast<double>().array() - std::log(p.row(i).cast<double>().array().exp().sum());
            const Eigen::ArrayXd lq = q.row(i).cast<double>().array() - std::log(q.row(i).cast<double>().array().exp().sum());
            total += (lp.exp() * (lp - lq)).sum();
            ++n;
        }
    }
    return total / static_cast<double>(n);
}
}  // namespace

TEST_CASE("sequential calibration with every layer fp32 gathers the ordinary collection's statistics and keeps the model") {
    const tiny::TinyLlama t(61, true);
    const auto dir = temp_dir("sequential_fp");
    t.write_gguf(dir / "tiny.gguf");
    const auto file = gguf::File::open(dir / "tiny.gguf");
    // Lengths that make chunks of one and of two samples (chunk_tokens 30), and an empty sample.
    const auto samples = random_samples({20, 5, 0, 7, 20, 13}, t.vocab, 3);
    LlamaModel fp(load_fp(file));
    CollectOptions co;
    co.output_stride = 4;
    const CalibrationStats reference = collect_calibration_stats(fp, samples, co);

    LlamaModel model(load_fp(file));
    PtqOptions opt;  // "*=fp32", rtn
    SequentialOptions so;
    so.output_stride = 4;
    so.chunk_tokens = 30;
    std::size_t steps = 0;
    so.progress = [&](std::size_t done, std::size_t total, double) {
        CHECK(total == t.layers + 1);
        steps = done;
    };
    const SequentialResult r = quantize_model_sequential(model, samples, opt, so);
    CHECK(steps == t.layers + 1);
    CHECK(r.layers.size() == 7 * t.layers + 1);
    REQUIRE(r.stats.sites.size() == reference.sites.size());
    for (const auto& [site, ref] : reference.sites) {
        CAPTURE(site);
        REQUIRE(r.stats.sites.count(site) == 1);
        const LinearInputStats& s = r.stats.sites.at(site);
        CHECK(s.tokens == ref.tokens);
        const float scale = ref.hessian.cwiseAbs().maxCoeff();
        CHECK((s.hessian - ref.hessian).cwiseAbs().maxCoeff() <= 1e-5f * scale);
        CHECK((s.sum_abs - ref.sum_abs).cwiseAbs().maxCoeff() <= 1e-5f * ref.sum_abs.cwiseAbs().maxCoeff());
        CHECK((s.sum_sq - ref.sum_sq).cwiseAbs().maxCoeff() <= 1e-5f * ref.sum_sq.cwiseAbs().maxCoeff());
        CHECK((s.max_abs - ref.max_abs).cwiseAbs().maxCoeff() <= 1e-5f * ref.max_abs.cwiseAbs().maxCoeff());
    }
    CHECK(all_logits(model, probe) == all_logits(fp, probe));
}

TEST_CASE("sequential GPTQ and AWQ on the tiny model: each block calibrated on the quantized model's own inputs") {
    const tiny::TinyLlama t(67, true);
    const auto dir = temp_dir("sequential_tiny");
    t.write_gguf(dir / "tiny.gguf");
    const auto file = gguf::File::open(dir / "tiny.gguf");
    LlamaModel fp(load_fp(file));
    const auto samples = random_samples(std::vector<std::size_t>(8, 32), t.vocab, 17);
    CollectOptions co;
    co.output_stride = 1;  // 256 calibration tokens: the output layer needs them all for a full-rank Hessian
    const CalibrationStats stats = collect_calibration_stats(fp, samples, co);
    const std::string rules = "*=int3-g32-asym";

    auto ordinary = [&](PtqMethod method) {
        LlamaModel m(load_fp(file));
        CalibrationStats s = stats;
        PtqOptions opt;
        opt.rules = SchemeRules::parse(rules);
        opt.method = method;
        quantize_model(m.mutable_weights(), &s, opt);
        return m;
    };
    LlamaModel rtn = ordinary(PtqMethod::rtn);
    const double kl_rtn = mean_kl(fp, rtn, samples);
    for (const PtqMethod method : {PtqMethod::gptq, PtqMethod::awq}) {
        const std::string name = ptq_method_name(method);
        CAPTURE(name);
        LlamaModel seq(load_fp(file));
        PtqOptions opt;
        opt.rules = SchemeRules::parse(rules);
        opt.method = method;
        SequentialOptions so;
        so.chunk_tokens = 1;  // one sample per chunk: block 0 sees exactly what the ordinary collection sees
        so.output_stride = 1;
        const SequentialResult r = quantize_model_sequential(seq, samples, opt, so);
        LlamaModel plain = ordinary(method);

        // Block 0 reads the embeddings either way; block 1 was fitted to the quantized block 0's outputs.
        const auto& a = seq.weights().layers, &b = plain.weights().layers;
        CHECK(a[0].wq->dequantize() == b[0].wq->dequantize());
        CHECK(a[0].w_down->dequantize() == b[0].w_down->dequantize());
        CHECK(a[1].wq->dequantize() != b[1].wq->dequantize());
        // A block's input site depends only on the blocks before it (and, after AWQ, its folded norm), so the
        // statistics it was quantized with are those of the finished model.
        const CalibrationStats after = collect_calibration_stats(seq, samples, co);
        for (std::size_t l = 0; l < t.layers; ++l) {
            const std::string site = "blk." + std::to_string(l) + ".attn_in";
            CAPTURE(site);
            const Eigen::MatrixXf& h = r.stats.sites.at(site).hessian;
            CHECK((h - after.sites.at(site).hessian).cwiseAbs().maxCoeff() <= 1e-4f * h.cwiseAbs().maxCoeff());
        }
        CHECK((r.stats.sites.at("output").hessian - after.sites.at("output").hessian).cwiseAbs().maxCoeff() <=
              1e-4f * r.stats.sites.at("output").hessian.cwiseAbs().maxCoeff());
        CHECK(stats.sites.at("blk.1.attn_in").hessian != after.sites.at("blk.1.attn_in").hessian);

        // A random tiny model has none of the structure these methods exploit: only check the result is sane.
        const double kl_seq = mean_kl(fp, seq, samples), kl_plain = mean_kl(fp, plain, samples);
        MESSAGE("tiny model, " << rules << ", " << name << ": KL rtn " << kl_rtn << ", ordinary " << kl_plain
                               << ", sequential " << kl_seq);
        CHECK(kl_seq < 1.5 * kl_plain);
    }
}

TEST_CASE("sequential GPTQ on SmolLM2 with a few short samples runs, is deterministic, and differs from the ordinary run") {
    const auto path = default_model_path();
    if (!std::filesystem::exists(path)) {
        test_fixtures::skip_test("SmolLM2 model not found at " + path.string() + " (scripts/fetch_model.sh fetches it)");
        return;
    }
    const auto samples = random_samples({48, 48, 32}, 49152, 5);
    PtqOptions opt;
#if defined(__SANITIZE_ADDRESS__)
    // The sanitizer build is about ten times slower: blocks 0-2 only.
    opt.rules = SchemeRules::parse("blk.0.*=int4-g128-asym,blk.1.*=int4-g128-asym,blk.2.*=int4-g128-asym");
    constexpr std::size_t last_quantized = 2;
#else
    opt.rules = SchemeRules::parse("blk.?.*=int4-g128-asym");  // blocks 0-9 only, to keep the test short
    constexpr std::size_t last_quantized = 9;
#endif
    opt.method = PtqMethod::gptq;
    SequentialOptions so;
    so.chunk_tokens = 1;  // one sample per chunk, as the ordinary collection adds them: block 0 identical
    auto sequential = [&] {
        auto m = load_model(path);
        quantize_model_sequential(m.model, samples, opt, so);
        return m;
    };
    auto a = sequential(), b = sequential();
    auto plain = load_model(path);
    {
        auto fp = load_model(path);
        CalibrationStats stats = collect_calibration_stats(fp.model, samples);
        quantize_model(plain.model.mutable_weights(), &stats, opt);
    }
    const std::vector<std::int32_t> tokens = {1, 504, 3458, 282, 4649, 314, 253, 1345, 30, 378, 2};
    const RowMatrixF la = all_logits(a.model, tokens), lb = all_logits(b.model, tokens), lp = all_logits(plain.model, tokens);
    CHECK(la == lb);
    CHECK(la.allFinite());
    const auto& wa = a.model.weights().layers, &wp = plain.model.weights().layers;
    CHECK(wa[0].wq->dequantize() == wp[0].wq->dequantize());  // block 0's inputs are the embeddings either way
    CHECK(wa[last_quantized].w_down->dequantize() != wp[last_quantized].w_down->dequantize());
    CHECK(wa[last_quantized + 1].wq->scheme_name() == "fp32");
    CHECK(la != lp);
    MESSAGE("SmolLM2 sequential vs ordinary GPTQ: max logit difference " << (la - lp).cwiseAbs().maxCoeff());
}
