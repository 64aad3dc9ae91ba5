#include <doctest/doctest.h>

#include <bit>
#include <cstdint>

#include "common/random_matrix.hpp"
#include "common/test_schemes.hpp"
#include "qsafe/quant/error_metrics.hpp"
#include "qsafe/quant/rtn.hpp"

using namespace qsafe;

TEST_CASE("NF4 table equals bitsandbytes' _NF4_QUANT_TABLE bit for bit") {
    const std::array<std::uint32_t, 16> published_bits = {
        std::bit_cast<std::uint32_t>(-1.0f), std::bit_cast<std::uint32_t>(-0.6961928009986877f),
        std::bit_cast<std::uint32_t>(-0.5250730514526367f), std::bit_cast<std::uint32_t>(-0.39491748809814453f),
        std::bit_cast<std::uint32_t>(-0.28444138169288635f), std::bit_cast<std::uint32_t>(-0.18477343022823334f),
        std::bit_cast<std::uint32_t>(-0.09105003625154495f), std::bit_cast<std::uint32_t>(0.0f),
        std::bit_cast<std::uint32_t>(0.07958029955625534f), std::bit_cast<std::uint32_t>(0.16093020141124725f),
        std::bit_cast<std::uint32_t>(0.24611230194568634f), std::bit_cast<std::uint32_t>(0.33791524171829224f),
        std::bit_cast<std::uint32_t>(0.44070982933044434f), std::bit_cast<std::uint32_t>(0.5626170039176941f),
        std::bit_cast<std::uint32_t>(0.7229568362236023f), std::bit_cast<std::uint32_t>(1.0f)};
    for (std::size_t i = 0; i < 16; ++i) CHECK(std::bit_cast<std::uint32_t>(Nf4::values[i]) == published_bits[i]);
    // Independent check: the published table is the float32 rounding of these decimal expansions.
    CHECK(Nf4::values[1] == static_cast<float>(-0.6961928009986877));
    CHECK(Nf4::values[14] == static_cast<float>(0.7229568362236023));
}

TEST_CASE("FP4 table equals bitsandbytes' E2M1 code values (bit 3 = sign)") {
    // Magnitudes of codes 0..7 as exact fractions: 0, 1/192, 2/3, 1, 1/3, 1/2, 1/6, 1/4.
    const double magnitudes[8] = {0.0, 1.0 / 192.0, 2.0 / 3.0, 1.0, 1.0 / 3.0, 0.5, 1.0 / 6.0, 0.25};
    for (std::size_t i = 0; i < 8; ++i) {
        CHECK(Fp4E2M1::values[i] == static_cast<float>(magnitudes[i]));
        CHECK(Fp4E2M1::values[i + 8] == -static_cast<float>(magnitudes[i]));
        CHECK(std::signbit(Fp4E2M1::values[i + 8]));
    }
}

TEST_CASE("NF4 beats the uniform 4-bit symmetric grid on Gaussian weights at groups of 64") {
    const RowMatrixF w = test_data::gaussian(64, 512, 99);
    using Nf4S = Scheme<Bits<4>, GroupSize<64>, Symmetric, Nf4>;
    using IntS = Scheme<Bits<4>, GroupSize<64>, Symmetric>;
    const double e_nf4 = test_data::relative_rmse(w, quantize_rtn<Nf4S>(w).dequantize());
    const double e_int = test_data::relative_rmse(w, quantize_rtn<IntS>(w).dequantize());
    CHECK(e_nf4 < e_int);
}

TEST_CASE("a learned per-tensor codebook beats the uniform grid on heavy-tailed weights and contains 0") {
    const RowMatrixF w = test_data::heavy_tailed(64, 512, 5);
    using Cb = Scheme<Bits<3>, GroupSize<128>, Symmetric, LearnedCodebook<>>;
    using Int = Scheme<Bits<3>, GroupSize<128>, Symmetric>;
    const auto m = quantize_rtn<Cb>(w);
    bool has_zero = false;
    for (auto v : m.codebook) has_zero = has_zero || to_float(v) == 0.0f;
    CHECK(has_zero);
    CHECK(test_data::relative_rmse(w, m.dequantize()) < test_data::relative_rmse(w, quantize_rtn<Int>(w).dequantize()));
}

