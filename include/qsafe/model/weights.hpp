#pragma once
// The weights of a Llama-family decoder. Norms and the token embedding stay fp32; every linear layer is a
// QuantizedLinear built by a LinearBuilder (RTN under per-tensor scheme rules by default, or a calibrated
// method). Tensors are named and laid out as in llama.cpp's GGUF files; Hugging Face checkpoints are mapped
// onto that convention on load (names, and the q/k row permutation that GGUF's interleaved RoPE expects).
// A linear layer stored as Q4_0 / Q8_0 can load as int4-g32-sym / int8-g32-sym, the same values without
// re-quantization (formats/ggml_equivalent.hpp): always in a qsafe quantized file, on request in any GGUF.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/core/error.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/memory_limit.hpp"
#include "qsafe/formats/ggml_equivalent.hpp"
#include "qsafe/io/gguf.hpp"
#include "qsafe/io/safetensors.hpp"
#include "qsafe/model/config.hpp"
#include "qsafe/model/scheme_rules.hpp"
#include "qsafe/registry/quantized_linear.hpp"
#include "qsafe/registry/scheme_registry.hpp"

namespace qsafe {

struct LayerWeights {
    VectorF attn_norm, ffn_norm;
    std::unique_ptr<QuantizedLinear> wq, wk, wv, wo, w_gate, w_up, w_down;
    VectorF bq, bk, bv;  // empty unless config.qkv_bias
};

struct LlamaWeights {
    LlamaConfig config;
    RowMatrixF token_embedding;  // vocab x d_model
    std::vector<LayerWeights> layers;
    VectorF output_norm;
    std::unique_ptr<QuantizedLinear> output;  // vocab x d_model (the embedding when tied)
    std::vector<float> rope_freq_factors;     // rope_dim / 2 divisors of the base frequencies, or empty

    /// Bytes and bits per weight over all linear layers (the quantized part of the model).
    std::size_t linear_storage_bytes() const {
        std::size_t b = output->storage_bytes();
        for (const auto& l : layers)
            for (const auto* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) b += (*w)->storage_bytes();
        return b;
    }
    std::size_t linear_weight_count() const {
        std::size_t n = output->rows() * output->cols();
        for (const auto& l : layers)
            for (const auto* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) n += (*w)->rows() * (*w)->cols();
        return n;
    }
    double linear_bits_per_weight() const {
        return 8.0 * static_cast<double>(linear_storage_bytes()) / static_cast<double>(linear_weight_count());
    }
};

namespace detail {
/// Throws format_error naming the tensor, row, column (and the ggml block, for block types of that many
/// values) of the first non-finite value: a NaN or Inf weight, or a block scale that makes a whole block
/// NaN, would otherwise make the model answer nothing without an error.
inline void require_finite_tensor(std::span<const float> values, std::size_t cols, const std::string& context,
                                  std::size_t block_size = 1) {
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (std::isfinite(values[i])) [[likely]]
            continue;
        const std::size_t row = cols == 0 ? 0 : i / cols, col = cols == 0 ? i : i % cols;
        throw format_error(context + ": non-finite value (" + std::to_string(values[i]) + ") at row " + std::to_string(row) +
                           ", column " + std::to_string(col) +
                           (block_size > 1 ? " (block " + std::to_string(col / block_size) + " of the row)" : std::string()));
    }
}
}  // namespace detail

/// fp32 tensors by GGUF-convention name, with their shape checked: matrices are rows x cols row-major.
/// Every value is finite (sources refuse tensors holding NaN or Inf, naming where).
class TensorSource {
  public:
    virtual ~TensorSource() = default;
    virtual bool has(const std::string& name) const = 0;
    virtual RowMatrixF matrix(const std::string& name, std::size_t rows, std::size_t cols) const = 0;
    virtual VectorF vector(const std::string& name, std::size_t n) const = 0;
    virtual std::string describe() const = 0;
    /// A linear layer the source already holds in quantized form (a qsafe quantized model file), or null.
    virtual std::unique_ptr<QuantizedLinear> stored_linear(const std::string& /*name*/) const { return nullptr; }
    /// The bytes stored_linear(name) would take, without loading it; nothing when it would return null.
    virtual std::optional<std::uint64_t> stored_linear_bytes(const std::string& /*name*/) const { return std::nullopt; }
};

