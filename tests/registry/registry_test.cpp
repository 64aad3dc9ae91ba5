#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "common/random_matrix.hpp"
#include "common/test_schemes.hpp"
#include "qsafe/registry/scheme_registry.hpp"

using namespace qsafe;

namespace {
double relative_error(const std::vector<float>& y, const VectorF& ref) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
        const double d = y[i] - ref[static_cast<Eigen::Index>(i)];
        num += d * d;
        den += static_cast<double>(ref[static_cast<Eigen::Index>(i)]) * ref[static_cast<Eigen::Index>(i)];
    }
    return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}
const SchemeListing* find_listing(const std::vector<SchemeListing>& all, const std::string& name) {
    for (const auto& s : all)
        if (s.name == name) return &s;
    return nullptr;
}
}  // namespace

TEST_CASE("list_schemes names the issue's schemes with hand-counted bits per weight (4096 x 4096)") {
    const auto all = list_schemes();
    const double n = 4096.0 * 4096.0;
    const struct {
        const char* name;
        double bpw;
    } expected[] = {
        {"int4-g128-asym", 4.0 + (16.0 + 8.0) / 128.0},
        {"int4-g32-sym", 4.0 + 16.0 / 32.0},
        {"int3-g128-asym", 3.0 + 24.0 / 128.0},
        {"int2-g32-asym", 2.0 + 24.0 / 32.0},
        {"int8-pc-sym", 8.0 + 16.0 / 4096.0},
        {"nf4-g64", 4.0 + 16.0 / 64.0},
        {"fp4-g64", 4.0 + 16.0 / 64.0},
        {"cb4-g128", 4.0 + 16.0 / 128.0 + 16.0 * 16.0 / n},
        {"int4-g128-asym+ocol128", 4.0 + 24.0 / 128.0 + 128.0 * (32.0 + 4096.0 * 16.0) / n},
        {"int3-g128-asym+sparse0.5%", 3.0 + 24.0 / 128.0 + 4097.0 * 32.0 / n + std::round(0.005 * n) * 32.0 / n},
        {"fp32", 32.0},
    };
    for (const auto& e : expected) {
        CAPTURE(e.name);
        const SchemeListing* s = find_listing(all, e.name);
        REQUIRE(s != nullptr);
        CHECK(s->bits_per_weight == doctest::Approx(e.bpw).epsilon(1e-12));
    }
}

TEST_CASE("scheme names: outlier amounts parse, bad names fail with the list of known schemes") {
    const auto a = resolve_scheme("int4-g128-asym+ocol64");
    CHECK(a.full_name == "int4-g128-asym+ocol64");
    CHECK(a.outlier_columns == std::size_t{64});
    const auto b = resolve_scheme("int3-g128-asym+sparse1.5%");
    CHECK(b.full_name == "int3-g128-asym+sparse1.5%");
    CHECK(*b.outlier_fraction == doctest::Approx(0.015));
    CHECK(resolve_scheme("int3-g128-asym+sparse").outlier_fraction == doctest::Approx(0.005));
    CHECK_THROWS_AS(resolve_scheme("int4-g128-asym+sparse-1%"), config_error);
    CHECK_THROWS_AS(resolve_scheme("int4-g128-asym+ocolX"), config_error);
    CHECK_THROWS_AS(resolve_scheme("int4-g128-asym+sparse2"), config_error);
    try {
        (void)resolve_scheme("int7-g99");
        FAIL("expected config_error");
    } catch (const config_error& e) {
        CHECK(std::string(e.what()).find("int4-g128-asym") != std::string::npos);
    }
}

TEST_CASE("every registered scheme quantizes, multiplies and round-trips through bytes by name") {
    const RowMatrixF w = test_data::heavy_tailed(70, 200, 17);
    std::vector<float> x(200);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.1f * static_cast<float>(i));
    const Eigen::Map<const VectorF> xv(x.data(), 200);
    for (const auto& listing : list_schemes()) {
        CAPTURE(listing.name);
        const auto layer = quantize_by_name(listing.name, w);
        CHECK(layer->scheme_name() == listing.name);
        std::vector<float> y(70);
        layer->gemv(x, y);
        const VectorF ref = layer->dequantize() * xv;
        CHECK(relative_error(y, ref) <= 2e-3);
        const auto loaded = deserialize_by_name(listing.name, layer->serialize());
        std::vector<float> y2(70);
        loaded->gemv(x, y2);
        CHECK(y2 == y);
        CHECK(loaded->storage_bytes() == layer->storage_bytes());
        // Batched product agrees with repeated GEMV.
        RowMatrixF xs(3, 200), ys(3, 70);
        for (Eigen::Index i = 0; i < 3; ++i) xs.row(i) = xv.transpose() * static_cast<float>(i + 1);
        layer->gemm(xs, ys);
        const RowMatrixF yref = xs * layer->dequantize().transpose();
        CHECK(std::sqrt((ys - yref).squaredNorm() / yref.squaredNorm()) <= 2e-3);
    }
}

TEST_CASE("a user-defined scheme registers under a new name and works like a built-in one") {
    register_scheme<test_schemes::UserIq4G32>("my-iq4-g32");
    const auto layer = quantize_by_name("my-iq4-g32", test_data::gaussian(8, 64, 2));
    CHECK(layer->bits_per_weight() == doctest::Approx(4.0 + 16.0 / 32.0));
    bool listed = false;
    for (const auto& s : list_schemes()) listed = listed || s.name == "my-iq4-g32";
    CHECK(listed);
}