TEST_CASE("clip search never increases the importance-weighted error, and helps on heavy tails") {
    const RowMatrixF w = test_data::heavy_tailed(32, 256, 8);
    using S = Scheme<Bits<3>, GroupSize<128>>;
    QuantizeOptions clip;
    clip.clip_search = true;
    const double plain = test_data::relative_rmse(w, quantize_rtn<S>(w).dequantize());
    const double clipped = test_data::relative_rmse(w, quantize_rtn<S>(w, clip).dequantize());
    CHECK(clipped < plain);
}

TEST_CASE("importance weighting lowers the error on the important columns") {
    const RowMatrixF w = test_data::heavy_tailed(32, 256, 4);
    using S = Scheme<Bits<2>, GroupSize<64>>;
    std::vector<float> importance(256, 0.01f);
    for (std::size_t c = 0; c < 256; c += 8) importance[c] = 100.0f;
    auto weighted_error = [&](const RowMatrixF& q) {
        double e = 0;
        for (Eigen::Index r = 0; r < w.rows(); ++r)
            for (Eigen::Index c = 0; c < w.cols(); ++c) {
                const double d = w(r, c) - q(r, c);
                e += importance[static_cast<std::size_t>(c)] * d * d;
            }
        return e;
    };
    QuantizeOptions plain_clip, weighted_clip;
    plain_clip.clip_search = weighted_clip.clip_search = true;
    weighted_clip.importance = importance;
    const double e_plain = weighted_error(quantize_rtn<S>(w, plain_clip).dequantize());
    const double e_weighted = weighted_error(quantize_rtn<S>(w, weighted_clip).dequantize());
    CHECK(e_weighted < e_plain);
}

TEST_CASE("outliers: kept exactly in fp16, chosen by magnitude or by the caller's score") {
    RowMatrixF w = test_data::gaussian(16, 96, 12);
    w(3, 10) = 40.0f;
    w(7, 90) = -55.5f;
    SUBCASE("sparse, by magnitude") {
        using S = Scheme<Bits<3>, GroupSize<32>, Asymmetric, UniformGrid, SparseOutliers<0>>;
        QuantizeOptions opt;
        opt.outlier_fraction = 2.0 / (16.0 * 96.0);
        const auto m = quantize_rtn<S>(w, opt);
        CHECK(m.sparse_outliers.count() == 2);
        const RowMatrixF d = m.dequantize();
        CHECK(d(3, 10) == 40.0f);
        CHECK(d(7, 90) == -55.5f);
    }
    SUBCASE("sparse, by a caller-supplied score (e.g. safety-critical weights)") {
        using S = Scheme<Bits<3>, GroupSize<32>, Asymmetric, UniformGrid, SparseOutliers<0>>;
        std::vector<float> score(16 * 96, 0.0f);
        score[5 * 96 + 1] = 1.0f;
        score[9 * 96 + 77] = 2.0f;
        score[15 * 96 + 95] = 3.0f;
        QuantizeOptions opt;
        opt.outlier_fraction = 3.0 / (16.0 * 96.0);
        opt.weight_scores = score;
        const auto m = quantize_rtn<S>(w, opt);
        const RowMatrixF d = m.dequantize();
        CHECK(d(5, 1) == round_to_fp16(w(5, 1)));
        CHECK(d(9, 77) == round_to_fp16(w(9, 77)));
        CHECK(d(15, 95) == round_to_fp16(w(15, 95)));
        CHECK(m.sparse_outliers.row_ptr == std::vector<std::uint32_t>{0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3});
    }
    SUBCASE("columns, by weight norm and by activation score") {
        using S = Scheme<Bits<4>, GroupSize<32>, Asymmetric, UniformGrid, OutlierColumns<2>>;
        const auto m = quantize_rtn<S>(w);
        CHECK(m.outlier_columns.columns == std::vector<std::uint32_t>{10, 90});
        const RowMatrixF d = m.dequantize();
        for (Eigen::Index r = 0; r < 16; ++r) {
            CHECK(d(r, 10) == round_to_fp16(w(r, 10)));
            CHECK(d(r, 90) == round_to_fp16(w(r, 90)));
        }
        std::vector<float> activation(96, 1.0f);
        activation[4] = 9.0f;
        activation[50] = 8.0f;
        QuantizeOptions opt;
        opt.column_scores = activation;
        CHECK(quantize_rtn<S>(w, opt).outlier_columns.columns == std::vector<std::uint32_t>{4, 50});
    }
}
