#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "qsafe/core/fp32_blas.hpp"
#include "qsafe/core/parallel.hpp"

using namespace qsafe;

namespace {

RowMatrixF blas_test_matrix(std::size_t rows, std::size_t cols, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    RowMatrixF m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
    return m;
}

// Both products in double precision, written out as sums: the reference the back end is compared with.
double reference_dot(const float* a, const float* b, std::size_t k, std::size_t a_step = 1, std::size_t b_step = 1) {
    double s = 0;
    for (std::size_t i = 0; i < k; ++i) s += static_cast<double>(a[i * a_step]) * static_cast<double>(b[i * b_step]);
    return s;
}

}  // namespace

TEST_CASE("fp32 blas: y = x w^T matches a double-precision sum, with strided views and odd shapes") {
    INFO("backend " << fp32_blas::backend_name());
    for (const auto [tokens, n, k] : {std::array<std::size_t, 3>{1, 7, 5}, {37, 130, 61}, {300, 192, 576}, {513, 65, 1536}}) {
        CAPTURE(tokens);
        CAPTURE(n);
        CAPTURE(k);
        const RowMatrixF x_storage = blas_test_matrix(tokens, k + 3, 1);  // 3 padding columns: row stride != k
        const RowMatrixF w = blas_test_matrix(n, k, 2);
        RowMatrixF y_storage = RowMatrixF::Constant(static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(n + 2), 123.0f);
        const ConstMatrixView x{x_storage.data(), tokens, k, k + 3};
        const MatrixView y{y_storage.data(), tokens, n, n + 2};
        fp32_blas::gemm_nt(x, w.data(), n, k, y);
        double worst = 0;
        for (std::size_t t = 0; t < tokens; ++t)
            for (std::size_t o = 0; o < n; ++o) {
                const double ref = reference_dot(x.data + t * x.stride, w.data() + o * k, k);
                worst = std::max(worst, std::fabs(y_storage(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(o)) - ref) /
                                            std::sqrt(static_cast<double>(k)));
            }
        CHECK(worst < 1e-5);
        // The padding columns of y are not written.
        for (std::size_t t = 0; t < tokens; ++t)
            for (std::size_t o = n; o < n + 2; ++o)
                CHECK(y_storage(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(o)) == 123.0f);
    }
}

TEST_CASE("fp32 blas: Gram matrix accumulates into the lower triangle") {
    INFO("backend " << fp32_blas::backend_name());
    for (const auto [tokens, n] : {std::array<std::size_t, 2>{1, 3}, {50, 100}, {512, 576}, {77, 193}}) {
        CAPTURE(tokens);
        CAPTURE(n);
        const RowMatrixF x = blas_test_matrix(tokens, n, 3);
        const RowMatrixF x2 = blas_test_matrix(tokens / 2 + 1, n, 4);
        Eigen::MatrixXf h = Eigen::MatrixXf::Zero(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
        fp32_blas::gram_lower_add(ConstMatrixView(x), h.data(), n);
        fp32_blas::gram_lower_add(ConstMatrixView(x2), h.data(), n);  // accumulates
        double worst = 0;
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j <= i; ++j) {
                const double ref = reference_dot(x.data() + i, x.data() + j, tokens, n, n) +
                                   reference_dot(x2.data() + i, x2.data() + j, x2.rows(), n, n);
                worst = std::max(worst, std::fabs(h(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) - ref) /
                                            std::sqrt(static_cast<double>(tokens)));
            }
        CHECK(worst < 1e-4);  // fp32 sums of ~770 products of unit normals: ~1e-5 of sqrt(tokens)
    }
}

TEST_CASE("fp32 blas: results are identical for 1 and 2 threads") {
    const int saved = num_threads();
    const RowMatrixF x = blas_test_matrix(517, 576, 5);
    const RowMatrixF w = blas_test_matrix(1536, 576, 6);
    RowMatrixF y1(517, 1536), y2(517, 1536);
    Eigen::MatrixXf h1 = Eigen::MatrixXf::Zero(576, 576), h2 = Eigen::MatrixXf::Zero(576, 576);
    set_num_threads(1);
    fp32_blas::gemm_nt(ConstMatrixView(x), w.data(), 1536, 576, MatrixView(y1));
    fp32_blas::gram_lower_add(ConstMatrixView(x), h1.data(), 576);
    set_num_threads(2);
    fp32_blas::gemm_nt(ConstMatrixView(x), w.data(), 1536, 576, MatrixView(y2));
    fp32_blas::gram_lower_add(ConstMatrixView(x), h2.data(), 576);
    set_num_threads(saved);
    CHECK(y1 == y2);
    CHECK(Eigen::MatrixXf(h1.triangularView<Eigen::Lower>()) == Eigen::MatrixXf(h2.triangularView<Eigen::Lower>()));
}
