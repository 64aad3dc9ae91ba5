// libFuzzer harness: qsafe's own quantized-layer deserialization (registry/scheme_registry.hpp
// deserialize_by_name, registry/protected_linear.hpp, formats/matrix_serialization.hpp and the outlier and
// vector-quantized forms) and the loading of qsafe-written quantized GGUF files (model/model_loader.hpp
// load_model, model/weights.hpp GgufTensorSource::stored_linear: I8 blobs, Q4_0 / Q8_0 layers named by
// qsafe.tensor.<name>.scheme). The first input byte picks the mode:
//   even: byte 2 picks a scheme name from the registry (every registered scheme, outlier schemes with their
//         default amount, plus "+protect" forms); the rest is that layer's serialized bytes;
//   odd:  the rest is a GGUF file loaded with load_model (bit 1 of the first byte: GgmlBlockLayers::all).
// Every layer that loads (small enough) is dequantized, multiplied with a vector, serialized and loaded again.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "qsafe/model/model_loader.hpp"
#include "fuzz_schemes.hpp"
#include "qsafe/registry/protected_linear.hpp"
#include "qsafe/registry/scheme_registry.hpp"

namespace {

using qsafe_fuzz::scheme_names;

void exercise(const qsafe::QuantizedLinear& layer) {
    const std::size_t rows = layer.rows(), cols = layer.cols();
    qsafe_fuzz::consume(layer.storage_bytes());
    if (rows == 0 || cols == 0 || rows > qsafe_fuzz::max_elements / cols) return;
    qsafe_fuzz::consume(layer.dequantize());
    std::vector<float> x(cols, 0.5f), y(rows);
    layer.gemv(x, y);
    qsafe_fuzz::consume(y);
    // What qsafe serialized it must read back (not caught: a failure here is a bug).
    const std::vector<std::byte> bytes = layer.serialize();
    const auto again = qsafe::deserialize_by_name(layer.scheme_name(), bytes);
    if (again->rows() != rows || again->cols() != cols) {
        std::fprintf(stderr, "re-serialized %s layer changed shape\n", layer.scheme_name().c_str());
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const std::uint8_t mode = data[0];
    try {
        if ((mode & 1) == 0) {
            const auto& names = scheme_names();
            const std::string& name = names[data[1] % names.size()];
            const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data + 2), size - 2);
            exercise(*qsafe::deserialize_by_name(name, bytes));
        } else {
            const auto path = qsafe_fuzz::write_file("quantized.gguf", data + 1, size - 1);
            qsafe::LoadOptions options;
            options.ggml_block_layers = (mode & 2) ? qsafe::GgmlBlockLayers::all : qsafe::GgmlBlockLayers::qsafe_files;
            options.chat_template_override = "chatml";
            const qsafe::LoadedModel loaded = qsafe::load_model(path, options);
            const auto& w = loaded.model.weights();
            for (const auto& l : w.layers)
                for (const auto* p : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) exercise(**p);
            exercise(*w.output);
        }
    } catch (const qsafe::error& e) {
        qsafe_fuzz::rejected(e);
    }
    return 0;
}
