// Cross-check of qsafe's dequantization of the real model against llama.cpp's Python package `gguf`
// (tools/reference/gguf_dequant_reference.py wrote the fixture): leading values of a few rows must match bit
// for bit, and the float64 sum over each whole tensor must agree. Skipped when the model is not cached.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/skip.hpp"
#include "io/test_files.hpp"
#include "qsafe/io/gguf.hpp"

TEST_CASE("gguf reference: SmolLM2 tensors dequantize exactly as gguf-py does") {
    const auto model = qsafe::test::cached_model();
    if (model.empty()) {
        test_fixtures::skip_test("SmolLM2-135M-Instruct.Q4_1.gguf not found in $QSAFE_CACHE_DIR or ~/.cache/qsafe "
                                 "(scripts/fetch_model.sh fetches it)");
        return;
    }
    std::ifstream in(std::string(QSAFE_SOURCE_DIR) + "/tools/reference/smollm2_q4_1_dequant_reference.json");
    REQUIRE(in.good());
    const auto reference = nlohmann::json::parse(in);
    const auto file = qsafe::gguf::File::open(model);
    const auto per_row = reference.at("values_per_row").get<std::size_t>();
    for (const auto& entry : reference.at("tensors")) {
        const auto name = entry.at("name").get<std::string>();
        CAPTURE(name);
        const auto& info = file.tensor(name);
        CHECK(info.dims == entry.at("dims").get<std::vector<std::uint64_t>>());
        CHECK(qsafe::ggml_type_from_name(entry.at("type").get<std::string>()) == info.type);
        const auto values = file.tensor_to_f32(info);
        double sum = 0.0, sum_abs = 0.0;
        for (const float v : values) {
            sum += v;
            sum_abs += std::fabs(v);
        }
        CHECK(sum_abs == doctest::Approx(entry.at("sum_abs").get<double>()).epsilon(1e-9));
        CHECK(sum == doctest::Approx(entry.at("sum").get<double>()).epsilon(1e-6));
        int mismatches = 0;
        for (const auto& [row, bits] : entry.at("rows").items()) {
            const std::size_t base = std::stoul(row) * info.row_length();
            for (std::size_t i = 0; i < per_row; ++i) {
                if (std::bit_cast<std::uint32_t>(values[base + i]) != bits[i].get<std::uint32_t>()) ++mismatches;
            }
        }
        CHECK(mismatches == 0);
    }
}
