// Conformance suite for the RTN quantizer and QuantizedMatrix storage, run for every scheme in the list.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <string>

#include "common/random_matrix.hpp"
#include "common/test_schemes.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/formats/matrix_serialization.hpp"
#include "qsafe/quant/error_metrics.hpp"
#include "qsafe/quant/rtn.hpp"

using namespace qsafe;

namespace {

// Relative RMSE budgets of RTN on N(0,1) weights, per bit width (about the uniform-noise step/sqrt(12) of a
// +-3 sigma range, with headroom for group statistics); heavy-tailed data gets twice the budget.
template <class S>
double rmse_budget() {
    switch (S::bits) {
        case 2: return 0.50;
        case 3: return 0.26;
        case 4: return 0.14;
        case 5: return 0.07;
        case 6: return 0.035;
        default: return 0.015;
    }
}

template <class S>
std::size_t hand_count_bytes(const QuantizedMatrix<S>& m) {
    const std::size_t padded = (m.cols + 15) / 16 * 16;
    const std::size_t groups = S::per_channel ? 1 : (m.cols + S::group_size - 1) / S::group_size;
    std::size_t bytes = m.rows * padded * S::bits / 8;
    bytes += m.rows * groups * sizeof(typename S::scale_format::storage_type);
    if (S::asymmetric) bytes += m.rows * groups;
    if constexpr (S::learned) {
        const bool per_group = detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group;
        bytes += (per_group ? m.rows * groups : 1) * S::levels * 2;
    }
    bytes += m.outlier_columns.columns.size() * (4 + 2 * m.rows);
    if (S::outlier_kind == OutlierKind::sparse) bytes += (m.rows + 1) * 4 + m.sparse_outliers.count() * (2 + 2);
    return bytes;
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("rtn conformance", S, rtn_conformance) {
    SUBCASE("round-trip error within the bit width's budget (Gaussian and heavy-tailed, with tails)") {
        for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{64, 256}, {7, 300}, {1, 17}, {33, 1}}) {
            CAPTURE(rows);
            CAPTURE(cols);
            const RowMatrixF g = test_data::gaussian(rows, cols, 11 + rows);
            const RowMatrixF gq = quantize_rtn<S>(g).dequantize();
            CHECK(gq.rows() == g.rows());
            CHECK(gq.cols() == g.cols());
            if (rows * cols >= 256) CHECK(test_data::relative_rmse(g, gq) <= rmse_budget<S>());
            const RowMatrixF h = test_data::heavy_tailed(rows, cols, 23 + cols);
            const RowMatrixF hq = quantize_rtn<S>(h).dequantize();
            if (rows * cols >= 256) CHECK(test_data::relative_rmse(h, hq) <= 2 * rmse_budget<S>());
        }
    }
    SUBCASE("values already on the grid quantize with zero error") {
        // Each group holds every level once (so the fitted range is the grid's), at a power-of-two scale.
        const std::size_t rows = 5, cols = 256;
        RowMatrixF w(rows, cols);
        const float s = 0.0625f;
        const std::size_t group = S::per_channel ? cols : S::group_size;
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t c = 0; c < cols; ++c) {
                // Every group starts with its grid's extremes so the fitted range is exactly the grid's.
                int q = static_cast<int>((c * 7 + r) % S::levels);
                if (c % group == 0) q = 0;
                if (c % group == 1) q = S::levels - 1;
                if constexpr (S::table) {
                    if (c % group == 0) {
                        for (int i = 0; i < S::levels; ++i)
                            if (std::abs(S::codebook::values[static_cast<std::size_t>(i)]) == 1.0f) q = i;
                    }
                }
                float v = 0.0f;
                if constexpr (S::uniform && S::asymmetric) v = s * static_cast<float>(q - 3);
                else if constexpr (S::uniform) v = s * static_cast<float>(q - S::levels / 2);
                else if constexpr (S::table) v = s * S::codebook::values[static_cast<std::size_t>(q)];
                else v = s * (q == 0 ? 0.0f : -1.0f + 2.0f * static_cast<float>(q) / static_cast<float>(S::levels - 1));
                w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) = v;
            }
        }
        if constexpr (S::learned) {
            // Learned tables are stored in fp16: on-grid means on the fp16-rounded grid of w / absmax.
            for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = s * round_to_fp16(w.data()[i] / s);
        }
        QuantizeOptions opt;
        opt.outlier_fraction = 0.0;
        opt.outlier_columns = 0;
        const RowMatrixF back = quantize_rtn<S>(w, opt).dequantize();
        CHECK(error_metrics(w, back).max_abs_error == 0.0);
    }
    SUBCASE("bits_per_weight counts every stored byte") {
        const RowMatrixF w = test_data::gaussian(40, 200, 5);
        const auto m = quantize_rtn<S>(w);
        CHECK(m.storage_bytes() == hand_count_bytes(m));
        CHECK(m.bits_per_weight() == doctest::Approx(8.0 * static_cast<double>(hand_count_bytes(m)) / (40.0 * 200.0)));
    }
    SUBCASE("serialization round-trips exactly; damaged buffers are rejected") {
        const RowMatrixF w = test_data::heavy_tailed(9, 150, 3);
        const auto m = quantize_rtn<S>(w);
        const auto bytes = serialize(m);
        const auto back = deserialize_quantized_matrix<S>(bytes);
        CHECK(back == m);
        CHECK(back.dequantize() == m.dequantize());
        auto truncated = std::span<const std::byte>(bytes).first(bytes.size() - 3);
        CHECK_THROWS_AS(deserialize_quantized_matrix<S>(truncated), format_error);
        auto bad_magic = bytes;
        bad_magic[0] = std::byte{'X'};
        CHECK_THROWS_AS(deserialize_quantized_matrix<S>(bad_magic), format_error);
        auto with_trailing = bytes;
        with_trailing.push_back(std::byte{0});
        CHECK_THROWS_AS(deserialize_quantized_matrix<S>(with_trailing), format_error);
    }
    SUBCASE("non-finite weights are rejected with their position") {
        RowMatrixF w = test_data::gaussian(4, 40, 1);
        w(2, 33) = std::nanf("");
        QuantizeOptions opt;
        opt.tensor_name = "blk.0.attn_q.weight";
        try {
            (void)quantize_rtn<S>(w, opt);
            FAIL("expected numeric_error");
        } catch (const numeric_error& e) {
            const std::string msg = e.what();
            CHECK(msg.find("blk.0.attn_q.weight") != std::string::npos);
            CHECK(msg.find("row 2, column 33") != std::string::npos);
        }
        w(2, 33) = INFINITY;
        CHECK_THROWS_AS((void)quantize_rtn<S>(w), numeric_error);
    }
    SUBCASE("quantization is independent of the thread count") {
        const RowMatrixF w = test_data::gaussian(67, 130, 9);
        const int saved = num_threads();
        set_num_threads(1);
        const auto one = quantize_rtn<S>(w);
        set_num_threads(2);
        const auto two = quantize_rtn<S>(w);
        set_num_threads(saved);
        CHECK(one == two);
    }
}
TEST_CASE_TEMPLATE_INVOKE(rtn_conformance, QSAFE_TEST_SCHEME_LIST);
