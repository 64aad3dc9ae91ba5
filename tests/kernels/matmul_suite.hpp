#pragma once
// The typed conformance suite of gemv / gemm, written once and invoked per scheme from several .cpp files
// (spreading the kernel instantiations over translation units keeps compile time down).
// Every product is checked against the scalar reference and against dequantize() + an Eigen fp32 product,
// for each arch compiled in and available (the TU's default arch and, on x86, SSE4.2, which exercises the
// portable kernel), and each activation precision.
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include "qsafe/core/simd_headers.hpp"  // before Eigen / xsimd
#include <xsimd/xsimd.hpp>

#include "kernels/matmul_test_support.hpp"
#include "kernels/test_scheme_names.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/kernels/matmul.hpp"
#include "qsafe/kernels/matmul_reference.hpp"

namespace qsafe::test {

/// fp32 activations: the only differences are fp32 rounding orders.
inline constexpr double fp32_tolerance = 1e-5;
/// int8 activations (opt-in, as llama.cpp's q8_0): x is rounded to 8 bits per 32-block (error up to
/// d/2 = max|x|/254 per entry). For Gaussian activations that alone gives ||dx|| / ||x|| ~ 5e-3 (measured
/// 5.2e-3 .. 5.7e-3 on 512x4096), and the product inherits it, so its bound is 1e-2 (docs/benchmarks.md).
inline constexpr double int8_tolerance = 1e-2;
/// int16 activations (the default integer path): the same rounding with 32767 levels, ~250x smaller. The
/// issue's bar for quantized activations is 2e-3; the measured error is ~2e-5, bounded here at 1e-4.
inline constexpr double int16_tolerance = 1e-4;
/// A relative error of a handful of outputs is noise-dominated (one small y makes it large), so below
/// `integer_path_min_outputs` outputs the integer paths are checked with the scale-aware bound
/// ||y - y_ref|| <= tol * || |W| |x| || instead.
inline constexpr Eigen::Index integer_path_min_outputs = 64;

/// The fp32 Eigen oracle carries its own rounding (unvectorised in Debug builds), so a single small output
/// with cancellation can differ from the double reference by more than 1e-5 relative; comparisons with it
/// accept either the relative bound or the same bound relative to |x| |W|^T.
inline bool close_to_fp32_oracle(const RowMatrixF& y, const RowMatrixF& y_eigen, const RowMatrixF& y_abs, double tol) {
    return relative_error(y, y_eigen) <= tol || (y - y_eigen).norm() <= tol * y_abs.norm();
}

template <class Arch, QuantScheme S>
double tolerance_for(const MatmulOptions& options, std::size_t batch) {
    switch (kernels::kernel_path_for<Arch, S>(options, batch)) {
        case kernels::KernelPath::int8_chunks:
        case kernels::KernelPath::int8_chunk_pairs: return int8_tolerance;
        case kernels::KernelPath::int16_chunks:
        case kernels::KernelPath::int16_chunk_pairs: return int16_tolerance;
        default: return fp32_tolerance;
    }
}

template <class Arch, QuantScheme S>
bool quantizes_activations(const MatmulOptions& options, std::size_t batch) {
    const auto path = kernels::kernel_path_for<Arch, S>(options, batch);
    return path == kernels::KernelPath::int8_chunks || path == kernels::KernelPath::int16_chunks ||
           path == kernels::KernelPath::int8_chunk_pairs || path == kernels::KernelPath::int16_chunk_pairs;
}

/// Every kernel a product can take: each activation precision with the default batch rule, and fp32 forced
/// onto dequantized tiles (even for one vector) and kept off them (even for many).
inline std::vector<MatmulOptions> all_kernel_options() {
    constexpr std::size_t never = static_cast<std::size_t>(-1);
    return {MatmulOptions{ActivationPrecision::fp32, never}, MatmulOptions{ActivationPrecision::fp32, 1},
            MatmulOptions{ActivationPrecision::int8}, MatmulOptions{ActivationPrecision::int16},
            MatmulOptions{ActivationPrecision::automatic}};
}

/// Runs gemm (and gemv for batch 1) on Arch with every kernel option and compares with both oracles.
template <class Arch, QuantScheme S>
void check_products_on(const QuantizedMatrix<S>& w, const RowMatrixF& x, const RowMatrixF& y_ref,
                       const RowMatrixF& y_eigen, const RowMatrixF& y_abs) {
    const auto batch = static_cast<std::size_t>(x.rows());
    for (const MatmulOptions& options : all_kernel_options()) {
        const std::string arch_name = Arch::name();
        const std::string path_name = kernels::kernel_path_name(kernels::kernel_path_for<Arch, S>(options, batch));
        CAPTURE(arch_name);
        CAPTURE(path_name);
        const double tol = tolerance_for<Arch, S>(options, batch);
        const bool integer_path = quantizes_activations<Arch, S>(options, batch);
        RowMatrixF y = RowMatrixF::Constant(x.rows(), static_cast<Eigen::Index>(w.rows), -7.0f);
        gemm(Arch{}, w, x, y, options);
        if (integer_path && y.size() < integer_path_min_outputs) {
            CHECK((y - y_ref).norm() <= tol * y_abs.norm());
        } else {
            CHECK(relative_error(y, y_ref) <= tol);
            CHECK(close_to_fp32_oracle(y, y_eigen, y_abs, tol + 1e-6));
        }
        if (x.rows() == 1) {
            RowMatrixF yv = RowMatrixF::Constant(1, static_cast<Eigen::Index>(w.rows), -7.0f);
            gemv(Arch{}, w, std::span<const float>(x.data(), w.cols), std::span<float>(yv.data(), w.rows), options);
            if (integer_path && yv.size() < integer_path_min_outputs) CHECK((yv - y_ref).norm() <= tol * y_abs.norm());
            else CHECK(relative_error(yv, y_ref) <= tol);
        }
    }
}

template <QuantScheme S>
void check_products(const QuantizedMatrix<S>& w, const RowMatrixF& x) {
    RowMatrixF y_ref(x.rows(), static_cast<Eigen::Index>(w.rows));
    gemm_reference(w, x, y_ref);
    const RowMatrixF w_dense = w.dequantize();
    const RowMatrixF y_eigen = x * w_dense.transpose();
    const RowMatrixF y_abs = x.cwiseAbs() * w_dense.cwiseAbs().transpose();  // |x| |W|^T: scale of the terms
    CHECK(close_to_fp32_oracle(y_ref, y_eigen, y_abs, 1e-5));  // the two oracles agree
    check_products_on<xsimd::default_arch>(w, x, y_ref, y_eigen, y_abs);
#if XSIMD_WITH_SSE4_2
    if constexpr (!std::is_same_v<xsimd::default_arch, xsimd::sse4_2>)
        check_products_on<xsimd::sse4_2>(w, x, y_ref, y_eigen, y_abs);
#endif
}

TEST_CASE_TEMPLATE_DEFINE("gemv/gemm match the reference and dequantize()+Eigen", S, matmul_conformance) {
    std::mt19937 rng(20240611u + static_cast<unsigned>(S::bits));
    // Tails everywhere: 1 row, K = 1 (one column), cols not a multiple of 16 / 32 / the group, rows not a
    // multiple of the row tiles (4 and 2).
    const TestShape shapes[] = {{1, 1}, {6, 1}, {1, 16}, {3, 17}, {5, 48}, {9, 100}, {13, 257}, {1, 300}, {6, 528}, {38, 160}};
    for (const TestShape shape : shapes) {
        CAPTURE(shape.rows);
        CAPTURE(shape.cols);
        const auto w = random_matrix<S>(shape.rows, shape.cols, rng);
        const bool small = shape.rows * shape.cols <= 2000;
        for (std::size_t batch : {1u, 2u, 3u, 8u, 17u, 64u}) {
            if (!small && batch > 17) continue;
            CAPTURE(batch);
            check_products(w, random_activations(batch, shape.cols, rng));
        }
    }
    const std::string archs =
        std::string(xsimd::default_arch::name()) + " (" +
        kernels::kernel_path_name(kernels::kernel_path<xsimd::default_arch, S>(ActivationPrecision::automatic)) + ")" +
        (XSIMD_WITH_SSE4_2 ? " + sse4.2 (portable)" : "");
    MESSAGE("archs run: " << archs);
}

TEST_CASE_TEMPLATE_DEFINE("gemv/gemm: zero matrix, large values", S, matmul_edge_values) {
    std::mt19937 rng(77u);
    SUBCASE("zero matrix gives zero (exactly with fp32 activations)") {
        RandomMatrixOptions opt;
        opt.zero = true;
        const auto w = random_matrix<S>(11, 200, rng, opt);
        const RowMatrixF x = random_activations(3, 200, rng);
        for (ActivationPrecision p : {ActivationPrecision::fp32, ActivationPrecision::int8, ActivationPrecision::int16}) {
            RowMatrixF y = RowMatrixF::Constant(3, 11, 1.0f);
            gemm(w, x, y, MatmulOptions{p});
            // The integer paths subtract the zero-point term, summed per group, from the code term, summed per
            // chunk: two float sums of the same value that differ by rounding only (~1e-5 here).
            if (quantizes_activations<xsimd::default_arch, S>(MatmulOptions{p}, 3))
                CHECK(y.cwiseAbs().maxCoeff() <= 5e-5f);
            else
                CHECK(y.cwiseAbs().maxCoeff() == 0.0f);
        }
    }
    SUBCASE("weights up to 1e4, activations up to 1e3") {
        RandomMatrixOptions opt;
        // Largest |level| is 2^(bits-1) for grids and 1 for tables; fp16 scales stay below 65504.
        opt.scale_magnitude = S::uniform ? 1e4f / static_cast<float>(S::levels / 2) : 1e4f;
        opt.outlier_magnitude = 1e4f;
        const auto w = random_matrix<S>(21, 333, rng, opt);
        check_products(w, random_activations(5, 333, rng, 1e3f / 4.0f));
    }
}

TEST_CASE_TEMPLATE_DEFINE("gemv/gemm: bit-identical for 1 and 2 threads", S, matmul_threads) {
    std::mt19937 rng(5u);
    const auto w = random_matrix<S>(203, 300, rng);
    for (std::size_t batch : {1u, 5u, 20u}) {
        const RowMatrixF x = random_activations(batch, 300, rng);
        for (const MatmulOptions& options : all_kernel_options()) {
            CAPTURE(batch);
            CAPTURE(kernels::kernel_path_name(kernels::kernel_path_for<xsimd::default_arch, S>(options, batch)));
            RowMatrixF y1(static_cast<Eigen::Index>(batch), 203), y2(static_cast<Eigen::Index>(batch), 203);
            const int saved = num_threads();
            set_num_threads(1);
            gemm(w, x, y1, options);
            set_num_threads(2);
            gemm(w, x, y2, options);
            set_num_threads(saved);
            CHECK(std::memcmp(y1.data(), y2.data(), sizeof(float) * static_cast<std::size_t>(y1.size())) == 0);
        }
    }
}

// The batched decoder relies on this: a sequence's outputs must not depend on which other sequences share
// its batch, or a resumed evaluation (which regroups unfinished rows) could differ from an uninterrupted one.
TEST_CASE_TEMPLATE_DEFINE("gemm on dequantized tiles: an output does not depend on the batch around it", S,
                          matmul_batch_independence) {
    std::mt19937 rng(11u);
    // 45 rows: two full 16-row tiles and a partial one; 700 columns: three panel depths, the last one short.
    const auto w = random_matrix<S>(45, 700, rng);
    const MatmulOptions tiles{ActivationPrecision::fp32, 1};
    // 23 = 3 groups of 6 + 5; 22 = 2 x 6 + 5 + 5 (a tail of 4 is merged with the last full group).
    for (const Eigen::Index batch : {23, 22}) {
        CAPTURE(batch);
        const RowMatrixF x = random_activations(static_cast<std::size_t>(batch), 700, rng);
        RowMatrixF y_all(batch, 45);
        gemm(w, x, y_all, tiles);
        for (Eigen::Index n : {Eigen::Index{0}, Eigen::Index{7}, Eigen::Index{17}, batch - 1}) {
            CAPTURE(n);
            RowMatrixF y_one(1, 45);
            gemm(w, ConstMatrixView(x.row(n).data(), 1, 700), y_one, tiles);
            CHECK(std::memcmp(y_one.data(), y_all.row(n).data(), sizeof(float) * 45) == 0);
            RowMatrixF y_pair(2, 45);
            RowMatrixF x_pair(2, 700);
            x_pair.row(0) = x.row(n);
            x_pair.row(1) = x.row((n + 1) % batch);
            gemm(w, x_pair, y_pair, tiles);
            CHECK(std::memcmp(y_pair.data(), y_all.row(n).data(), sizeof(float) * 45) == 0);
        }
    }
}

}  // namespace qsafe::test
