#pragma once
// Quantized model files: one self-describing GGUF container holding a quantized model, loaded back without
// re-quantizing (by load_model, hence by every command and the evaluator).
//   - metadata: every key of the source GGUF (architecture, hyper-parameters, tokenizer, chat template), plus
//       qsafe.format_version = 1
//       qsafe.method, qsafe.rules, qsafe.calibration, qsafe.bits_per_weight (of the linear layers)
//       qsafe.tensor.<name>.scheme   for every linear layer stored in qsafe's own layout
//   - tensors: token embedding (and RoPE factors) copied byte for byte from the source; norms as F32 (AWQ
//     rescales them); each linear layer either
//       * F32, when it is kept in full precision, or
//       * a ggml I8 tensor holding the layer's serialized QuantizedLinear bytes (formats/matrix_serialization.hpp),
//         whose scheme is named by qsafe.tensor.<name>.scheme.
// The output layer is written only when it is not simply the tied token embedding in fp32.
// Stock llama.cpp cannot read qsafe's own layouts (it has no such tensor types); see docs/calibrated-quantization.md.
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "qsafe/io/gguf.hpp"
#include "qsafe/model/weights.hpp"
#include "qsafe/ptq/quantize_model.hpp"

namespace qsafe {

inline constexpr std::uint32_t quantized_file_version = 1;

struct QuantizedFileInfo {
    std::string method;       // "rtn", "gptq", ...
    std::string rules;        // the scheme rules string
    std::string calibration;  // what calibration data was used ("" for none)
};

inline void save_quantized_model(const std::filesystem::path& path, const gguf::File& source, const LlamaWeights& w,
                                 const QuantizedFileInfo& info) {
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
