#pragma once
// Quantized model files: one self-describing GGUF container holding a quantized model, loaded back without
// re-quantizing (by load_model, hence by every command and the evaluator).
//   - metadata: every key of the source GGUF (architecture, hyper-parameters, tokenizer, chat template), plus
//       qsafe.format_version = 2  (2: int4-g32-sym / int8-g32-sym layers may be Q4_0 / Q8_0 tensors)
//       qsafe.method, qsafe.rules, qsafe.calibration, qsafe.bits_per_weight (of the linear layers)
//       qsafe.tensor.<name>.scheme   for every quantized linear layer
//   - tensors: token embedding (and RoPE factors) copied byte for byte from the source; norms as F32 (AWQ
//     rescales them); each linear layer either
//       * F32, when it is kept in full precision,
//       * llama.cpp's own Q4_0 / Q8_0 tensor (dims {cols, rows}) when its scheme is int4-g32-sym /
//         int8-g32-sym, which hold exactly those types' values (formats/ggml_equivalent.hpp), or
//       * a ggml I8 tensor holding the layer's serialized QuantizedLinear bytes (formats/matrix_serialization.hpp),
//         whose scheme is named by qsafe.tensor.<name>.scheme.
// The output layer is written only when it is not simply the tied token embedding in fp32.
// Stock llama.cpp reads a file whose layers are all F32, Q4_0 or Q8_0 (e.g. rules
// "*=int4-g32-sym,output=int8-g32-sym"); it has no tensor types for qsafe's other layouts.
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "qsafe/formats/ggml_equivalent.hpp"
#include "qsafe/formats/matrix_serialization.hpp"
#include "qsafe/io/gguf.hpp"
#include "qsafe/model/weights.hpp"
#include "qsafe/ptq/quantize_model.hpp"

namespace qsafe {

inline constexpr std::uint32_t quantized_file_version = 2;

struct QuantizedFileInfo {
    std::string method;       // "rtn", "gptq", ...
    std::string rules;        // the scheme rules string
    std::string calibration;  // what calibration data was used ("" for none)
};

struct QuantizedFileOptions {
    /// Store int4-g32-sym / int8-g32-sym layers as llama.cpp's Q4_0 / Q8_0 (same values, readable by
    /// llama.cpp) rather than as qsafe I8 blobs. Layers whose row length is not a multiple of 32 stay blobs.
    bool ggml_types = true;
};

inline void save_quantized_model(const std::filesystem::path& path, const gguf::File& source, const LlamaWeights& w,
                                 const QuantizedFileInfo& info, const QuantizedFileOptions& options = {}) {
    gguf::Writer out;
    for (const auto& entry : source.metadata()) {
        if (entry.key.starts_with("qsafe.")) continue;  // re-quantizing a qsafe file: describe the new one only
        out.set(entry.key, entry.value);
    }
    out.set("qsafe.format_version", quantized_file_version);
    out.set("qsafe.method", info.method);
    out.set("qsafe.rules", info.rules);
    out.set("qsafe.calibration", info.calibration);
    out.set("qsafe.bits_per_weight", static_cast<float>(w.linear_bits_per_weight()));

    std::vector<std::vector<std::byte>> blobs;  // kept alive until write()
    blobs.reserve(w.layers.size() * 7 + 1);
    auto add_linear = [&](const std::string& name, const QuantizedLinear& layer) {
        if (layer.scheme_name() == "fp32") {
            const RowMatrixF m = layer.dequantize();
            out.add_tensor_f32(name, {layer.cols(), layer.rows()}, {m.data(), static_cast<std::size_t>(m.size())});
            return;
        }
        out.set("qsafe.tensor." + name + ".scheme", layer.scheme_name());
        const auto native = ggml_equivalent_type(layer.scheme_name());
        if (options.ggml_types && native && fits_ggml_blocks(layer.cols())) {
            // Through the serialized bytes: the typed matrix behind the interface, whatever registered it.
            const std::vector<std::byte> bytes = layer.serialize();
            const std::string context = path.string() + ": tensor '" + name + "'";
            blobs.push_back(*native == GgmlType::Q4_0 ? to_ggml_blocks(deserialize_quantized_matrix<GgmlQ4_0Scheme>(bytes, context))
                                                      : to_ggml_blocks(deserialize_quantized_matrix<GgmlQ8_0Scheme>(bytes, context)));
            out.add_tensor_view(name, {layer.cols(), layer.rows()}, *native, blobs.back());
            return;
        }
        blobs.push_back(layer.serialize());
        out.add_tensor_view(name, {blobs.back().size()}, GgmlType::I8, blobs.back());
    };
    auto add_vector = [&](const std::string& name, const VectorF& v) {
        out.add_tensor_f32(name, {static_cast<std::uint64_t>(v.size())}, {v.data(), static_cast<std::size_t>(v.size())});
    };
    auto copy_raw = [&](const std::string& name) {
        const auto& t = source.tensor(name);
        out.add_tensor_view(name, t.dims, t.type, source.tensor_bytes(t));
    };

    copy_raw("token_embd.weight");
    if (source.find_tensor("rope_freqs.weight")) copy_raw("rope_freqs.weight");
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
        const auto& L = w.layers[l];
        const std::string p = "blk." + std::to_string(l) + ".";
        add_vector(p + "attn_norm.weight", L.attn_norm);
        add_vector(p + "ffn_norm.weight", L.ffn_norm);
        add_linear(p + "attn_q.weight", *L.wq);
        add_linear(p + "attn_k.weight", *L.wk);
        add_linear(p + "attn_v.weight", *L.wv);
        add_linear(p + "attn_output.weight", *L.wo);
        add_linear(p + "ffn_gate.weight", *L.w_gate);
        add_linear(p + "ffn_up.weight", *L.w_up);
        add_linear(p + "ffn_down.weight", *L.w_down);
        if (w.config.qkv_bias) {
            add_vector(p + "attn_q.bias", L.bq);
            add_vector(p + "attn_k.bias", L.bk);
            add_vector(p + "attn_v.bias", L.bv);
        }
    }
    add_vector("output_norm.weight", w.output_norm);
    const bool tied_fp = w.output->scheme_name() == "fp32" && !source.find_tensor("output.weight");
    if (!tied_fp) add_linear("output.weight", *w.output);
    out.write(path);
}

}  // namespace qsafe
