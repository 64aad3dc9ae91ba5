#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/random_matrix.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/kernels/vq_matmul.hpp"
#include "qsafe/kernels/vq_matmul_reference.hpp"
#include "qsafe/quant/vector_quant.hpp"
#include "qsafe/registry/scheme_registry.hpp"
#include "qsafe/registry/vector_schemes.hpp"

using namespace qsafe;

namespace {

const VqShape d4{4, 1};
const VqShape d8x2{8, 2};

VqMatrix quantize(const RowMatrixF& w, VqShape shape, const QuantizeOptions& opt = {}) {
    VqConfig config;
    config.shape = shape;
    return quantize_vq(w, config, opt);
}

RowMatrixF activations(std::size_t batch, std::size_t cols, std::uint64_t seed) { return test_data::gaussian(batch, cols, seed); }

/// Floating-point error budget of one output: every product sums positions*books table entries, each a
/// d-term dot product, in float; a different (but fixed) order of those sums can move the result by at
/// most about (terms) * eps * sum|w_c x_c|. We allow 4x that.
double tolerance(const VqMatrix& q, const RowMatrixF& wq, const RowMatrixF& x, std::size_t n, std::size_t r) {
    double abs_sum = 0.0;
    for (Eigen::Index c = 0; c < wq.cols(); ++c)
        abs_sum += std::abs(static_cast<double>(wq(static_cast<Eigen::Index>(r), c)) * x(static_cast<Eigen::Index>(n), c));
    const double terms = static_cast<double>(q.positions() * q.shape.books + q.shape.dim);
    return 4.0 * terms * std::numeric_limits<float>::epsilon() * abs_sum + 1e-30;
}

void check_close(const VqMatrix& q, const RowMatrixF& x, const RowMatrixF& got, const RowMatrixF& want) {
    const RowMatrixF wq = q.dequantize();
    for (std::size_t n = 0; n < static_cast<std::size_t>(x.rows()); ++n)
        for (std::size_t r = 0; r < q.rows; ++r) {
            const auto i = static_cast<Eigen::Index>(n), j = static_cast<Eigen::Index>(r);
            REQUIRE(std::abs(static_cast<double>(got(i, j)) - want(i, j)) <= tolerance(q, wq, x, n, r));
        }
}

RowMatrixF product(const VqMatrix& q, const RowMatrixF& x, VqPath path) {
    RowMatrixF y(x.rows(), static_cast<Eigen::Index>(q.rows));
    vq_gemm(q, x, y, path);
    return y;
}

double weighted_error(const RowMatrixF& w, const RowMatrixF& wq, const std::vector<float>& importance) {
    double e = 0.0;
    for (Eigen::Index r = 0; r < w.rows(); ++r)
        for (Eigen::Index c = 0; c < w.cols(); ++c) {
            const double d = static_cast<double>(w(r, c)) - wq(r, c);
            e += (importance.empty() ? 1.0 : importance[static_cast<std::size_t>(c)]) * d * d;
        }
    return e;
}

}  // namespace

TEST_CASE("VQ lookup kernels match the scalar reference and the dequantized product") {
    // 37 rows: a partial 8-row tile; 50 columns: the last sub-vector is zero-padded for d = 4 and d = 8.
    for (const VqShape shape : {d4, d8x2}) {
        CAPTURE(shape.dim);
        const RowMatrixF w = test_data::gaussian(37, 50, 11);
        const VqMatrix q = quantize(w, shape);
        CHECK(q.positions() == (50 + shape.dim - 1) / shape.dim);
        const RowMatrixF x = activations(3, 50, 12);
        RowMatrixF ref(3, 37);
        vq_gemm_reference(q, x, ref);
        const RowMatrixF gathered = product(q, x, VqPath::gather);
        const RowMatrixF scalar = product(q, x, VqPath::scalar_lookup);
        // Same tables, same summation order: the gather and the scalar lookups agree bit for bit.
        CHECK(gathered == scalar);
        check_close(q, x, gathered, ref);
        const RowMatrixF dense = (x * q.dequantize().transpose()).eval();
        check_close(q, x, gathered, dense);
        check_close(q, x, product(q, x, VqPath::dense), dense);
    }
}

TEST_CASE("VQ gemm equals gemv per vector on the lookup path and is close on the dense path") {
    const RowMatrixF w = test_data::gaussian(64, 96, 21);
    const VqMatrix q = quantize(w, d8x2);
    for (const std::size_t batch : {std::size_t{2}, std::size_t{3}, vq_dense_min_batch(2), std::size_t{17}}) {
        CAPTURE(batch);
        const RowMatrixF x = activations(batch, 96, 22);
        RowMatrixF y(static_cast<Eigen::Index>(batch), 64), per_vector(static_cast<Eigen::Index>(batch), 64);
        vq_gemm(q, x, y);
        for (std::size_t n = 0; n < batch; ++n) {
            std::vector<float> out(64);
            vq_gemv(q, std::span<const float>(x.row(static_cast<Eigen::Index>(n)).data(), 96), out);
            for (std::size_t r = 0; r < 64; ++r) per_vector(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(r)) = out[r];
        }
        if (batch < vq_dense_min_batch(2)) CHECK(y == per_vector);
        else check_close(q, x, y, per_vector);
    }
}

