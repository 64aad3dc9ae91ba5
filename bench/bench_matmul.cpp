// GEMV / GEMM on packed weights, per scheme, shape, batch and thread count, plus an fp32 Eigen baseline.
//   cold: every iteration uses the next of several distinct copies of the matrix (>= 512 MiB in all, far
//         beyond the 32 MiB L3), so weights stream from DRAM as in real decoding;
//   hot:  one copy, cache-resident when it fits (the small shapes; large ones still exceed L2/L3).
// Counters: bytes_per_second = stored matrix bytes read per call (codes + scales + zero points + codebooks
// + outliers), GFLOPS = 2 * rows * cols * batch per call. Names: matmul/<scheme>/<rows>x<cols>/b<batch>/
// <cold|hot>/threads:<n>. Filter with --benchmark_filter; bench/run_benchmarks.sh runs the documented subset.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "qsafe/core/simd_headers.hpp"  // before Eigen / xsimd
#include <Eigen/Core>

#include "qsafe/core/parallel.hpp"
#include "qsafe/kernels/matmul.hpp"
#include "qsafe/policy/scheme.hpp"
#include "qsafe/registry/scheme_registry.hpp"  // built-in schemes: linked in via qsafe_builtin_schemes

namespace {

using namespace qsafe;

constexpr std::size_t cold_bytes = std::size_t{512} << 20;

/// Copies of one matrix to rotate through, plus how to multiply with copy i.
struct MatrixSet {
    virtual ~MatrixSet() = default;
    virtual std::size_t copies() const = 0;
    virtual std::size_t bytes() const = 0;  // bytes of one copy
    virtual void multiply(std::size_t copy, ConstMatrixView x, MatrixView y, const MatmulOptions& opt) = 0;
    virtual std::string path(const MatmulOptions& opt) const = 0;
};

template <QuantScheme S>
QuantizedMatrix<S> random_quantized(std::size_t rows, std::size_t cols, std::size_t outlier_columns,
                                    double sparse_fraction, std::mt19937_64& rng) {
    auto m = QuantizedMatrix<S>::allocate(rows, cols);
    // Any byte pattern is a valid set of packed codes.
    for (std::size_t i = 0; i + 8 <= m.codes.size(); i += 8) {
        const std::uint64_t v = rng();
        std::memcpy(m.codes.data() + i, &v, 8);
    }
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    for (auto& s : m.scales) s = S::scale_format::store(0.01f + 0.02f * std::abs(unit(rng)));
    for (auto& z : m.zeros) z = static_cast<std::uint8_t>(rng() % S::levels);
    for (auto& c : m.codebook) c = to_fp16(unit(rng));
    if constexpr (S::outlier_kind == OutlierKind::columns) {
        for (std::size_t i = 0; i < outlier_columns; ++i)
            m.outlier_columns.columns.push_back(static_cast<std::uint32_t>(i * (cols / outlier_columns)));
        m.outlier_columns.values.resize(rows * outlier_columns);
        for (auto& v : m.outlier_columns.values) v = to_fp16(unit(rng));
    }
    if constexpr (S::outlier_kind == OutlierKind::sparse) {
        auto& sp = m.sparse_outliers;
        const auto stride = static_cast<std::size_t>(1.0 / sparse_fraction);
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t c = rng() % stride; c < cols; c += stride) {
                sp.col.push_back(static_cast<std::uint16_t>(c));
                sp.value.push_back(to_fp16(unit(rng)));
            }
            sp.row_ptr[r + 1] = static_cast<std::uint32_t>(sp.col.size());
        }
    }
    return m;
}

template <QuantScheme S>
struct QuantizedSet final : MatrixSet {
    std::vector<QuantizedMatrix<S>> mats;
    QuantizedSet(std::size_t rows, std::size_t cols, std::size_t n_copies, std::size_t ocols, double sparse) {
        std::mt19937_64 rng(42);
        mats.push_back(random_quantized<S>(rows, cols, ocols, sparse, rng));
        for (std::size_t i = 1; i < n_copies; ++i) mats.push_back(mats.front());
    }
    std::size_t copies() const override { return mats.size(); }
    std::size_t bytes() const override { return mats.front().storage_bytes(); }
    void multiply(std::size_t copy, ConstMatrixView x, MatrixView y, const MatmulOptions& opt) override {
        if (x.rows == 1)
            gemv(mats[copy], x.row_span(0), std::span<float>(y.data, y.cols), opt);
        else
            gemm(mats[copy], x, y, opt);
    }
    std::string path(const MatmulOptions& opt) const override {
        return kernels::kernel_path_name(kernels::kernel_path<xsimd::default_arch, S>(opt.activations));
    }
};

