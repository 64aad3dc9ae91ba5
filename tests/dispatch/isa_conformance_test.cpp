// Every instruction-set unit linked into qsafe's programs (kernels/isa_dispatch.hpp), run on every built-in
// scheme against the scalar reference — each unit the CPU can run, on this CPU; the output names the units
// that ran and those skipped for want of CPU features.
#include <doctest/doctest.h>

#include <cstdio>
#include <random>
#include <sstream>
#include <string>

#include "kernels/matmul_test_support.hpp"
#include "qsafe/core/cpu_features.hpp"
#include "qsafe/kernels/isa_dispatch.hpp"
#include "qsafe/kernels/matmul_reference.hpp"
#include "qsafe/kernels/vq_matmul_reference.hpp"
#include "qsafe/registry/builtin_scheme_list.hpp"
#include "qsafe/registry/builtin_schemes.hpp"

namespace qsafe::test {
namespace {

// The error a kernel path may make against the fp32 reference (kernels/matmul_options.hpp).
void check_product(const std::string& path, const RowMatrixF& y, const RowMatrixF& y_ref, const RowMatrixF& y_abs) {
    CAPTURE(path);
    if (path.starts_with("int8-chunk")) CHECK((y - y_ref).norm() <= 1e-2 * y_abs.norm());
    else if (path.starts_with("int16-chunk")) CHECK((y - y_ref).norm() <= 1e-4 * y_abs.norm());
    else CHECK(relative_error(y, y_ref) <= 1e-5);
}

template <QuantScheme S>
void check_scheme_unit(const SchemeKernel& kernel, IsaLevel level, std::mt19937& rng) {
    const TestShape shapes[] = {{1, 1}, {3, 17}, {13, 257}, {6, 528}, {38, 160}};
    for (const TestShape shape : shapes) {
        const auto w = random_matrix<S>(shape.rows, shape.cols, rng);
        const RowMatrixF dq_abs = w.dequantize().cwiseAbs();
        for (std::size_t batch : {1u, 3u, 8u, 17u}) {
            CAPTURE(shape.rows);
            CAPTURE(shape.cols);
            CAPTURE(batch);
            const RowMatrixF x = random_activations(batch, shape.cols, rng);
            RowMatrixF y_ref(x.rows(), static_cast<Eigen::Index>(w.rows));
            gemm_reference(w, x, y_ref);
            const RowMatrixF y_abs = x.cwiseAbs() * dq_abs.transpose();
            for (ActivationPrecision p : {ActivationPrecision::automatic, ActivationPrecision::fp32, ActivationPrecision::int8,
                                          ActivationPrecision::int16}) {
                const MatmulOptions options{p};
                RowMatrixF y(x.rows(), static_cast<Eigen::Index>(w.rows));
                kernel.gemm(&w, x, y, options);
                check_product(kernels::kernel_path_name(kernel.path(options, batch)), y, y_ref, y_abs);
            }
        }
    }
    // A unit above portable must run the x86 chunk kernels where the scheme allows them: otherwise it was
    // compiled with the wrong flags and only looks like it works.
    if (level >= IsaLevel::avx2 && (S::per_channel || S::group_size % 32 == 0))
        CHECK(kernel.path(MatmulOptions{ActivationPrecision::fp32}, 1) != kernels::KernelPath::portable);
}

void check_fp32_unit(const fp32_blas::Fp32Kernels& fp32, std::mt19937& rng) {
    const std::size_t tokens = 5, n = 37, k = 70;
    const RowMatrixF x = random_activations(tokens, k, rng), w = random_activations(n, k, rng);
    const Eigen::MatrixXd ref = x.cast<double>() * w.cast<double>().transpose();
    RowMatrixF y(tokens, n);
    fp32.gemm_nt_tile(x.data(), k, w.data(), k, y.data(), n, tokens, n, k);
    CHECK((y.cast<double>() - ref).norm() <= 1e-5 * ref.norm());
    REQUIRE(static_cast<bool>(fp32.gemm_nn_tile));
    const RowMatrixF wt = w.transpose();  // k × n
    RowMatrixF y_nn(tokens, n);
    fp32.gemm_nn_tile(x.data(), k, wt.data(), n, y_nn.data(), n, tokens, n, k);
    CHECK((y_nn.cast<double>() - ref).norm() <= 1e-5 * ref.norm());
    std::vector<float> v(n);
    fp32.gemv_rows(w.data(), k, n, k, x.data(), v.data());
    for (std::size_t i = 0; i < n; ++i) CHECK(v[i] == doctest::Approx(ref(0, static_cast<Eigen::Index>(i))).epsilon(1e-5));
    Eigen::MatrixXf h = Eigen::MatrixXf::Zero(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(k));
    fp32.gram_block_column(x.data(), k, tokens, h.data(), k, 0, k);
    const Eigen::MatrixXd gram = x.cast<double>().transpose() * x.cast<double>();
    CHECK((h.cast<double>().triangularView<Eigen::Lower>().toDenseMatrix() -
           gram.triangularView<Eigen::Lower>().toDenseMatrix()).norm() <= 1e-5 * gram.norm());
}

}  // namespace

TEST_CASE("every instruction-set unit the CPU runs matches the scalar reference on every built-in scheme") {
    const CpuFeatures& cpu = cpu_features();
    const IsaKernelRegistry& registry = isa_kernel_registry();
    std::string ran, skipped;
    std::mt19937 rng(20261206u);
    for (IsaLevel level : all_isa_levels) {
        CAPTURE(isa_name(level));
        const IsaKernelSet* set = registry.set(level);
        REQUIRE(set != nullptr);  // every unit is linked into qsafe's programs
        CHECK(set->level == level);
        if (const std::string missing = missing_features(level, cpu); !missing.empty()) {
            skipped += std::string(skipped.empty() ? "" : ", ") + isa_name(level) + " (CPU lacks " + missing + ")";
            continue;
        }
        for_each_builtin_scheme([&]<class S>(const char* name) {
            CAPTURE(name);
            const SchemeKernel* kernel = registry.exact(scheme_type_key<S>(), level);
            REQUIRE(kernel != nullptr);
            check_scheme_unit<S>(*kernel, level, rng);
        });
        // VQ: a quantized random matrix (the codes are the quantizer's; the product is what is checked).
        for (const char* vq_name : {"vq2-d4", "vq2-d8x2"}) {
            CAPTURE(vq_name);
            const RowMatrixF w = random_activations(24, 96, rng);
            const auto layer = quantize_by_name(vq_name, w);
            const auto* vq = dynamic_cast<const VectorQuantizedLinear*>(layer.get());
            REQUIRE(vq != nullptr);
            for (std::size_t batch : {1u, 5u, 40u}) {
                const RowMatrixF x = random_activations(batch, 96, rng);
                RowMatrixF y(x.rows(), 24), y_ref(x.rows(), 24);
                vq_gemm_reference(vq->matrix(), x, y_ref);
                set->vq_gemm(vq->matrix(), x, y, VqPath::automatic);
                CHECK(relative_error(y, y_ref) <= 1e-5);
            }
        }
        check_fp32_unit(set->fp32, rng);
        ran += std::string(ran.empty() ? "" : ", ") + isa_name(level) + " (xsimd " + set->xsimd_arch + ")";
    }
    // Printed, not only MESSAGEd: scripts/test.sh copies the line from the test log into its own output.
    const std::string summary = "instruction sets run: " + ran + "; skipped: " + (skipped.empty() ? "none" : skipped);
    std::printf("%s\n", summary.c_str());
    MESSAGE(summary);
    CHECK(ran.find("portable") != std::string::npos);
}

TEST_CASE("dequantized tiles give the same bits in every x86 unit (one fma chain per output)") {
    // The batched fp32 path is written so that AVX2 and AVX-512 units compute each output with the same
    // operations in the same order (kernels/dequantized_tile_kernel.hpp): a model evaluated on one machine
    // gives the same batched answers on another.
    const CpuFeatures& cpu = cpu_features();
    const IsaKernelRegistry& registry = isa_kernel_registry();
    if (!missing_features(IsaLevel::avx2, cpu).empty()) {
        MESSAGE("skipped: this CPU has no AVX2");
        return;
    }
    std::mt19937 rng(11u);
    std::string compared;
    for_each_builtin_scheme([&]<class S>(const char* name) {
        if (!(S::per_channel || S::group_size % 32 == 0)) return;  // portable kernel everywhere
        CAPTURE(name);
        const auto w = random_matrix<S>(35, 544, rng);
        const RowMatrixF x = random_activations(40, 544, rng);
        const MatmulOptions options{ActivationPrecision::fp32, 1};
        RowMatrixF y_avx2(40, 35);
        registry.exact(scheme_type_key<S>(), IsaLevel::avx2)->gemm(&w, x, y_avx2, options);
        for (IsaLevel level : {IsaLevel::avx512bw, IsaLevel::avx512vnni}) {
            if (!missing_features(level, cpu).empty()) continue;
            RowMatrixF y(40, 35);
            const SchemeKernel* k = registry.exact(scheme_type_key<S>(), level);
            REQUIRE(k->path(options, 40) == kernels::KernelPath::dequantized_tiles);
            k->gemm(&w, x, y, options);
            CHECK(y == y_avx2);
            if (compared.find(isa_name(level)) == std::string::npos) compared += std::string(" ") + isa_name(level);
        }
    });
    MESSAGE("avx2 compared with:" << (compared.empty() ? " none (no AVX-512 on this CPU)" : compared));
}

TEST_CASE("layers built by name run the dispatched kernel of the active level") {
    std::mt19937 rng(7u);
    const RowMatrixF w = random_activations(40, 256, rng);
    const auto layer = quantize_by_name("int4-g128-asym", w);
    const auto* typed = dynamic_cast<const QuantizedLinearOf<builtin::Int4G128>*>(layer.get());
    REQUIRE(typed != nullptr);
    const SchemeKernel* expected = isa_kernel_registry().exact(scheme_type_key<builtin::Int4G128>(), active_isa());
    REQUIRE(expected != nullptr);
    CHECK(typed->dispatched() == expected);
    // and the layer's product is that kernel's (validated shapes, same numbers as the reference)
    const RowMatrixF x = random_activations(3, 256, rng);
    RowMatrixF y(3, 40), y_ref(3, 40);
    layer->gemm(x, y);
    gemm_reference(typed->matrix(), x, y_ref);
    CHECK(relative_error(y, y_ref) <= 1e-5);
    RowMatrixF bad(2, 40);
    CHECK_THROWS_AS(layer->gemm(x, bad), shape_error);
}

TEST_CASE("QSAFE_ISA: parsing, and no level above the CPU's") {
    CHECK(parse_isa("avx2") == IsaLevel::avx2);
    CHECK(parse_isa("avx512vnni") == IsaLevel::avx512vnni);
    CHECK_THROWS_WITH_AS(parse_isa("avx3"), doctest::Contains("unknown instruction-set level 'avx3'"), config_error);

    CpuFeatures avx2_only;
    avx2_only.sse2 = avx2_only.avx = avx2_only.avx2 = avx2_only.fma = avx2_only.f16c = avx2_only.bmi2 = true;
    CHECK(best_isa(avx2_only) == IsaLevel::avx2);
    CHECK(requested_isa(avx2_only, nullptr) == IsaLevel::avx2);
    CHECK(requested_isa(avx2_only, "") == IsaLevel::avx2);
    CHECK(requested_isa(avx2_only, "portable") == IsaLevel::portable);
    CHECK_THROWS_WITH_AS(requested_isa(avx2_only, "avx512bw"),
                         doctest::Contains("QSAFE_ISA=avx512bw: this CPU lacks avx512f avx512bw avx512vl avx512dq avx512cd"),
                         config_error);

    CpuFeatures skylake_x = avx2_only;  // AVX-512 without VNNI
    skylake_x.avx512f = skylake_x.avx512bw = skylake_x.avx512vl = skylake_x.avx512dq = skylake_x.avx512cd = true;
    CHECK(best_isa(skylake_x) == IsaLevel::avx512bw);
    CHECK(missing_features(IsaLevel::avx512vnni, skylake_x) == "avx512vnni");
    CpuFeatures sapphire = skylake_x;
    sapphire.avx512vnni = true;
    CHECK(best_isa(sapphire) == IsaLevel::avx512vnni);
    CHECK(best_isa(CpuFeatures{}) == IsaLevel::portable);
}

TEST_CASE("OpenBLAS's core is checked against the CPU (Debian's 0.3.21 calls newer CPUs Prescott)") {
    CpuFeatures intel;
    intel.vendor = "GenuineIntel";
    intel.avx512bf16 = true;
    CpuFeatures amd;
    amd.vendor = "AuthenticAMD";
    using fp32_blas::choose_blas;
    // The Sapphire Rapids case: SSE3 kernels on an AVX-512 CPU -> Eigen's AVX-512 products, and the fix named.
    auto c = choose_blas("Prescott", intel, IsaLevel::avx512vnni, IsaLevel::avx512vnni);
    CHECK_FALSE(c.use_cblas);
    CHECK(c.suggested_coretype == "Cooperlake");
    CHECK(c.reason.find("Prescott") != std::string::npos);
    // A matching core is used.
    c = choose_blas("SkylakeX", intel, IsaLevel::avx512bw, IsaLevel::avx512bw);
    CHECK(c.use_cblas);
    CHECK(c.suggested_coretype.empty());
    c = choose_blas("Zen", amd, IsaLevel::avx2, IsaLevel::avx2);
    CHECK(c.use_cblas);
    // AVX2 CPU, old core: Eigen AVX2, and Zen suggested on AMD.
    c = choose_blas("Nehalem", amd, IsaLevel::avx2, IsaLevel::avx2);
    CHECK_FALSE(c.use_cblas);
    CHECK(c.suggested_coretype == "Zen");
    // QSAFE_ISA forced to avx2 on an AVX-512 machine: a Haswell core is as good as asked for.
    c = choose_blas("Haswell", intel, IsaLevel::avx2, IsaLevel::avx2);
    CHECK(c.use_cblas);
    // No better Eigen compiled in (a library user's plain build): OpenBLAS stays, and the reason says so.
    c = choose_blas("Prescott", intel, IsaLevel::avx512vnni, IsaLevel::portable);
    CHECK(c.use_cblas);
    CHECK(c.reason.find("OPENBLAS_CORETYPE=Cooperlake") != std::string::npos);
    // A core qsafe does not know is trusted.
    c = choose_blas("FutureLake", intel, IsaLevel::avx512vnni, IsaLevel::avx512vnni);
    CHECK(c.use_cblas);
    // A portable-level run compares nothing.
    CHECK(choose_blas("Prescott", intel, IsaLevel::portable, IsaLevel::portable).use_cblas);
}

}  // namespace qsafe::test
