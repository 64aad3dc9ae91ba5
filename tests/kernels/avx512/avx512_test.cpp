// Runs the xsimd::avx512bw kernels against the scalar reference when the CPU has AVX-512BW.
#include <doctest/doctest.h>

#include <random>
#include <string>

#include <xsimd/xsimd.hpp>

#include "kernels/avx512/avx512_kernels.hpp"
#include "kernels/matmul_test_support.hpp"
#include "kernels/test_scheme_names.hpp"
#include "qsafe/kernels/matmul_reference.hpp"

namespace qsafe::test {

TEST_CASE_TEMPLATE_DEFINE("avx512bw gemv/gemm match the reference", S, avx512_conformance) {
    if (!xsimd::available_architectures().avx512bw) {
        MESSAGE("archs run: none (this CPU has no AVX-512BW; the avx512bw kernels were compiled, not run)");
        return;
    }
    std::mt19937 rng(99u);
    const TestShape shapes[] = {{1, 1}, {3, 17}, {13, 257}, {6, 528}, {38, 160}};
    for (const TestShape shape : shapes) {
        const auto w = random_matrix<S>(shape.rows, shape.cols, rng);
        for (std::size_t batch : {1u, 3u, 8u, 17u}) {
            CAPTURE(shape.rows);
            CAPTURE(shape.cols);
            CAPTURE(batch);
            const RowMatrixF x = random_activations(batch, shape.cols, rng);
            RowMatrixF y_ref(x.rows(), static_cast<Eigen::Index>(w.rows));
            gemm_reference(w, x, y_ref);
            const RowMatrixF y_abs = x.cwiseAbs() * w.dequantize().cwiseAbs().transpose();
            for (ActivationPrecision p : {ActivationPrecision::fp32, ActivationPrecision::int8, ActivationPrecision::int16}) {
                const std::string path = avx512bw_path<S>(p);
                CAPTURE(path);
                RowMatrixF y(x.rows(), static_cast<Eigen::Index>(w.rows));
                gemm_avx512bw(w, x, y, MatmulOptions{p});
                if (path == "int8-chunks")
                    CHECK((y - y_ref).norm() <= 1e-2 * y_abs.norm());
                else if (path == "int16-chunks")
                    CHECK((y - y_ref).norm() <= 1e-4 * y_abs.norm());
                else
                    CHECK(relative_error(y, y_ref) <= 1e-5);
            }
        }
    }
    MESSAGE("archs run: avx512bw (" << avx512bw_path<S>(ActivationPrecision::automatic) << ")");
}

TEST_CASE_TEMPLATE_INVOKE(avx512_conformance, Int2G32A, Int3G128ASparse, Int4G128A, Int5G64A, Int6G32S, Int8PcS, Int4G16A,
                          Nf4G64, Cb6G32Pg, Int4G128AOcol);

}  // namespace qsafe::test