struct EigenSet final : MatrixSet {
    std::vector<RowMatrixF> mats;
    EigenSet(std::size_t rows, std::size_t cols, std::size_t n_copies) {
        mats.push_back(RowMatrixF::Random(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)));
        for (std::size_t i = 1; i < n_copies; ++i) mats.push_back(mats.front());
    }
    std::size_t copies() const override { return mats.size(); }
    std::size_t bytes() const override { return static_cast<std::size_t>(mats.front().size()) * sizeof(float); }
    void multiply(std::size_t copy, ConstMatrixView x, MatrixView y, const MatmulOptions&) override {
        using Map = Eigen::Map<const RowMatrixF>;
        using MapOut = Eigen::Map<RowMatrixF>;
        const Map xm(x.data, static_cast<Eigen::Index>(x.rows), static_cast<Eigen::Index>(x.cols));
        MapOut ym(y.data, static_cast<Eigen::Index>(y.rows), static_cast<Eigen::Index>(y.cols));
        if (x.rows == 1)
            ym.row(0).noalias() = (mats[copy] * xm.row(0).transpose()).transpose();
        else
            ym.noalias() = xm * mats[copy].transpose();
    }
    std::string path(const MatmulOptions&) const override { return "eigen-fp32"; }
};

/// A scheme looked up by its registered name: RTN-quantized once from random fp32 weights, then loaded back
/// from the serialized bytes for every copy; products go through QuantizedLinear with the entry's activation
/// precision (automatic unless stated: the integer kernel with int16 activations for uniform grids, fp32 for
/// codebooks).
struct RegistrySet final : MatrixSet {
    std::vector<std::unique_ptr<QuantizedLinear>> layers;
    RegistrySet(const std::string& name, std::size_t rows, std::size_t cols, std::size_t n_copies) {
        const RowMatrixF w =
            RowMatrixF::Random(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)) * 0.05f;
        layers.push_back(quantize_by_name(name, w));
        const std::vector<std::byte> bytes = layers.front()->serialize();
        for (std::size_t i = 1; i < n_copies; ++i) layers.push_back(deserialize_by_name(name, bytes));
    }
    std::size_t copies() const override { return layers.size(); }
    std::size_t bytes() const override { return layers.front()->storage_bytes(); }
    void multiply(std::size_t copy, ConstMatrixView x, MatrixView y, const MatmulOptions&) override {
        if (x.rows == 1)
            layers[copy]->gemv(x.row_span(0), std::span<float>(y.data, y.cols));
        else
            layers[copy]->gemm(x, y);
    }
    std::string path(const MatmulOptions&) const override { return "registry"; }
};

struct BenchEntry {
    std::string name;
    std::function<std::unique_ptr<MatrixSet>(std::size_t rows, std::size_t cols, std::size_t copies)> make;
    MatmulOptions options;
};

BenchEntry registered(const std::string& name, MatmulOptions opt = {}, const std::string& suffix = "") {
    return {name + suffix,
            [name](std::size_t r, std::size_t c, std::size_t n) { return std::make_unique<RegistrySet>(name, r, c, n); }, opt};
}

template <QuantScheme S>
BenchEntry entry(std::string name, MatmulOptions opt = {}, std::size_t ocols = 0, double sparse = 0.0) {
    return {std::move(name),
            [=](std::size_t r, std::size_t c, std::size_t n) { return std::make_unique<QuantizedSet<S>>(r, c, n, ocols, sparse); },
            opt};
}

// One set of copies alive at a time (benchmarks of one scheme and shape run consecutively).
struct SetCache {
    std::string key;
    std::unique_ptr<MatrixSet> set;
};
SetCache& cache() {
    static SetCache c;
    return c;
}

