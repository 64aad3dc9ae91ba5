#pragma once
// Hyper-parameters of a Llama-family decoder, read from GGUF metadata (`<arch>.*` keys) or from a Hugging
// Face config.json. Nothing is assumed: every value comes from the file or is a documented default of the
// format (rope theta 10000, norm epsilon 1e-5 when a key is absent).
#include <cmath>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "qsafe/core/error.hpp"
#include "qsafe/io/gguf.hpp"

namespace qsafe {

/// Llama 3.1-style frequency-dependent RoPE scaling ("rope_type": "llama3").
struct Llama3RopeScaling {
    float factor = 8.0f;
    float low_freq_factor = 1.0f;
    float high_freq_factor = 4.0f;
    std::size_t original_context_length = 8192;
};

struct LlamaConfig {
    std::string architecture = "llama";  // llama | mistral | qwen2
    std::size_t n_layers = 0;
    std::size_t d_model = 0;
    std::size_t n_heads = 0;
    std::size_t n_kv_heads = 0;
    std::size_t head_dim = 0;
    std::size_t rope_dim = 0;  // leading dimensions of each head that are rotated (= head_dim for Llama)
    std::size_t d_ff = 0;
    std::size_t vocab_size = 0;
    std::size_t context_length = 0;
    float rope_theta = 10000.0f;
    float norm_eps = 1e-5f;
    bool tied_embeddings = false;
    bool qkv_bias = false;  // Qwen2 adds biases to the q, k and v projections
    std::optional<Llama3RopeScaling> rope_scaling;

    /// The head dimension when the file does not state it: the width split evenly over the heads. A width the
    /// heads do not divide is refused here, where the cause is known, rather than as a tensor shape later.
    static std::size_t implied_head_dim(std::size_t width, std::size_t heads, const std::string& source, std::string_view key) {
        if (heads == 0) return 0;  // validate() names the zero head count
        if (width % heads != 0)
            throw format_error(source + ": invalid model config: model width " + std::to_string(width) +
                               " is not a multiple of the head count " + std::to_string(heads) + " (and no '" +
                               std::string(key) + "' gives the head dimension)");
        return width / heads;
    }

    /// Larger than any real model's dimension (layers, width, heads, vocabulary, context): a file claiming more
    /// is corrupt, and is refused before anything is sized by it.
    static constexpr std::size_t max_dimension = std::size_t{1} << 24;

