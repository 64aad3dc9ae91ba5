// libFuzzer harness: the model loader's hyper-parameter checks (model/config.hpp, model/weights.hpp). The first
// input byte picks the mode:
//   0: a GGUF file: config_from_gguf (architecture, head counts, GQA ratio, head / rope dimensions, vocabulary
//      size from the key or the embedding's shape), then load_llama_weights through GgufTensorSource (every
//      tensor's shape checked against the config) with fp32 layers;
//   1: a Hugging Face config.json read as load_model reads it, then config_from_hf_json;
//   2: config.json and model.safetensors (split by fuzz_common.hpp split_input): config_from_hf_json, then
//      load_llama_weights through SafetensorsTensorSource (HF names, q/k row permutation, shapes).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz_common.hpp"
#include "qsafe/model/model_loader.hpp"

namespace {

std::unique_ptr<qsafe::QuantizedLinear> dense(const std::string& name, const qsafe::RowMatrixF& w) {
    return std::make_unique<qsafe::DenseLinear>(w, "fp32 " + name);
}

void check(const qsafe::LlamaWeights& w) {
    qsafe_fuzz::consume(w.linear_bits_per_weight());
    qsafe_fuzz::consume(w.rope_freq_factors);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const int mode = data[0] % 3;
    ++data;
    --size;
    try {
        if (mode == 0) {
            const auto path = qsafe_fuzz::write_file("model.gguf", data, size);
            const auto file = qsafe::gguf::File::open(path);
            const qsafe::LlamaConfig config = qsafe::config_from_gguf(file);
            const qsafe::GgufTensorSource source(file);
            check(qsafe::load_llama_weights(config, source, dense));
        } else if (mode == 1) {
            const auto path = qsafe_fuzz::write_file("config.json", data, size);
            qsafe_fuzz::consume(qsafe::config_from_hf_json(qsafe::tokenizer::detail::parse_json_file(path), path.string()));
        } else {
            const auto parts = qsafe_fuzz::split_input(data, size);
            const auto config_path = qsafe_fuzz::write_file("config.json", parts.first);
            const auto model_path = qsafe_fuzz::write_file("model.safetensors", parts.second);
            const qsafe::LlamaConfig config =
                qsafe::config_from_hf_json(qsafe::tokenizer::detail::parse_json_file(config_path), config_path.string());
            const auto ckpt = qsafe::safetensors::Checkpoint::open(model_path);
            const qsafe::SafetensorsTensorSource source(ckpt, config, qsafe_fuzz::scratch_dir().string());
            check(qsafe::load_llama_weights(config, source, dense));
        }
    } catch (const qsafe::error& e) {
        qsafe_fuzz::rejected(e);
    }
    return 0;
}