/// Builds the layer for one linear tensor (name in GGUF convention, e.g. "blk.3.attn_q.weight") and, when
/// it can, says beforehand how many bytes that layer will take: the loader adds the estimates up and refuses
/// a model that cannot fit before allocating any of it. Any callable taking (name, matrix) converts to a
/// builder; one without an estimate is counted as nothing (the loader's check is then a lower bound).
class LinearBuilder {
  public:
    using Build = std::function<std::unique_ptr<QuantizedLinear>(const std::string& name, const RowMatrixF& w)>;
    /// Bytes of the layer built for a rows x cols tensor, or nothing when unknown.
    using Estimate = std::function<std::optional<std::uint64_t>(const std::string& name, std::size_t rows, std::size_t cols)>;

    LinearBuilder() = default;
    template <class F>
        requires(!std::is_same_v<std::remove_cvref_t<F>, LinearBuilder> && std::is_constructible_v<Build, F>)
    LinearBuilder(F build, Estimate estimate = {})  // NOLINT(google-explicit-constructor): lambdas convert, as before
        : build_(std::move(build)), estimate_(std::move(estimate)) {}

    std::unique_ptr<QuantizedLinear> operator()(const std::string& name, const RowMatrixF& w) const {
        if (!build_) throw config_error("tensor '" + name + "': no linear-layer builder was given to the loader");
        return build_(name, w);
    }
    std::optional<std::uint64_t> estimated_bytes(const std::string& name, std::size_t rows, std::size_t cols) const {
        return estimate_ ? estimate_(name, rows, cols) : std::nullopt;
    }

  private:
    Build build_;
    Estimate estimate_;
};

/// Round-to-nearest under per-tensor scheme rules; its estimate is the scheme's exact storage size.
inline LinearBuilder rtn_builder(SchemeRules rules, QuantizeOptions options = {}) {
    auto estimate = [rules](const std::string& name, std::size_t rows, std::size_t cols) -> std::optional<std::uint64_t> {
        try {
            return scheme_storage_bytes_by_name(rules.scheme_for(name), rows, cols);
        } catch (const config_error&) {
            return std::nullopt;  // an unknown scheme name: building the layer reports it, naming the tensor
        }
    };
    auto build = [rules = std::move(rules), options](const std::string& name, const RowMatrixF& w) {
        QuantizeOptions opt = options;
        opt.tensor_name = name;
        const std::string scheme = rules.scheme_for(name);
        check_named_outlier_columns(scheme, name, static_cast<std::size_t>(w.cols()));
        return quantize_by_name(scheme, w, opt);
    };
    return LinearBuilder(std::move(build), std::move(estimate));
}

/// Which Q4_0 / Q8_0 linear layers of a GGUF file load as their equal qsafe scheme instead of being
/// dequantized to fp32 and passed to the LinearBuilder.
enum class GgmlBlockLayers {
    /// Those a qsafe quantized file names with qsafe.tensor.<name>.scheme. Other GGUF files keep the fp32
    /// semantics: the builder's rules re-quantize them, and "*=fp32" is the dequantized reference.
    qsafe_files,
    /// Every 2-D Q4_0 / Q8_0 linear layer of any GGUF file (a llama.cpp file evaluated as stored).
    all,
};