    void validate(const std::string& source) const {
        auto fail = [&](const std::string& what) { throw format_error(source + ": invalid model config: " + what); };
        if (n_layers == 0 || d_model == 0 || n_heads == 0 || n_kv_heads == 0 || d_ff == 0 || vocab_size == 0)
            fail("a dimension is zero");
        // A zero context would only surface as "sequence exceeds the context length 0" at the first prompt.
        if (context_length == 0) fail("context length is zero");
        const std::pair<const char*, std::size_t> dimensions[] = {
            {"layer count", n_layers}, {"model width", d_model},  {"head count", n_heads},
            {"KV head count", n_kv_heads}, {"head dimension", head_dim}, {"feed-forward width", d_ff},
            {"vocabulary size", vocab_size}, {"context length", context_length}};
        for (const auto& [name, value] : dimensions)
            if (value > max_dimension)
                fail(std::string(name) + " " + std::to_string(value) + " exceeds " + std::to_string(max_dimension));
        if (n_heads % n_kv_heads != 0) fail("head count " + std::to_string(n_heads) + " is not a multiple of the KV head count " + std::to_string(n_kv_heads));
        if (head_dim == 0 || head_dim % 2 != 0) fail("head dimension must be even and non-zero");
        if (rope_dim == 0 || rope_dim > head_dim || rope_dim % 2 != 0) fail("rope dimension " + std::to_string(rope_dim) + " is invalid");
        if (!(rope_theta > 0.0f) || !(norm_eps > 0.0f) || !std::isfinite(rope_theta) || !std::isfinite(norm_eps))
            fail("rope theta and norm epsilon must be positive and finite (rope theta " + std::to_string(rope_theta) +
                 ", norm epsilon " + std::to_string(norm_eps) + ")");
    }
};

/// Reads the config of a llama / mistral / qwen2 GGUF file.
inline LlamaConfig config_from_gguf(const gguf::File& file) {
    LlamaConfig c;
    c.architecture = file.get<std::string>("general.architecture");
    if (c.architecture != "llama" && c.architecture != "mistral" && c.architecture != "qwen2")
        throw format_error(file.path().string() + ": architecture '" + c.architecture +
                           "' is not supported (llama, mistral, qwen2)");
    const std::string a = c.architecture + ".";
    c.n_layers = file.get<std::size_t>(a + "block_count");
    c.d_model = file.get<std::size_t>(a + "embedding_length");
    c.n_heads = file.get<std::size_t>(a + "attention.head_count");
    c.n_kv_heads = file.get_optional<std::size_t>(a + "attention.head_count_kv").value_or(c.n_heads);
    c.d_ff = file.get<std::size_t>(a + "feed_forward_length");
    c.context_length = file.get_optional<std::size_t>(a + "context_length").value_or(2048);
    if (const auto key_length = file.get_optional<std::size_t>(a + "attention.key_length")) c.head_dim = *key_length;
    else c.head_dim = LlamaConfig::implied_head_dim(c.d_model, c.n_heads, file.path().string(), a + "attention.key_length");
    c.rope_dim = file.get_optional<std::size_t>(a + "rope.dimension_count").value_or(c.head_dim);
    c.rope_theta = file.get_optional<float>(a + "rope.freq_base").value_or(10000.0f);
    c.norm_eps = file.get_optional<float>(a + "attention.layer_norm_rms_epsilon").value_or(1e-5f);
    if (auto v = file.get_optional<std::size_t>(a + "vocab_size")) c.vocab_size = *v;
    else if (const auto* t = file.find_tensor("token_embd.weight")) c.vocab_size = t->rows();
    c.tied_embeddings = file.find_tensor("output.weight") == nullptr;
    c.qkv_bias = file.find_tensor("blk.0.attn_q.bias") != nullptr;
    // Llama 3.1 scaling is applied through the `rope_freqs.weight` tensor in GGUF files (see decoder).
    c.validate(file.path().string());
    return c;
}

/// Reads a Hugging Face config.json of LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM.
inline LlamaConfig config_from_hf_json(const nlohmann::json& j, const std::string& source) {
    LlamaConfig c;
    auto need = [&](const char* key) -> const nlohmann::json& {
        if (!j.contains(key)) throw format_error(source + ": key '" + std::string(key) + "' missing");
        return j.at(key);
    };
    // A count must be a non-negative integer: nlohmann's get<std::size_t>() would turn -1 into 2^64 - 1.
    // The error names the value's type, not the value, which may be nested arbitrarily deep.
    auto count = [&](const char* key, const nlohmann::json& v) -> std::size_t {
        if (v.is_number_unsigned() || (v.is_number_integer() && v.get<long long>() >= 0)) return v.get<std::size_t>();
        if (v.is_number_integer())
            throw format_error(source + ": '" + std::string(key) + "' is " + std::to_string(v.get<long long>()) +
                               ", not a count");
        throw format_error(source + ": '" + std::string(key) + "' must be a non-negative integer, not " +
                           std::string(v.type_name()));
    };
    auto optional_count = [&](const char* key, std::size_t fallback) -> std::size_t {
        return j.contains(key) && !j.at(key).is_null() ? count(key, j.at(key)) : fallback;
    };
    std::string arch = "LlamaForCausalLM";
    if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty()) {
        const nlohmann::json& first = j["architectures"][0];
        if (!first.is_string())
            throw format_error(source + ": 'architectures' must list strings, but its first entry is " +
                               std::string(first.type_name()));
        arch = first.get<std::string>();
    }
    if (arch == "LlamaForCausalLM") c.architecture = "llama";
    else if (arch == "MistralForCausalLM") c.architecture = "mistral";
    else if (arch == "Qwen2ForCausalLM") c.architecture = "qwen2";
    else throw format_error(source + ": architecture '" + arch + "' is not supported");
    try {
        c.n_layers = count("num_hidden_layers", need("num_hidden_layers"));
        c.d_model = count("hidden_size", need("hidden_size"));
        c.n_heads = count("num_attention_heads", need("num_attention_heads"));
        c.n_kv_heads = optional_count("num_key_value_heads", c.n_heads);
        c.d_ff = count("intermediate_size", need("intermediate_size"));
        c.vocab_size = count("vocab_size", need("vocab_size"));
        c.context_length = optional_count("max_position_embeddings", 2048);
        c.head_dim = j.contains("head_dim") && !j["head_dim"].is_null()
                         ? count("head_dim", j["head_dim"])
                         : LlamaConfig::implied_head_dim(c.d_model, c.n_heads, source, "head_dim");
        c.rope_dim = c.head_dim;
        c.rope_theta = j.value("rope_theta", 10000.0f);
        c.norm_eps = j.value("rms_norm_eps", 1e-5f);
        c.tied_embeddings = j.value("tie_word_embeddings", false);
        c.qkv_bias = c.architecture == "qwen2";
        if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
            const auto& rs = j["rope_scaling"];
            const std::string type = rs.value("rope_type", rs.value("type", std::string()));
            if (type == "llama3") {
                Llama3RopeScaling s;
                s.factor = rs.value("factor", 8.0f);
                s.low_freq_factor = rs.value("low_freq_factor", 1.0f);
                s.high_freq_factor = rs.value("high_freq_factor", 4.0f);
                // a count, not value<std::size_t>(): that would cast 1e30 (undefined behaviour) or wrap -1
                const auto original = rs.find("original_max_position_embeddings");
                s.original_context_length = original != rs.end() && !original->is_null()
                                                ? count("rope_scaling.original_max_position_embeddings", *original)
                                                : std::size_t{8192};
                c.rope_scaling = s;
            } else if (!type.empty() && type != "default") {
                throw format_error(source + ": rope_scaling type '" + type + "' is not supported");
            }
        }
    } catch (const nlohmann::json::exception& e) {
        throw format_error(source + ": " + e.what());
    }
    c.validate(source);
    return c;
}

}  // namespace qsafe