MatrixSet& get_set(const BenchEntry& e, std::size_t rows, std::size_t cols) {
    const std::string key = e.name + "/" + std::to_string(rows) + "x" + std::to_string(cols);
    auto& c = cache();
    if (c.key != key) {
        c.set.reset();
        auto probe = e.make(rows, cols, 1);
        const std::size_t n = std::max<std::size_t>(2, (cold_bytes + probe->bytes() - 1) / probe->bytes());
        probe.reset();
        c.set = e.make(rows, cols, n);
        c.key = key;
    }
    return *c.set;
}

void run(benchmark::State& state, const BenchEntry& e, std::size_t rows, std::size_t cols, std::size_t batch,
         bool cold, int threads) {
    MatrixSet& set = get_set(e, rows, cols);
    qsafe::set_num_threads(threads);
    Eigen::setNbThreads(threads);
    qsafe::set_activation_precision(e.options.activations);  // what QuantizedLinear passes to the kernels
    RowMatrixF x = RowMatrixF::Random(static_cast<Eigen::Index>(batch), static_cast<Eigen::Index>(cols));
    RowMatrixF y(static_cast<Eigen::Index>(batch), static_cast<Eigen::Index>(rows));
    const std::size_t copies = cold ? set.copies() : 1;
    std::size_t i = 0;
    for (auto _ : state) {
        set.multiply(i, x, y, e.options);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
        if (++i == copies) i = 0;
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * set.bytes()));
    state.counters["GFLOPS"] = benchmark::Counter(2.0 * static_cast<double>(rows * cols * batch) * 1e-9,
                                                  benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel(set.path(e.options));
}

}  // namespace

int main(int argc, char** argv) {
    using Int4G128A = Scheme<Bits<4>, GroupSize<128>, Asymmetric>;
    // The main schemes by their registered names (registry/builtin_schemes.hpp), the exact fp32 activation
    // path of one of them, the opt-in int8 activation path of three (llama.cpp's q8_0 activations, less
    // exact), and the fp32 Eigen baseline.
    const MatmulOptions int8_activations{ActivationPrecision::int8};
    static const std::vector<BenchEntry> schemes = {
        registered("int2-g32-asym"),
        registered("int2-g32-asym", int8_activations, "-int8act"),
        registered("int3-g128-asym"),
        registered("int4-g32-sym"),
        registered("int4-g128-asym"),
        registered("int4-g128-asym", int8_activations, "-int8act"),
        entry<Int4G128A>("int4-g128-asym-fp32act", MatmulOptions{ActivationPrecision::fp32}),
        registered("int8-pc-sym"),
        registered("int8-pc-sym", int8_activations, "-int8act"),
        registered("nf4-g64"),
        registered("fp4-g64"),
        registered("cb4-g128"),
        registered("int4-g128-asym+ocol128"),
        registered("int3-g128-asym+sparse0.5%"),
        {"eigen-fp32", [](std::size_t r, std::size_t c, std::size_t n) { return std::make_unique<EigenSet>(r, c, n); }, {}},
    };
    struct Shape {
        std::size_t rows, cols;
    };
    const Shape shapes[] = {{4096, 4096}, {4096, 14336}, {14336, 4096}, {576, 1536}, {1536, 576}};
    for (const BenchEntry& e : schemes)
        for (const Shape s : shapes)
            for (bool cold : {true, false})
                for (std::size_t batch : {1u, 8u, 32u})
                    for (int threads : {1, 2}) {
                        const std::string name = "matmul/" + e.name + "/" + std::to_string(s.rows) + "x" +
                                                 std::to_string(s.cols) + "/b" + std::to_string(batch) + "/" +
                                                 (cold ? "cold" : "hot") + "/threads:" + std::to_string(threads);
                        benchmark::RegisterBenchmark(name.c_str(), [&e, s, batch, cold, threads](benchmark::State& st) {
                            run(st, e, s.rows, s.cols, batch, cold, threads);
                        })->UseRealTime()->Unit(benchmark::kMicrosecond);
                    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