class GgufTensorSource final : public TensorSource {
  public:
    explicit GgufTensorSource(const gguf::File& file, GgmlBlockLayers ggml_blocks = GgmlBlockLayers::qsafe_files)
        : file_(file), ggml_blocks_(ggml_blocks) {}
    bool has(const std::string& name) const override { return file_.find_tensor(name) != nullptr; }
    RowMatrixF matrix(const std::string& name, std::size_t rows, std::size_t cols) const override {
        const auto& t = file_.tensor(name);
        if (t.dims.size() != 2 || t.rows() != rows || t.row_length() != cols)
            throw format_error(describe() + ": tensor '" + name + "': shape " + shape(t) + ", expected [" + std::to_string(cols) +
                               ", " + std::to_string(rows) + "]");
        const std::vector<float> v = file_.tensor_to_f32(t);
        detail::require_finite_tensor(v, cols, describe() + ": tensor '" + name + "'", ggml_block_size(t.type));
        return Eigen::Map<const RowMatrixF>(v.data(), static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    }
    VectorF vector(const std::string& name, std::size_t n) const override {
        const auto& t = file_.tensor(name);
        if (t.n_elements() != n)
            throw format_error(describe() + ": tensor '" + name + "': shape " + shape(t) + ", expected [" + std::to_string(n) + "]");
        const std::vector<float> v = file_.tensor_to_f32(t);
        detail::require_finite_tensor(v, n, describe() + ": tensor '" + name + "'", ggml_block_size(t.type));
        return Eigen::Map<const VectorF>(v.data(), static_cast<Eigen::Index>(n));
    }
    std::string describe() const override { return file_.path().string(); }
    std::optional<std::uint64_t> stored_linear_bytes(const std::string& name) const override {
        // A stored layer keeps about the bytes the file holds for it (qsafe's blob, or Q4_0 / Q8_0 blocks,
        // which the equal qsafe schemes store in as many bytes).
        const gguf::TensorInfo* t = file_.find_tensor(name);
        if (!t) return std::nullopt;
        if (file_.get_optional<std::string>("qsafe.tensor." + name + ".scheme")) return t->n_bytes();
        if (ggml_blocks_ == GgmlBlockLayers::all && t->dims.size() == 2 && scheme_equivalent_to(t->type)) return t->n_bytes();
        return std::nullopt;
    }
    std::unique_ptr<QuantizedLinear> stored_linear(const std::string& name) const override {
        const auto scheme = file_.get_optional<std::string>("qsafe.tensor." + name + ".scheme");
        if (!scheme) {
            const gguf::TensorInfo* t = file_.find_tensor(name);
            if (ggml_blocks_ == GgmlBlockLayers::all && t && t->dims.size() == 2)
                if (const auto equal = scheme_equivalent_to(t->type)) return from_ggml_blocks(name, *t, *equal);
            return nullptr;
        }
        const auto& t = file_.tensor(name);
        if (t.type == GgmlType::I8 && t.dims.size() == 1) {
            try {
                return deserialize_by_name(*scheme, file_.tensor_bytes(t));
            } catch (const error& e) {
                throw format_error(describe() + ": tensor '" + name + "': " + e.what());
            }
        }
        const auto native = ggml_equivalent_type(*scheme);
        if (native && t.type == *native && t.dims.size() == 2) return from_ggml_blocks(name, t, *scheme);
        throw format_error(describe() + ": tensor '" + name + "' is marked as qsafe scheme '" + *scheme + "' but is a " +
                           std::to_string(t.dims.size()) + "-D " + std::string(ggml_type_name(t.type)) +
                           " tensor (expected a 1-D I8 tensor" +
                           (native ? " or a 2-D " + std::string(ggml_type_name(*native)) + " tensor" : std::string()) + ")");
    }

  private:
    /// A Q4_0 / Q8_0 tensor as the qsafe layer with the same values (codes and fp16 scales copied).
    std::unique_ptr<QuantizedLinear> from_ggml_blocks(const std::string& name, const gguf::TensorInfo& t,
                                                      const std::string& scheme) const {
        const std::string context = describe() + ": tensor '" + name + "'";
        const auto rows = static_cast<std::size_t>(t.rows()), cols = static_cast<std::size_t>(t.row_length());
        const std::vector<std::byte> bytes =
            t.type == GgmlType::Q4_0 ? serialize(qsafe::from_ggml_blocks<GgmlQ4_0Scheme>(file_.tensor_bytes(t), rows, cols, context))
                                     : serialize(qsafe::from_ggml_blocks<GgmlQ8_0Scheme>(file_.tensor_bytes(t), rows, cols, context));
        try {
            return deserialize_by_name(scheme, bytes);
        } catch (const error& e) {
            throw format_error(context + ": " + e.what());
        }
    }
    static std::string shape(const gguf::TensorInfo& t) {
        std::string s = "[";
        for (std::size_t i = 0; i < t.dims.size(); ++i) s += (i ? ", " : "") + std::to_string(t.dims[i]);
        return s + "]";
    }
    const gguf::File& file_;
    GgmlBlockLayers ggml_blocks_;
};

/// A Hugging Face LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM checkpoint seen through GGUF names.
class SafetensorsTensorSource final : public TensorSource {
  public:
    SafetensorsTensorSource(const safetensors::Checkpoint& ckpt, const LlamaConfig& config, std::string folder)
        : ckpt_(ckpt), config_(config), folder_(std::move(folder)) {}

