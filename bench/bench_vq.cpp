// Vector-quantized products (kernels/vq_matmul.hpp) against the RTN int2-g32-asym and int4-g128-asym
// kernels on the same shapes, and the time to quantize one SmolLM2-sized matrix.
//   vq/<d4|d8x2>/<rows>x<cols>/b<batch>/<gather|scalar|dense>/threads:<n>
//   rtn/<scheme>/<rows>x<cols>/b<batch>/threads:<n>
//   quantize/<scheme>/<rows>x<cols>
// Weights stay cache-resident (hot): a VQ matrix at 2 bits is 4 MiB at 4096 x 4096, and its products are
// bound by lookups, not by reading the codes. Counters: bytes_per_second = stored matrix bytes per call,
// GFLOPS = 2 * rows * cols * batch per call. VQ matrices for the kernel timings hold random codes and
// codebooks (any byte pattern is a valid code), so no quantizer runs at start-up.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "qsafe/core/parallel.hpp"
#include "qsafe/kernels/vq_matmul.hpp"
#include "qsafe/quant/vector_quant.hpp"
#include "qsafe/registry/scheme_registry.hpp"  // built-in schemes: linked in via qsafe_builtin_schemes

namespace {

using namespace qsafe;

VqMatrix random_vq(std::size_t rows, std::size_t cols, VqShape shape) {
    std::mt19937_64 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    VqMatrix m = VqMatrix::allocate(rows, cols, shape);
    for (auto& c : m.codes) c = static_cast<std::uint8_t>(rng());
    for (auto& v : m.codebooks) v = to_fp16(normal(rng));
    for (auto& s : m.row_scales) s = to_fp16(0.02f + 0.001f * std::abs(normal(rng)));
    for (auto& s : m.col_scales) s = to_fp16(1.0f + 0.1f * std::abs(normal(rng)));
    return m;
}

void report(benchmark::State& state, std::size_t rows, std::size_t cols, std::size_t batch, std::size_t bytes) {
    const auto calls = static_cast<double>(state.iterations());
    state.counters["bytes_per_second"] = benchmark::Counter(static_cast<double>(bytes) * calls, benchmark::Counter::kIsRate);
    state.counters["GFLOPS"] =
        benchmark::Counter(2.0 * static_cast<double>(rows * cols * batch) * calls * 1e-9, benchmark::Counter::kIsRate);
}

void vq_product(benchmark::State& state, VqShape shape, std::size_t rows, std::size_t cols, std::size_t batch, VqPath path,
                int threads) {
    set_num_threads(threads);
    const VqMatrix w = random_vq(rows, cols, shape);
    const RowMatrixF x = RowMatrixF::Random(static_cast<Eigen::Index>(batch), static_cast<Eigen::Index>(cols));
    RowMatrixF y(static_cast<Eigen::Index>(batch), static_cast<Eigen::Index>(rows));
    for (auto _ : state) {
        if (batch == 1) vq_gemv(w, std::span<const float>(x.data(), cols), std::span<float>(y.data(), rows), path);
        else vq_gemm(w, x, y, path);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    report(state, rows, cols, batch, w.storage_bytes());
}

void rtn_product(benchmark::State& state, const std::string& scheme, std::size_t rows, std::size_t cols, std::size_t batch,
                 int threads) {
    set_num_threads(threads);
    const RowMatrixF wf = RowMatrixF::Random(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)) * 0.05f;
    const auto layer = quantize_by_name(scheme, wf);
    const RowMatrixF x = RowMatrixF::Random(static_cast<Eigen::Index>(batch), static_cast<Eigen::Index>(cols));
    RowMatrixF y(static_cast<Eigen::Index>(batch), static_cast<Eigen::Index>(rows));
    for (auto _ : state) {
        if (batch == 1) layer->gemv(std::span<const float>(x.data(), cols), std::span<float>(y.data(), rows));
        else layer->gemm(x, y);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    report(state, rows, cols, batch, layer->storage_bytes());
}

void quantize_time(benchmark::State& state, const std::string& scheme, std::size_t rows, std::size_t cols) {
    std::mt19937_64 rng(3);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    RowMatrixF w(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = normal(rng);
    for (auto _ : state) benchmark::DoNotOptimize(quantize_by_name(scheme, w));
}

const char* path_name(VqPath p) {
    switch (p) {
        case VqPath::gather: return "gather";
        case VqPath::scalar_lookup: return "scalar";
        case VqPath::dense: return "dense";
        default: return "auto";
    }
}

struct Shape {
    std::size_t rows, cols;
};

[[maybe_unused]] const bool registered = [] {
    const Shape shapes[] = {{576, 1536}, {4096, 4096}};
    const std::size_t batches[] = {1, 2, 4, 8, 16, 64};
    for (const Shape s : shapes)
        for (const int threads : {1, 2})
            for (const std::size_t batch : batches) {
                const std::string tail = "/" + std::to_string(s.rows) + "x" + std::to_string(s.cols) + "/b" + std::to_string(batch);
                const std::string thr = "/threads:" + std::to_string(threads);
                for (const auto& [label, shape] : {std::pair<const char*, VqShape>{"d4", VqShape{4, 1}}, {"d8x2", VqShape{8, 2}}})
                    for (const VqPath path : {VqPath::gather, VqPath::scalar_lookup, VqPath::dense})
                        benchmark::RegisterBenchmark(("vq/" + std::string(label) + tail + "/" + path_name(path) + thr).c_str(),
                                                     vq_product, shape, s.rows, s.cols, batch, path, threads)
                            ->Unit(benchmark::kMicrosecond)
                            ->UseRealTime();
                for (const char* scheme : {"int2-g32-asym", "int4-g128-asym"})
                    benchmark::RegisterBenchmark(("rtn/" + std::string(scheme) + tail + thr).c_str(), rtn_product, std::string(scheme),
                                                 s.rows, s.cols, batch, threads)
                        ->Unit(benchmark::kMicrosecond)
                        ->UseRealTime();
            }
    for (const char* scheme : {"vq2-d4", "vq2-d8x2", "int2-g32-asym"})
        benchmark::RegisterBenchmark(("quantize/" + std::string(scheme) + "/1536x576").c_str(), quantize_time, std::string(scheme),
                                     std::size_t{1536}, std::size_t{576})
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->Iterations(1);
    return true;
}();

}  // namespace

BENCHMARK_MAIN();