TEST_CASE("VQ handles fewer columns than a sub-vector and rejects mismatched shapes") {
    const RowMatrixF w = test_data::gaussian(9, 3, 31);
    const VqMatrix q = quantize(w, d4);
    CHECK(q.positions() == 1);
    CHECK(q.dequantize().cols() == 3);
    const RowMatrixF x = activations(1, 3, 32);
    RowMatrixF ref(1, 9);
    vq_gemm_reference(q, x, ref);
    check_close(q, x, product(q, x, VqPath::gather), ref);

    std::vector<float> xs(4), y(9);
    CHECK_THROWS_AS(vq_gemv(q, xs, y), shape_error);
    RowMatrixF wrong(2, 5);
    RowMatrixF out(2, 9);
    CHECK_THROWS_AS(vq_gemm(q, wrong, out), shape_error);
}

TEST_CASE("VQ products and quantization are bit-identical for 1 and 2 threads") {
    const int saved = num_threads();
    const RowMatrixF w = test_data::gaussian(200, 136, 41);
    const RowMatrixF x1 = activations(1, 136, 42), x9 = activations(9, 136, 43);
    for (const VqShape shape : {d4, d8x2}) {
        CAPTURE(shape.dim);
        set_num_threads(1);
        const VqMatrix q1 = quantize(w, shape);
        const RowMatrixF y1 = product(q1, x1, VqPath::automatic), y9 = product(q1, x9, VqPath::automatic),
                         l9 = product(q1, x9, VqPath::gather);
        set_num_threads(2);
        const VqMatrix q2 = quantize(w, shape);
        CHECK(serialize(q1) == serialize(q2));
        CHECK(product(q1, x1, VqPath::automatic) == y1);
        CHECK(product(q1, x9, VqPath::automatic) == y9);
        CHECK(product(q1, x9, VqPath::gather) == l9);
    }
    set_num_threads(saved);
}

TEST_CASE("VQ serialization round-trips bit-exactly and rejects corrupt or mismatched bytes") {
    const RowMatrixF w = test_data::gaussian(24, 40, 51);
    for (const char* name : {"vq2-d4", "vq2-d8x2"}) {
        const std::string scheme = name;
        CAPTURE(scheme);
        const auto layer = quantize_by_name(name, w);
        const std::vector<std::byte> bytes = layer->serialize();
        const auto loaded = deserialize_by_name(name, bytes);
        CHECK(loaded->serialize() == bytes);
        CHECK(loaded->dequantize() == layer->dequantize());
        CHECK(loaded->storage_bytes() == layer->storage_bytes());
        CHECK(loaded->scheme_name() == name);
        std::vector<std::byte> truncated(bytes.begin(), bytes.end() - 1);
        CHECK_THROWS_AS(deserialize_by_name(name, truncated), format_error);
        std::vector<std::byte> longer = bytes;
        longer.push_back(std::byte{0});
        CHECK_THROWS_AS(deserialize_by_name(name, longer), format_error);
    }
    const auto d4_layer = quantize_by_name("vq2-d4", w);
    CHECK_THROWS_AS(deserialize_by_name("vq2-d8x2", d4_layer->serialize()), format_error);
}

TEST_CASE("VQ bits per weight equal a hand count of every stored byte") {
    // 3 row tiles (4 padding rows), 15 / 8 positions; 0.5 % of 1200 weights = 6 corrections of 2 + 2 bytes
    // plus 21 row pointers of 4 bytes.
    const RowMatrixF w = test_data::gaussian(20, 60, 61);
    const std::size_t outliers = 21 * 4 + 6 * 4;
    const VqMatrix a = quantize(w, d4);
    CHECK(a.outlier_col.size() == 6);
    CHECK(a.storage_bytes() == 24 * 15 + (20 + 60) * 2 + 256 * 4 * 2 + outliers);
    const VqMatrix b = quantize(w, d8x2);
    CHECK(b.storage_bytes() == 24 * 8 * 2 + (20 + 60) * 2 + 2 * 256 * 8 * 2 + outliers);
    CHECK(b.bits_per_weight() == doctest::Approx(8.0 * (24 * 8 * 2 + 160 + 8192 + outliers) / 1200.0));
    CHECK(a.storage_bytes() == vq_storage_bytes(20, 60, d4, 0.005));

    const auto all = list_schemes();
    const double n = 4096.0 * 4096.0;
    const double corrections = 4097 * 4 + 83886 * 4;  // round(0.005 * 4096^2) = 83886
    for (const auto& [name, bytes] : {std::pair<std::string, double>{"vq2-d4", n / 4 + 8192 * 2 + 256 * 4 * 2 + corrections},
                                      std::pair<std::string, double>{"vq2-d8x2", n / 4 + 8192 * 2 + 2 * 256 * 8 * 2 + corrections}}) {
        bool found = false;
        for (const auto& s : all)
            if (s.name == name) {
                found = true;
                CHECK(s.bits_per_weight == doctest::Approx(8.0 * bytes / n));
            }
        CHECK(found);
    }
}