    bool has(const std::string& name) const override {
        const std::string hf = hf_name(name);
        return !hf.empty() && ckpt_.has(hf);
    }
    RowMatrixF matrix(const std::string& name, std::size_t rows, std::size_t cols) const override {
        const std::string hf = hf_name(name);
        const auto& t = ckpt_.tensor(hf);
        if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != cols)
            throw format_error(describe() + ": tensor '" + hf + "': shape does not match [" + std::to_string(rows) + ", " +
                               std::to_string(cols) + "]");
        const std::vector<float> v = ckpt_.tensor_to_f32(hf);
        detail::require_finite_tensor(v, cols, describe() + ": tensor '" + hf + "'");
        RowMatrixF m = Eigen::Map<const RowMatrixF>(v.data(), static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
        if (name.find(".attn_q.") != std::string::npos) return permute_rope_rows(m, config_.n_heads);
        if (name.find(".attn_k.") != std::string::npos) return permute_rope_rows(m, config_.n_kv_heads);
        return m;
    }
    VectorF vector(const std::string& name, std::size_t n) const override {
        const std::string hf = hf_name(name);
        const auto& t = ckpt_.tensor(hf);
        if (t.n_elements() != n)
            throw format_error(describe() + ": tensor '" + hf + "': " + std::to_string(t.n_elements()) + " elements, expected " +
                               std::to_string(n));
        const std::vector<float> v = ckpt_.tensor_to_f32(hf);
        detail::require_finite_tensor(v, n, describe() + ": tensor '" + hf + "'");
        VectorF out = Eigen::Map<const VectorF>(v.data(), static_cast<Eigen::Index>(n));
        if (name.find(".attn_q.bias") != std::string::npos) return permute_rope_rows(out, config_.n_heads);
        if (name.find(".attn_k.bias") != std::string::npos) return permute_rope_rows(out, config_.n_kv_heads);
        return out;
    }
    std::string describe() const override { return folder_; }

    /// HF rotates halves of each head (rotate_half); GGUF rotates adjacent pairs. Row h*hd + j*hd/2 + i of
    /// the HF projection becomes row h*hd + 2i + j, as llama.cpp's converter does.
    template <class M>
    static M permute_rope_rows(const M& m, std::size_t n_heads) {
        const auto rows = static_cast<std::size_t>(m.rows());
        const std::size_t hd = rows / n_heads, half = hd / 2;
        M out(m.rows(), m.cols());
        for (std::size_t h = 0; h < n_heads; ++h)
            for (std::size_t j = 0; j < 2; ++j)
                for (std::size_t i = 0; i < half; ++i)
                    out.row(static_cast<Eigen::Index>(h * hd + 2 * i + j)) = m.row(static_cast<Eigen::Index>(h * hd + j * half + i));
        return out;
    }

