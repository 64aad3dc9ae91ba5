#pragma once
// Loading a model with its tokenizer and chat template from a GGUF file or a Hugging Face folder
// (config.json + tokenizer.json [+ tokenizer_config.json] + safetensors, possibly sharded).
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "qsafe/core/error.hpp"
#include "qsafe/io/gguf.hpp"
#include "qsafe/io/safetensors.hpp"
#include "qsafe/model/config.hpp"
#include "qsafe/model/decoder.hpp"
#include "qsafe/model/weights.hpp"
#include "qsafe/tokenizer/chat_template.hpp"
#include "qsafe/tokenizer/from_gguf.hpp"
#include "qsafe/tokenizer/from_tokenizer_json.hpp"
#include "qsafe/tokenizer/tokenizer.hpp"

namespace qsafe {

struct LoadOptions {
    /// Builds each linear layer; default: keep everything fp32.
    LinearBuilder build_linear = rtn_builder(SchemeRules::parse("*=fp32"));
    /// A chat family name ("chatml", "llama2", "mistral", "llama3", ...) overriding detection.
    std::string chat_template_override;
    /// GGUF files: which Q4_0 / Q8_0 linear layers load as int4-g32-sym / int8-g32-sym as stored (qsafe
    /// quantized files always; `all` also for other files, instead of fp32 values through build_linear).
    GgmlBlockLayers ggml_block_layers = GgmlBlockLayers::qsafe_files;
};

struct LoadedModel {
    std::string source;  // path the model was loaded from
    std::string name;    // general.name, or the folder name
    LlamaModel model;
    tokenizer::Tokenizer tokenizer;
    tokenizer::ChatTemplate chat_template;
};

namespace detail {
inline tokenizer::ChatTemplate chat_template_for(const std::optional<std::string>& jinja, const std::string& override_name,
                                                 const std::string& source) {
    if (jinja) {
        try {
            return tokenizer::ChatTemplate::from_jinja(*jinja, override_name);
        } catch (const config_error& e) {
            // The template comes from the model's files: say which model, and how to choose a format.
            throw config_error(source + ": " + e.what() + " (--chat-template chatml, llama2, mistral or llama3)");
        }
    }
    if (!override_name.empty()) return tokenizer::ChatTemplate::from_jinja("", override_name);
    throw config_error(source + ": the model has no chat template; choose one by name (--chat-template)");
}

/// Every token id the tokenizer can produce must have a row in the embedding (which the loader has checked
/// against config.vocab_size): a larger vocabulary would read past the embedding. A smaller one is fine
/// (embeddings padded to a multiple of 64 or 128 are common).
inline void check_vocabulary_fits(std::size_t tokenizer_size, const LlamaConfig& config, const std::string& source) {
    if (tokenizer_size > config.vocab_size)
        throw format_error(source + ": the tokenizer has " + std::to_string(tokenizer_size) + " tokens, but the embedding has rows for " +
                           std::to_string(config.vocab_size) + " (token ids from " + std::to_string(config.vocab_size) +
                           " on would read past it)");
}
}  // namespace detail

inline LoadedModel load_model(const std::filesystem::path& path, const LoadOptions& options = {}) {
    if (!std::filesystem::exists(path)) throw io_error(path.string() + ": no such file or folder");
    if (std::filesystem::is_directory(path)) {
        const auto config_path = path / "config.json";
        const nlohmann::json config_json = tokenizer::detail::parse_json_file(config_path);
        const LlamaConfig config = config_from_hf_json(config_json, config_path.string());
        const auto ckpt = safetensors::Checkpoint::open(path);
        const SafetensorsTensorSource source(ckpt, config, path.string());
        auto spec = tokenizer::spec_from_tokenizer_json(path / "tokenizer.json");
        detail::check_vocabulary_fits(spec.tokens.size(), config, (path / "tokenizer.json").string());
        std::optional<std::string> jinja;
        if (const auto tc = path / "tokenizer_config.json"; std::filesystem::exists(tc)) {
            const auto j = tokenizer::detail::parse_json_file(tc);
            if (j.contains("chat_template") && j["chat_template"].is_string()) jinja = j["chat_template"].get<std::string>();
        }
        return LoadedModel{path.string(), path.filename().string(),
                           LlamaModel(load_llama_weights(config, source, options.build_linear)),
                           tokenizer::Tokenizer(std::move(spec)),
                           detail::chat_template_for(jinja, options.chat_template_override, path.string())};
    }
    const auto file = gguf::File::open(path);
    const LlamaConfig config = config_from_gguf(file);
    const GgufTensorSource source(file, options.ggml_block_layers);
    auto spec = tokenizer::spec_from_gguf(file);
    detail::check_vocabulary_fits(spec.tokens.size(), config, file.path().string() + ": tokenizer.ggml.tokens");
    return LoadedModel{path.string(), file.get_optional<std::string>("general.name").value_or(path.stem().string()),
                       LlamaModel(load_llama_weights(config, source, options.build_linear)),
                       tokenizer::Tokenizer(std::move(spec)),
                       detail::chat_template_for(file.get_optional<std::string>("tokenizer.chat_template"),
                                                 options.chat_template_override, path.string())};
}

/// The default model's path: $QSAFE_MODEL, else $QSAFE_CACHE_DIR (or ~/.cache/qsafe)/SmolLM2-135M-Instruct.Q4_1.gguf.
inline std::filesystem::path default_model_path() {
    if (const char* m = std::getenv("QSAFE_MODEL"); m && *m) return m;
    std::filesystem::path dir;
    if (const char* c = std::getenv("QSAFE_CACHE_DIR"); c && *c) dir = c;
    else if (const char* h = std::getenv("HOME"); h && *h) dir = std::filesystem::path(h) / ".cache" / "qsafe";
    else dir = ".cache/qsafe";
    return dir / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace qsafe