TEST_CASE("VQ at about 2 bits per weight beats RTN int2-g32-asym on Gaussian rows") {
    // 512 x 512: the 8 KiB of vq2-d8x2 codebooks cost 0.25 bpw here (0.5 at 256 x 512).
    const RowMatrixF w = test_data::gaussian(512, 512, 71, 0.02f);
    const auto rtn = quantize_by_name("int2-g32-asym", w);
    const double rtn_mse = (w - rtn->dequantize()).squaredNorm() / static_cast<double>(w.size());
    for (const char* name : {"vq2-d4", "vq2-d8x2"}) {
        const std::string scheme = name;
        CAPTURE(scheme);
        const auto vq = quantize_by_name(name, w);
        const double mse = (w - vq->dequantize()).squaredNorm() / static_cast<double>(w.size());
        MESSAGE(std::string(name) << ": relative MSE " << mse / (0.02 * 0.02) << " at " << vq->bits_per_weight() << " bpw; int2-g32-asym "
                     << rtn_mse / (0.02 * 0.02) << " at " << rtn->bits_per_weight() << " bpw");
        CHECK(vq->bits_per_weight() <= rtn->bits_per_weight());
        CHECK(mse < 0.75 * rtn_mse);
    }
}

TEST_CASE("VQ corrects the worst-fitted weights in fp16, so a few very large weights survive") {
    RowMatrixF w = test_data::gaussian(64, 128, 111);
    const std::pair<int, int> planted[] = {{3, 7}, {3, 90}, {40, 11}, {63, 127}};
    for (const auto& [r, c] : planted) w(r, c) = (c % 2 ? -1.0f : 1.0f) * 25.0f;  // 25 sigma, as in LLM "massive" rows
    const VqMatrix q = quantize(w, d4);
    const RowMatrixF wq = q.dequantize();
    for (const auto& [r, c] : planted) CHECK(std::abs(wq(r, c) - w(r, c)) < 0.02f * 25.0f);
    VqConfig none;
    none.outlier_fraction = 0.0;
    const VqMatrix plain = quantize_vq(w, none);
    CHECK(plain.outlier_col.empty());
    CHECK((w - wq).squaredNorm() < (w - plain.dequantize()).squaredNorm());
    // Corrupt corrections are rejected on load.
    std::vector<std::byte> bytes = serialize(q);
    const std::uint16_t bad_col = 500;
    std::memcpy(bytes.data() + bytes.size() - q.outlier_value.size() * 2 - 8 - q.outlier_col.size() * 2, &bad_col, 2);
    CHECK_THROWS_AS(deserialize_vq_matrix(bytes), format_error);
}

TEST_CASE("VQ importance weighting lowers the importance-weighted error") {
    const RowMatrixF w = test_data::gaussian(128, 256, 81);
    std::vector<float> importance(256);
    for (std::size_t c = 0; c < importance.size(); ++c) importance[c] = c % 8 == 0 ? 50.0f : 1.0f;  // a few hot inputs
    QuantizeOptions weighted;
    weighted.importance = importance;
    for (const VqShape shape : {d4, d8x2}) {
        CAPTURE(shape.dim);
        const double plain = weighted_error(w, quantize(w, shape).dequantize(), importance);
        const double aware = weighted_error(w, quantize(w, shape, weighted).dequantize(), importance);
        MESSAGE("d=" << shape.dim << ": importance-weighted error " << plain << " without, " << aware << " with importance");
        CHECK(aware < 0.9 * plain);
    }
}

TEST_CASE("VQ is deterministic for a seed") {
    const RowMatrixF w = test_data::heavy_tailed(48, 64, 91);
    QuantizeOptions a, b;
    b.seed = 1234;
    for (const VqShape shape : {d4, d8x2}) {
        CAPTURE(shape.dim);
        CHECK(serialize(quantize(w, shape, a)) == serialize(quantize(w, shape, a)));
        CHECK(serialize(quantize(w, shape, b)) == serialize(quantize(w, shape, b)));
        CHECK(serialize(quantize(w, shape, a)) != serialize(quantize(w, shape, b)));
    }
}

TEST_CASE("VQ rejects non-finite weights naming the tensor") {
    RowMatrixF w = test_data::gaussian(16, 32, 101);
    QuantizeOptions opt;
    opt.tensor_name = "blk.7.ffn_up.weight";
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        w(5, 9) = bad;
        try {
            (void)quantize_by_name("vq2-d4", w, opt);
            FAIL("no exception");
        } catch (const numeric_error& e) {
            CHECK(std::string(e.what()).find("blk.7.ffn_up.weight") != std::string::npos);
            CHECK(std::string(e.what()).find("row 5") != std::string::npos);
        }
    }
    VqConfig bad_config;
    bad_config.shape = VqShape{0, 1};
    CHECK_THROWS_AS(quantize_vq(test_data::gaussian(4, 8, 1), bad_config), config_error);
}
