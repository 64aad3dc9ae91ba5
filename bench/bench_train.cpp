// One LoRA training step (forward + backward + clipping + AdamW) of SmolLM2-135M-Instruct at 8 × 256 tokens,
// the shape of tools/reference/torch_lora_speed.py — over an fp32 base, and QLoRA-style over int4 and NF4
// bases running on their packed weights — and one STE quantization-aware training step (full parameters:
// every block projection fake-quantized, gradients to the fp32 masters, AdamW, scales re-fitted), beside the
// machine's fp32 GEMM rate measured in the same run. Reports tokens/s (items/s) and, as counters, the step's linear-layer GFLOP and the rate at
// which the whole step runs them (a lower bound on the rate of the linear layers themselves).
//   bench_train                                  (QSAFE_MODEL or QSAFE_CACHE_DIR select the model file)
//   bench_train --benchmark_filter=gemm          the fp32 GEMM peer alone
#include <benchmark/benchmark.h>

#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "qsafe/core/fp32_blas.hpp"
#include "qsafe/model/model_loader.hpp"
#include "qsafe/train/adamw.hpp"
#include "qsafe/train/fake_quant.hpp"
#include "qsafe/train/trainer.hpp"

namespace {

const char* const base_schemes[] = {"fp32", "int4-g128-asym", "nf4-g64"};
const char* const ste_schemes[] = {"int4-g128-asym", "int3-g128-asym"};
constexpr std::size_t sequences = 8, length = 256;

qsafe::LoadedModel* model_for(const std::string& scheme) {
    static std::map<std::string, std::unique_ptr<qsafe::LoadedModel>> cache;
    auto& slot = cache[scheme];
    if (!slot && std::filesystem::exists(qsafe::default_model_path())) {
        qsafe::LoadOptions lo;
        lo.build_linear = qsafe::rtn_builder(qsafe::SchemeRules::parse("*=" + scheme + ",output=fp32"));
        slot = std::make_unique<qsafe::LoadedModel>(qsafe::load_model(qsafe::default_model_path(), lo));
    }
    return slot.get();
}

/// Floating-point operations of the frozen linear layers in one step: the forward pass (blocks and the
/// output layer), the output layer's d log p / d(state) product kept by the forward pass, and the input
/// gradients through the blocks (no block is recomputed when the activation budget holds them all).
double step_linear_flop(const qsafe::LlamaConfig& c, double tokens) {
    const double d = static_cast<double>(c.d_model), ff = static_cast<double>(c.d_ff);
    const double q = static_cast<double>(c.n_heads * c.head_dim), kv = static_cast<double>(c.n_kv_heads * c.head_dim);
    const double block = static_cast<double>(c.n_layers) * (d * q + 2 * d * kv + q * d + 3 * d * ff);
    const double head = static_cast<double>(c.vocab_size) * d;
    return 4.0 * tokens * (block + head);
}

void bm_lora_step(benchmark::State& state) {
    qsafe::LoadedModel* m = model_for(base_schemes[state.range(0)]);
    if (!m) return state.SkipWithError("model not found; run scripts/fetch_model.sh");
    qsafe::set_num_threads(static_cast<int>(state.range(1)));
    state.SetLabel(std::string(base_schemes[state.range(0)]) + " base, LoRA r16 all projections, 8x256");
    qsafe::train::LoraConfig lc;
    lc.rank = 16;
    lc.alpha = 32;
    qsafe::train::LoraAdapter adapter = qsafe::train::LoraAdapter::create(m->model.weights(), lc);
    qsafe::train::TrainerConfig tc;
    tc.batch_size = tc.micro_batch = sequences;
    tc.steps = 1000;
    qsafe::train::Trainer trainer(m->model.mutable_weights(), adapter, tc);
    std::mt19937_64 rng(1);
    std::vector<qsafe::train::MaskedSequence> data(sequences);
    for (auto& s : data) {
        for (std::size_t t = 0; t < length; ++t) s.tokens.push_back(static_cast<std::int32_t>(rng() % 49000));
        s.loss_mask.assign(length, 1);
    }
    trainer.set_examples(data, 2);
    for (auto _ : state) benchmark::DoNotOptimize(trainer.step());
    const double tokens = static_cast<double>(sequences * length);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(tokens));
    state.counters["linear_GFLOP"] = step_linear_flop(m->model.config(), tokens) * 1e-9;
    state.counters["linear_GFLOPs"] =
        benchmark::Counter(step_linear_flop(m->model.config(), tokens) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

/// STE: the forward and backward pass through fake-quantized block projections (full gradients), clipping,
/// AdamW on the masters and norms, and re-fitting every scale on the updated masters.
void bm_ste_step(benchmark::State& state) {
    if (!std::filesystem::exists(qsafe::default_model_path())) return state.SkipWithError("model not found; run scripts/fetch_model.sh");
    qsafe::set_num_threads(static_cast<int>(state.range(1)));
    const std::string scheme = ste_schemes[state.range(0)];
    state.SetLabel("STE " + scheme + " (blk.*), full parameters, 8x256");
    qsafe::LoadedModel m = qsafe::load_model(qsafe::default_model_path());
    qsafe::LlamaWeights& w = m.model.mutable_weights();
    qsafe::train::FakeQuantizedLlama qat(w, qsafe::SchemeRules::parse("blk.*=" + scheme));
    qsafe::train::TrainableLlama net(w, nullptr, {.full_gradients = true});
    net.zero_base_gradients();
    const auto params = qat.parameters(net);
    qsafe::train::AdamW optimizer(params, {});
    std::mt19937_64 rng(1);
    std::vector<std::vector<std::int32_t>> seqs(sequences);
    for (auto& s : seqs)
        for (std::size_t t = 0; t < length; ++t) s.push_back(static_cast<std::int32_t>(rng() % 49000));
    const qsafe::train::TrainBatch batch = qsafe::train::TrainBatch::padded(seqs, 2);
    std::vector<double> dlogp(batch.size(), -1.0 / static_cast<double>(batch.size()));
    for (auto _ : state) {
        net.zero_base_gradients();
        benchmark::DoNotOptimize(net.forward(batch));
        net.backward(dlogp);
        qsafe::train::clip_grad_norm(params, 1.0);
        optimizer.step(1e-5);
        qat.fake_quantize();
        net.refresh_weight_caches();
    }
    const double tokens = static_cast<double>(sequences * length);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(tokens));
}

/// The fp32 GEMM rate of qsafe's back end on the step's largest shape (2048 tokens × 576 → 1536).
void bm_fp32_gemm(benchmark::State& state) {
    qsafe::set_num_threads(static_cast<int>(state.range(0)));
    const Eigen::Index n = 2048, in = 576, out = 1536;
    const qsafe::RowMatrixF x = qsafe::RowMatrixF::Random(n, in), w = qsafe::RowMatrixF::Random(out, in);
    qsafe::RowMatrixF y(n, out);
    for (auto _ : state) {
        qsafe::fp32_blas::gemm_nt(x, w.data(), static_cast<std::size_t>(out), static_cast<std::size_t>(in), y);
        benchmark::DoNotOptimize(y.data());
    }
    state.counters["GFLOPs"] = benchmark::Counter(2.0 * static_cast<double>(n * in * out) * static_cast<double>(state.iterations()),
                                                  benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(bm_fp32_gemm)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bm_lora_step)->ArgNames({"base", "threads"})->Args({0, 2})->Args({1, 2})->Args({2, 2})->Args({0, 1})->Iterations(3)->UseRealTime()->Unit(benchmark::kSecond);
BENCHMARK(bm_ste_step)->ArgNames({"scheme", "threads"})->Args({0, 2})->Args({1, 2})->Iterations(3)->UseRealTime()->Unit(benchmark::kSecond);
BENCHMARK_MAIN();
