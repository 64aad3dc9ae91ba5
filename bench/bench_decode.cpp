// Prefill and decode speed of SmolLM2-135M-Instruct (the default model, fetched by scripts/fetch_model.sh)
// under several schemes, with 1 and 2 threads. Reports tokens/s (items/s). Skips when the model is absent.
//   bench_decode --benchmark_filter=decode   (QSAFE_MODEL or QSAFE_CACHE_DIR select the model file)
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <iterator>
#include <map>
#include <memory>
#include <string>

#include "qsafe/model/model_loader.hpp"

namespace {

// "file": the model file's own Q4_0 / Q8_0 layers as stored (int4-g32-sym / int8-g32-sym, no value changed),
// other layers fp32 — the like-for-like peer of llama.cpp running the same file (QSAFE_MODEL=q4_0.gguf).
const char* const schemes[] = {"fp32", "int8-pc-sym", "int4-g128-asym", "int2-g32-asym", "file"};
constexpr int scheme_count = static_cast<int>(std::size(schemes));

qsafe::LoadedModel* model_for(const std::string& scheme) {
    static std::map<std::string, std::unique_ptr<qsafe::LoadedModel>> cache;
    auto& slot = cache[scheme];
    if (!slot && std::filesystem::exists(qsafe::default_model_path())) {
        qsafe::LoadOptions lo;
        if (scheme == "file") lo.ggml_block_layers = qsafe::GgmlBlockLayers::all;
        else lo.build_linear = qsafe::rtn_builder(qsafe::SchemeRules::parse("*=" + scheme));
        slot = std::make_unique<qsafe::LoadedModel>(qsafe::load_model(qsafe::default_model_path(), lo));
    }
    return slot.get();
}

// Activations, argument "act": 0 fp32 (the exact path, the model's default), 1 automatic (int16 on the integer
// path), 2 int8 (opt-in; what llama.cpp's quantized products use).
void set_mode(benchmark::State& state) {
    using AP = qsafe::ActivationPrecision;
    qsafe::set_num_threads(static_cast<int>(state.range(1)));
    const AP precision = state.range(2) == 2 ? AP::int8 : state.range(2) == 1 ? AP::automatic : AP::fp32;
    qsafe::set_activation_precision(precision);
    state.SetLabel(std::string(schemes[state.range(0)]) +
                   (precision == AP::int8 ? " int8-act" : precision == AP::automatic ? " int16-act" : " fp32-act"));
}

/// One 128-token prompt through an empty cache (GEMM kernels).
void bm_prefill(benchmark::State& state) {
    qsafe::LoadedModel* m = model_for(schemes[state.range(0)]);
    if (!m) return state.SkipWithError("model not found; run scripts/fetch_model.sh");
    set_mode(state);
    std::vector<std::int32_t> prompt(128);
    for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<std::int32_t>(100 + 37 * i % 20000);
    for (auto _ : state) {
        qsafe::KvCache cache = m->model.new_cache();
        benchmark::DoNotOptimize(m->model.forward_sequence(cache, prompt));
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(prompt.size()));
}

/// Decoding 32 tokens after a 64-token prompt, one sequence (GEMV kernels).
void bm_decode(benchmark::State& state) {
    qsafe::LoadedModel* m = model_for(schemes[state.range(0)]);
    if (!m) return state.SkipWithError("model not found; run scripts/fetch_model.sh");
    set_mode(state);
    std::vector<std::int32_t> prompt(64, 504);
    for (auto _ : state) {
        state.PauseTiming();
        qsafe::KvCache cache = m->model.new_cache();
        m->model.forward_sequence(cache, prompt);
        state.ResumeTiming();
        std::int32_t t = 504;
        for (int i = 0; i < 32; ++i) {
            const std::int32_t one[] = {t};
            const qsafe::RowMatrixF logits = m->model.forward_sequence(cache, one);
            t = static_cast<std::int32_t>(i % 2 == 0 ? 330 : 1100);
            benchmark::DoNotOptimize(logits.data());
        }
    }
    state.SetItemsProcessed(state.iterations() * 32);
}

/// Decoding 32 tokens for each of `batch` sequences together (one decode_step per token, GEMM kernels),
/// after a 48-token prompt per sequence: the evaluator's batched generation. Items are generated tokens,
/// so items/s compared across batch sizes is the batching speed-up.
void bm_decode_batch(benchmark::State& state) {
    qsafe::LoadedModel* m = model_for(schemes[state.range(0)]);
    if (!m) return state.SkipWithError("model not found; run scripts/fetch_model.sh");
    qsafe::set_num_threads(static_cast<int>(state.range(1)));
    const bool fp32_activations = state.range(3) != 0;
    qsafe::set_activation_precision(fp32_activations ? qsafe::ActivationPrecision::fp32 : qsafe::ActivationPrecision::automatic);
    const auto batch = static_cast<std::size_t>(state.range(2));
    state.SetLabel(std::string(schemes[state.range(0)]) + " batch " + std::to_string(batch) +
                   (state.range(0) == 0 ? "" : fp32_activations ? " fp32act" : " auto"));
    for (auto _ : state) {
        state.PauseTiming();
        std::vector<qsafe::KvCache> caches;
        std::vector<qsafe::KvCache*> step_caches;
        std::vector<qsafe::TokenSlot> slots;
        caches.reserve(batch);
        for (std::size_t b = 0; b < batch; ++b) caches.push_back(m->model.new_cache());
        for (std::size_t b = 0; b < batch; ++b) {
            step_caches.push_back(&caches[b]);
            for (int i = 0; i < 48; ++i)
                slots.push_back({&caches[b], static_cast<std::int32_t>(200 + 31 * (i + 7 * b) % 20000), i == 47});
        }
        m->model.forward(slots);
        state.ResumeTiming();
        std::vector<std::int32_t> tokens(batch, 504);
        for (int i = 0; i < 32; ++i) {
            const qsafe::RowMatrixF logits = m->model.decode_step(step_caches, tokens);
            for (std::size_t b = 0; b < batch; ++b) tokens[b] = static_cast<std::int32_t>((i + b) % 2 == 0 ? 330 : 1100);
            benchmark::DoNotOptimize(logits.data());
        }
    }
    state.SetItemsProcessed(state.iterations() * 32 * static_cast<std::int64_t>(batch));
}

void batch_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"scheme", "threads", "batch", "fp32act"});
    for (int s = 0; s < scheme_count; ++s)
        for (int t : {1, 2})
            for (int n : {1, 8, 16, 32, 64})
                for (int f : {0, 1})
                    if (s > 0 || f == 0) b->Args({s, t, n, f});
    b->UseRealTime()->Unit(benchmark::kMillisecond);
}

void args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"scheme", "threads", "act"});
    for (int s = 0; s < scheme_count; ++s)
        for (int t : {1, 2})
            for (int a : {0, 1, 2})
                if (s > 0 || a == 0) b->Args({s, t, a});
    b->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(bm_prefill)->Apply(args);
BENCHMARK(bm_decode)->Apply(args);
BENCHMARK(bm_decode_batch)->Apply(batch_args);
BENCHMARK_MAIN();