  private:
    static std::string hf_name(const std::string& gguf) {
        if (gguf == "token_embd.weight") return "model.embed_tokens.weight";
        if (gguf == "output_norm.weight") return "model.norm.weight";
        if (gguf == "output.weight") return "lm_head.weight";
        if (!gguf.starts_with("blk.")) return {};
        const auto dot = gguf.find('.', 4);
        const std::string layer = gguf.substr(4, dot - 4), rest = gguf.substr(dot + 1);
        static const std::pair<const char*, const char*> map[] = {
            {"attn_norm.weight", "input_layernorm.weight"},      {"ffn_norm.weight", "post_attention_layernorm.weight"},
            {"attn_q.weight", "self_attn.q_proj.weight"},        {"attn_k.weight", "self_attn.k_proj.weight"},
            {"attn_v.weight", "self_attn.v_proj.weight"},        {"attn_output.weight", "self_attn.o_proj.weight"},
            {"attn_q.bias", "self_attn.q_proj.bias"},            {"attn_k.bias", "self_attn.k_proj.bias"},
            {"attn_v.bias", "self_attn.v_proj.bias"},            {"ffn_gate.weight", "mlp.gate_proj.weight"},
            {"ffn_up.weight", "mlp.up_proj.weight"},             {"ffn_down.weight", "mlp.down_proj.weight"}};
        for (const auto& [g, h] : map)
            if (rest == g) return "model.layers." + layer + "." + h;
        return {};
    }
    const safetensors::Checkpoint& ckpt_;
    const LlamaConfig& config_;
    std::string folder_;
};

/// What loading a model will allocate, worked out from its config and tensor table before any of it is.
struct ModelMemoryEstimate {
    std::uint64_t embedding = 0;      // the token embedding, kept fp32
    std::uint64_t norms = 0;          // the RMSNorm weights, fp32
    std::uint64_t linear_layers = 0;  // every linear layer as stored, or as the builder says it will build it
    std::uint64_t largest_built = 0;  // the largest layer the builder gets, as the fp32 matrix it is built from
    std::size_t layers_counted = 0;   // linear layers whose size is known (the others count as nothing)
    std::size_t layers_total = 0;
    std::uint64_t total() const { return embedding + norms + linear_layers + largest_built; }
};

/// Every dimension and the layer count are at most 2^24 (config validation): the sums cannot overflow.
inline ModelMemoryEstimate estimate_model_memory(const LlamaConfig& config, const TensorSource& source, const LinearBuilder& build) {
    const std::size_t d = config.d_model, q_dim = config.n_heads * config.head_dim, kv_dim = config.n_kv_heads * config.head_dim;
    ModelMemoryEstimate e;
    e.embedding = 4 * std::uint64_t{config.vocab_size} * d;
    e.norms = 4 * (std::uint64_t{2} * config.n_layers + 1) * d;
    auto add = [&](const std::string& name, std::size_t rows, std::size_t cols) {
        ++e.layers_total;
        if (const auto stored = source.stored_linear_bytes(name)) {
            e.linear_layers += *stored;
            ++e.layers_counted;
            return;
        }
        e.largest_built = std::max(e.largest_built, 4 * std::uint64_t{rows} * cols);
        if (const auto built = build.estimated_bytes(name, rows, cols)) {
            e.linear_layers += *built;
            ++e.layers_counted;
        }
    };
    for (std::size_t i = 0; i < config.n_layers; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        add(p + "attn_q.weight", q_dim, d);
        add(p + "attn_k.weight", kv_dim, d);
        add(p + "attn_v.weight", kv_dim, d);
        add(p + "attn_output.weight", d, q_dim);
        add(p + "ffn_gate.weight", config.d_ff, d);
        add(p + "ffn_up.weight", config.d_ff, d);
        add(p + "ffn_down.weight", d, config.d_ff);
    }
    add("output.weight", config.vocab_size, d);
    return e;
}

namespace detail {
/// Refuses, with the numbers, a model whose loaded form cannot fit in this machine's memory (or the
/// container's), before any of it is allocated.
inline void require_model_memory(const LlamaConfig& config, const TensorSource& source, const LinearBuilder& build) {
    const ModelMemoryEstimate e = estimate_model_memory(config, source, build);
    const auto n = [](std::uint64_t v) { return std::to_string(v); };
    require_memory(e.total(), source.describe(),
                   "the fp32 token embedding (" + n(config.vocab_size) + " x " + n(config.d_model) + ", " + gibibytes(e.embedding) +
                       "), " + n(e.layers_counted) + (e.layers_counted == e.layers_total ? "" : " of " + n(e.layers_total)) +
                       " linear layers as loaded (" + gibibytes(e.linear_layers) + ") and the largest layer as fp32 while it is built (" +
                       gibibytes(e.largest_built) + ")");
}
}  // namespace detail

/// Loads every tensor of the decoder from `source`; linear layers go through `build`.
inline LlamaWeights load_llama_weights(const LlamaConfig& config, const TensorSource& source, const LinearBuilder& build) {
    LlamaWeights w;
    w.config = config;
    // The block count sizes the layer table: a file claiming millions of blocks must hold their tensors
    // before that table is allocated (the first and the last block are asked for).
    for (const std::size_t block : {std::size_t{0}, config.n_layers - 1}) {
        const std::string norm = "blk." + std::to_string(block) + ".attn_norm.weight";
        if (config.n_layers > 0 && !source.has(norm))
            throw format_error(source.describe() + ": the model config says " + std::to_string(config.n_layers) + " blocks, but tensor '" +
                               norm + "' is missing");
    }
    const std::size_t d = config.d_model, q_dim = config.n_heads * config.head_dim, kv_dim = config.n_kv_heads * config.head_dim;
    detail::require_model_memory(config, source, build);
    w.token_embedding = source.matrix("token_embd.weight", config.vocab_size, d);
    auto linear = [&](const std::string& name, std::size_t rows, std::size_t cols) -> std::unique_ptr<QuantizedLinear> {
        if (auto stored = source.stored_linear(name)) {
            if (stored->rows() != rows || stored->cols() != cols)
                throw format_error(source.describe() + ": tensor '" + name + "' holds a " + std::to_string(stored->rows()) + "x" +
                                   std::to_string(stored->cols()) + " layer, expected " + std::to_string(rows) + "x" +
                                   std::to_string(cols));
            return stored;
        }
        return build(name, source.matrix(name, rows, cols));
    };
    w.layers.resize(config.n_layers);
    for (std::size_t i = 0; i < config.n_layers; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        auto& l = w.layers[i];
        l.attn_norm = source.vector(p + "attn_norm.weight", d);
        l.ffn_norm = source.vector(p + "ffn_norm.weight", d);
        l.wq = linear(p + "attn_q.weight", q_dim, d);
        l.wk = linear(p + "attn_k.weight", kv_dim, d);
        l.wv = linear(p + "attn_v.weight", kv_dim, d);
        l.wo = linear(p + "attn_output.weight", d, q_dim);
        l.w_gate = linear(p + "ffn_gate.weight", config.d_ff, d);
        l.w_up = linear(p + "ffn_up.weight", config.d_ff, d);
        l.w_down = linear(p + "ffn_down.weight", d, config.d_ff);
        if (config.qkv_bias) {
            l.bq = source.vector(p + "attn_q.bias", q_dim);
            l.bk = source.vector(p + "attn_k.bias", kv_dim);
            l.bv = source.vector(p + "attn_v.bias", kv_dim);
        }
    }
    w.output_norm = source.vector("output_norm.weight", d);
    const bool tied = config.tied_embeddings || !source.has("output.weight");
    if (auto stored = source.has("output.weight") ? source.stored_linear("output.weight") : nullptr)
        w.output = std::move(stored);
    else
        w.output = build("output.weight", tied ? w.token_embedding : source.matrix("output.weight", config.vocab_size, d));
    if (source.has("rope_freqs.weight")) {
        const VectorF f = source.vector("rope_freqs.weight", config.rope_dim / 2);
        w.rope_freq_factors.assign(f.data(), f.data() + f.size());
    } else if (config.rope_scaling) {
        // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
        const auto& s = *config.rope_scaling;
        const double low_wavelen = static_cast<double>(s.original_context_length) / s.low_freq_factor;
        const double high_wavelen = static_cast<double>(s.original_context_length) / s.high_freq_factor;
        for (std::size_t i = 0; i < config.rope_dim / 2; ++i) {
            const double freq = std::pow(static_cast<double>(config.rope_theta), -2.0 * static_cast<double>(i) / static_cast<double>(config.rope_dim));
            const double wavelen = 2.0 * 3.14159265358979323846 / freq;
            double factor = 1.0;
            if (wavelen > low_wavelen) {
                factor = s.factor;
            } else if (wavelen >= high_wavelen) {
                const double smooth = (static_cast<double>(s.original_context_length) / wavelen - s.low_freq_factor) /
                                      (s.high_freq_factor - s.low_freq_factor);
                factor = 1.0 / ((1.0 - smooth) / s.factor + smooth);
            }
            w.rope_freq_factors.push_back(static_cast<float>(factor));
        }
    }
    return w;
}

}  // namespace qsafe
