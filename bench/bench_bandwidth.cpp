// STREAM-like read bandwidth: sums a buffer with xsimd on 1 and 2 threads (static split through
// core/parallel.hpp, like the matmul kernels). The 1 GiB buffer measures DRAM; the 256 KiB one, L2.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <string>
#include <vector>

#include "qsafe/core/simd_headers.hpp"  // before Eigen / xsimd
#include <xsimd/xsimd.hpp>

#include "qsafe/core/aligned_buffer.hpp"
#include "qsafe/core/parallel.hpp"

namespace {

using fb = xsimd::batch<float>;

float sum_range(const float* p, std::size_t n) {
    // Four independent accumulators so the adds are not latency-bound.
    fb a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
    std::size_t i = 0;
    for (; i + 4 * fb::size <= n; i += 4 * fb::size) {
        a0 += fb::load_aligned(p + i);
        a1 += fb::load_aligned(p + i + fb::size);
        a2 += fb::load_aligned(p + i + 2 * fb::size);
        a3 += fb::load_aligned(p + i + 3 * fb::size);
    }
    float s = xsimd::hadd((a0 + a1) + (a2 + a3));
    for (; i < n; ++i) s += p[i];
    return s;
}

void bm_read(benchmark::State& state) {
    const auto bytes = static_cast<std::size_t>(state.range(0));
    const int threads = static_cast<int>(state.range(1));
    const std::size_t n = bytes / sizeof(float);
    qsafe::aligned_vector<float> buffer(n, 1.0f);
    qsafe::set_num_threads(threads);
    constexpr std::size_t grain = 1 << 12;  // 16 KiB pieces: both threads get work even for the L2 buffer
    std::vector<float> partial((n + grain - 1) / grain);
    for (auto _ : state) {
        qsafe::parallel_for_ranges(n, grain, [&](std::size_t begin, std::size_t end) {
            for (std::size_t b = begin; b < end; b += grain)
                partial[b / grain] = sum_range(buffer.data() + b, std::min(grain, end - b));
        });
        benchmark::DoNotOptimize(partial.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
    state.SetLabel(std::string(xsimd::default_arch::name()));
}

}  // namespace

BENCHMARK(bm_read)
    ->ArgNames({"bytes", "threads"})
    ->Args({1LL << 30, 1})
    ->Args({1LL << 30, 2})
    ->Args({256LL << 10, 1})
    ->Args({256LL << 10, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
