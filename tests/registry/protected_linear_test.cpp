#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/random_matrix.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/registry/protected_linear.hpp"
#include "qsafe/registry/scheme_registry.hpp"

using namespace qsafe;

namespace {
/// The flat indices of the `count` largest |w|.
std::vector<std::size_t> largest(const RowMatrixF& w, std::size_t count) {
    std::vector<std::size_t> ids(static_cast<std::size_t>(w.size()));
    std::iota(ids.begin(), ids.end(), std::size_t{0});
    std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(count), ids.end(),
                      [&](std::size_t a, std::size_t b) { return std::abs(w.data()[a]) > std::abs(w.data()[b]); });
    ids.resize(count);
    return ids;
}

/// What quantize_model does for a scheme without a sparse form: the base fitted with the protected weights at 0.
std::unique_ptr<ProtectedLinear> protect(const std::string& scheme, const RowMatrixF& w, const std::vector<std::size_t>& ids) {
    SparseOutlierStore store = protected_store(w, ids, "test tensor");
    RowMatrixF rest = w;
    for (const std::size_t i : ids) rest.data()[i] = 0.0f;
    return std::make_unique<ProtectedLinear>(quantize_by_name(scheme, rest), std::move(store), scheme + "+protect1%");
}
}  // namespace

TEST_CASE("ProtectedLinear keeps its weights exactly in fp16 under any base scheme, and products agree") {
    const RowMatrixF w = test_data::heavy_tailed(40, 256, 11);
    // The largest weights and a scattering of ordinary ones, as safety-critical choices would be.
    std::vector<std::size_t> ids = largest(w, 60);
    for (std::size_t i = 7; i < static_cast<std::size_t>(w.size()); i += 211) ids.push_back(i);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());

    for (const std::string scheme : {"vq2-d4", "vq2-d8x2", "int4-g32-sym", "int4-g128-asym+ocol8", "int3-g128-asym"}) {
        CAPTURE(scheme);
        const auto layer = protect(scheme, w, ids);
        RowMatrixF rest = w;
        for (const std::size_t i : ids) rest.data()[i] = 0.0f;
        const auto base = quantize_by_name(scheme, rest);

        const RowMatrixF q = layer->dequantize(), b = base->dequantize();
        std::vector<bool> is_protected(static_cast<std::size_t>(w.size()), false);
        for (const std::size_t i : ids) is_protected[i] = true;
        for (std::size_t i = 0; i < is_protected.size(); ++i) {
            if (is_protected[i])
                REQUIRE(q.data()[i] == round_to_fp16(w.data()[i]));
            else
                REQUIRE(q.data()[i] == b.data()[i]);
        }
        // Every stored byte: the base's, a u16 column and an fp16 value per weight, a u32 pointer per row + 1.
        CHECK(layer->storage_bytes() == base->storage_bytes() + ids.size() * 4 + (w.rows() + 1) * 4);
        CHECK(layer->protected_count() == ids.size());

        // Products against the layer's own reconstruction (fp32 activations).
        const RowMatrixF x = test_data::gaussian(5, 256, 3);
        const RowMatrixF ref = x * q.transpose();
        RowMatrixF y(5, 40);
        layer->gemm(x, y);
        CHECK(test_data::relative_rmse(ref, y) < 1e-5);
        for (Eigen::Index n = 0; n < 5; ++n) {
            std::vector<float> yv(40);
            layer->gemv({x.row(n).data(), 256}, yv);
            const RowMatrixF got = Eigen::Map<const RowMatrixF>(yv.data(), 1, 40), want = ref.row(n);
            CHECK(test_data::relative_rmse(want, got) < 1e-5);
        }

        // Through bytes and the registry: the same layer back, under the same name.
        const auto bytes = layer->serialize();
        const auto loaded = deserialize_by_name(layer->scheme_name(), bytes);
        CHECK(loaded->scheme_name() == layer->scheme_name());
        CHECK(loaded->serialize() == bytes);
        CHECK(loaded->dequantize() == q);
        CHECK(loaded->storage_bytes() == layer->storage_bytes());
    }
}

TEST_CASE("Protecting the largest weights lowers the error of schemes that have no outlier policy") {
    const RowMatrixF w = test_data::heavy_tailed(64, 256, 5);
    const auto ids = largest(w, static_cast<std::size_t>(w.size()) / 100);
    // At 2 bits the bulk of the weights dominates the error, so 1 % kept exactly helps less than on the
    // uniform grids, where the largest weights stretch their group's scale.
    const struct {
        const char* scheme;
        double at_most;
    } cases[] = {{"vq2-d4", 0.95}, {"int4-g32-sym", 0.8}, {"int3-g128-asym", 0.8}};
    for (const auto& [scheme, at_most] : cases) {
        CAPTURE(scheme);
        const double plain = test_data::relative_rmse(w, quantize_by_name(scheme, w)->dequantize());
        const double kept = test_data::relative_rmse(w, protect(scheme, w, ids)->dequantize());
        CAPTURE(plain);
        CAPTURE(kept);
        CHECK(kept < at_most * plain);
    }
}

TEST_CASE("ProtectedLinear rejects malformed bytes and bad indices with a message naming the problem") {
    const RowMatrixF w = test_data::gaussian(8, 64, 2);
    const auto layer = protect("vq2-d4", w, {3, 70, 71, 500});
    const std::string name = layer->scheme_name();
    const auto bytes = layer->serialize();

    auto truncated = bytes;
    truncated.resize(bytes.size() - 3);
    CHECK_THROWS_WITH_AS(deserialize_by_name(name, truncated), doctest::Contains("protected values"), format_error);
    auto longer = bytes;
    longer.push_back(std::byte{0});
    CHECK_THROWS_WITH_AS(deserialize_by_name(name, longer), doctest::Contains("trailing bytes"), format_error);
    // The byte layout ends with: columns (u64 byte count, 4 x u16), values (u64 byte count, 4 x fp16).
    // Point the first column past the row's end.
    auto bad_column = bytes;
    const std::size_t values_bytes = 4 * sizeof(fp16_t), cols_bytes = 4 * sizeof(std::uint16_t);
    const std::size_t first_col = bytes.size() - values_bytes - 8 - cols_bytes;
    bad_column[first_col] = std::byte{0xff};
    CHECK_THROWS_WITH_AS(deserialize_by_name(name, bad_column), doctest::Contains("out of range or not increasing"), format_error);
    auto nan_value = bytes;
    nan_value[bytes.size() - 1] = std::byte{0x7e};  // high byte of an fp16 NaN
    CHECK_THROWS_WITH_AS(deserialize_by_name(name, nan_value), doctest::Contains("not finite"), format_error);
    // A base layer of another scheme is caught by the base's own reader.
    CHECK_THROWS_AS(deserialize_by_name("vq2-d8x2+protect1%", bytes), format_error);

    CHECK_THROWS_WITH_AS(protected_store(w, {512}, "blk.0.attn_q.weight"),
                         doctest::Contains("outside tensor 'blk.0.attn_q.weight'"), config_error);
}
