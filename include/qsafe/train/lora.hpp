#pragma once
// LoRA adapters (Hu et al. 2021) over the block projections of a Llama decoder: for a frozen base layer
// y = x·Wᵀ, the adapted layer is y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ with A: r × in and B: out × r. The base may be
// fp32 or any quantized scheme: its product runs on its own kernels, the adapter adds the low-rank term.
//
// Targets are chosen with the tensor-name globs of `--rules` (model/scheme_rules.hpp): "attn_*,ffn_*",
// "blk.1?.attn_q", ... over the seven block projections (attn_q, attn_k, attn_v, attn_output, ffn_gate,
// ffn_up, ffn_down). Initialisation follows PEFT: A ~ U(−1/√in, 1/√in) (Kaiming-uniform with a = √5),
// B = 0, so the adapted model starts equal to the base.
//
// Files: one format, llama.cpp's GGUF LoRA adapter (general.type = "adapter", adapter.type = "lora",
// adapter.lora.alpha; tensors "<base tensor>.lora_a" with ggml dims [in, r] and ".lora_b" with [r, out],
// F32), so an adapter qsafe trains is loaded by llama.cpp (`--lora`, llama-cpp-python's `lora_path`) onto
// the same base. Rows of q and k follow the base file's (GGUF, adjacent-pair RoPE) order, as llama.cpp's
// converter writes them.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/io/gguf.hpp"
#include "qsafe/io/gguf_writer.hpp"
#include "qsafe/model/scheme_rules.hpp"
#include "qsafe/model/weights.hpp"
#include "qsafe/registry/quantized_linear.hpp"
#include "qsafe/train/weight_mask.hpp"

namespace qsafe::train {

/// The seven projections of a Llama block, in the order llama.cpp and qsafe list them.
inline constexpr const char* block_projections[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

/// The linear layer of `weights` that `tensor` names ("blk.3.ffn_up.weight"), or null.
inline std::unique_ptr<QuantizedLinear>* block_linear(LlamaWeights& weights, std::string_view tensor) {
    if (!tensor.starts_with("blk.")) return nullptr;
    const auto dot = tensor.find('.', 4);
    if (dot == std::string_view::npos) return nullptr;
    std::size_t layer = 0;
    for (char ch : tensor.substr(4, dot - 4)) {
        if (ch < '0' || ch > '9') return nullptr;
        layer = layer * 10 + static_cast<std::size_t>(ch - '0');
    }
    if (layer >= weights.layers.size()) return nullptr;
    LayerWeights& l = weights.layers[layer];
    const std::string_view rest = tensor.substr(dot + 1);
    std::unique_ptr<QuantizedLinear>* slots[] = {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down};
    for (std::size_t p = 0; p < 7; ++p)
        if (rest == std::string(block_projections[p]) + ".weight") return slots[p];
    return nullptr;
}

/// The names of every block projection of a model, layer by layer in block_projections order.
inline std::vector<std::string> block_projection_names(std::size_t n_layers) {
    std::vector<std::string> names;
    for (std::size_t l = 0; l < n_layers; ++l)
        for (const char* p : block_projections) names.push_back("blk." + std::to_string(l) + "." + p + ".weight");
    return names;
}

struct LoraConfig {
    std::size_t rank = 16;
    float alpha = 32.0f;
    float dropout = 0.0f;  // on the adapter's input, training only (as PEFT)
    /// Comma-separated globs over tensor names (model/scheme_rules.hpp's matching).
    std::string targets = "attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down";
    std::uint64_t seed = 0;  // initialisation of A

    float scale() const noexcept { return alpha / static_cast<float>(rank); }
    void validate() const {
        if (rank == 0) throw config_error("LoRA: rank must be positive");
        if (!(alpha > 0.0f) || !std::isfinite(alpha)) throw config_error("LoRA: alpha must be a positive number");
        if (!(dropout >= 0.0f && dropout < 1.0f)) throw config_error("LoRA: dropout must be in [0, 1)");
    }
};

/// The adapter of one base tensor, with the gradients the training layer accumulates into.
struct LoraPair {
    std::string tensor;  // base tensor, e.g. "blk.3.attn_q.weight"
    RowMatrixF a;        // rank × in
    RowMatrixF b;        // out × rank
    RowMatrixF grad_a, grad_b;
    /// Set: the update (α/r)·B·A reaches these positions only (train/weight_mask.hpp); unset: all of them.
    std::optional<WeightMask> mask;

    std::size_t rank() const noexcept { return static_cast<std::size_t>(a.rows()); }
    std::size_t in_features() const noexcept { return static_cast<std::size_t>(a.cols()); }
    std::size_t out_features() const noexcept { return static_cast<std::size_t>(b.rows()); }

    /// A masked pair's update at its masked entries, in the mask's CSR order: scale · B[i,:]·A[:,j].
    std::vector<float> masked_deltas(float scale) const {
        std::vector<float> out;
        if (!mask) return out;
        out.resize(mask->count());
        const auto r = a.rows();
        for (std::size_t i = 0; i < mask->rows; ++i)
            for (std::uint32_t e = mask->row_ptr[i]; e < mask->row_ptr[i + 1]; ++e) {
                float sum = 0.0f;
                for (Eigen::Index k = 0; k < r; ++k) sum += b(static_cast<Eigen::Index>(i), k) * a(k, mask->col[e]);
                out[e] = scale * sum;
            }
        return out;
    }
};

/// Splits "a, b,c" into trimmed non-empty items.
inline std::vector<std::string> split_globs(std::string_view text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t end = std::min(text.find(',', start), text.size());
        std::string item = detail::trim(text.substr(start, end - start));
        if (!item.empty()) out.push_back(std::move(item));
        if (end == text.size()) break;
        start = end + 1;
    }
    return out;
}

class LoraAdapter {
  public:
    LoraAdapter() = default;

    /// A fresh adapter on every block projection of `base` that a target glob matches (PEFT's
    /// initialisation). Throws config_error naming a glob that matches no projection.
    static LoraAdapter create(const LlamaWeights& base, const LoraConfig& config) {
        config.validate();
        LoraAdapter adapter;
        adapter.alpha_ = config.alpha;
        const std::vector<std::string> globs = split_globs(config.targets);
        if (globs.empty()) throw config_error("LoRA: no target tensors given");
        std::vector<bool> used(globs.size(), false);
        auto& mutable_base = const_cast<LlamaWeights&>(base);  // block_linear only reads here
        std::uint64_t index = 0;
        for (const std::string& name : block_projection_names(base.layers.size())) {
            bool match = false;
            for (std::size_t g = 0; g < globs.size(); ++g)
                if (tensor_name_matches(globs[g], name)) match = used[g] = true;
            ++index;
            if (!match) continue;
            const QuantizedLinear& layer = **block_linear(mutable_base, name);
            LoraPair pair;
            pair.tensor = name;
            const auto r = static_cast<Eigen::Index>(config.rank), in = static_cast<Eigen::Index>(layer.cols()),
                       out = static_cast<Eigen::Index>(layer.rows());
            pair.a.resize(r, in);
            // A per-tensor stream (seed, tensor index): the same tensor gets the same A whatever else is targeted.
            std::uint64_t state = config.seed * 0x9E3779B97F4A7C15ull + index;
            const double bound = 1.0 / std::sqrt(static_cast<double>(in));
            for (Eigen::Index i = 0; i < pair.a.size(); ++i)
                pair.a.data()[i] = static_cast<float>((2.0 * unit_random(state) - 1.0) * bound);
            pair.b = RowMatrixF::Zero(out, r);
            adapter.pairs_.push_back(std::move(pair));
        }
        for (std::size_t g = 0; g < globs.size(); ++g)
            if (!used[g]) throw config_error("LoRA: target '" + globs[g] + "' matches no block projection (attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down of blk.0-" + std::to_string(base.layers.size() - 1) + ")");
        adapter.zero_grad();
        return adapter;
    }

    float alpha() const noexcept { return alpha_; }
    std::size_t rank() const noexcept { return pairs_.empty() ? 0 : pairs_.front().rank(); }
    float scale() const noexcept { return pairs_.empty() ? 0.0f : alpha_ / static_cast<float>(rank()); }
    std::vector<LoraPair>& pairs() noexcept { return pairs_; }
    const std::vector<LoraPair>& pairs() const noexcept { return pairs_; }
    std::size_t parameter_count() const noexcept {
        std::size_t n = 0;
        for (const auto& p : pairs_) n += static_cast<std::size_t>(p.a.size() + p.b.size());
        return n;
    }

    const LoraPair* find(std::string_view tensor) const {
        for (const auto& p : pairs_)
            if (p.tensor == tensor) return &p;
        return nullptr;
    }
    LoraPair* find(std::string_view tensor) { return const_cast<LoraPair*>(std::as_const(*this).find(tensor)); }

    void zero_grad() {
        for (auto& p : pairs_) {
            p.grad_a = RowMatrixF::Zero(p.a.rows(), p.a.cols());
            p.grad_b = RowMatrixF::Zero(p.b.rows(), p.b.cols());
        }
    }

    /// Checks that every adapted tensor exists in `base` with the adapter's shape.
    void check_fits(const LlamaWeights& base, const std::string& source) const {
        auto& mutable_base = const_cast<LlamaWeights&>(base);
        for (const auto& p : pairs_) {
            const auto* slot = block_linear(mutable_base, p.tensor);
            if (slot == nullptr) throw format_error(source + ": adapter tensor '" + p.tensor + "' is not a block projection of the model");
            if (p.mask && (p.mask->rows != p.out_features() || p.mask->cols != p.in_features()))
                throw format_error(source + ": the weight mask of '" + p.tensor + "' is " + std::to_string(p.mask->rows) + "x" +
                                   std::to_string(p.mask->cols) + ", the adapter's update " + std::to_string(p.out_features()) + "x" +
                                   std::to_string(p.in_features()));
            if ((*slot)->cols() != p.in_features() || (*slot)->rows() != p.out_features())
                throw format_error(source + ": adapter for '" + p.tensor + "' is " + std::to_string(p.out_features()) + "x" +
                                   std::to_string(p.in_features()) + ", the model's layer is " + std::to_string((*slot)->rows()) +
                                   "x" + std::to_string((*slot)->cols()));
        }
    }

    /// Folds the adapter into the base: every adapted layer becomes fp32 W + (α/r)·B·A (a quantized layer
    /// is dequantized first; re-quantize the result with the usual methods if a quantized model is wanted).
    /// A masked pair adds its update at the masked positions only (safety/safety_patch.hpp folds masked
    /// pairs into a quantized model without dequantizing it).
    void merge_into(LlamaWeights& base) const {
        check_fits(base, "merge");
        for (const auto& p : pairs_) {
            auto& slot = *block_linear(base, p.tensor);
            RowMatrixF w = slot->dequantize();
            if (p.mask) {
                const std::vector<float> delta = p.masked_deltas(scale());
                for (std::size_t i = 0; i < p.mask->rows; ++i)
                    for (std::uint32_t e = p.mask->row_ptr[i]; e < p.mask->row_ptr[i + 1]; ++e)
                        w(static_cast<Eigen::Index>(i), p.mask->col[e]) += delta[e];
            } else {
                w.noalias() += scale() * (p.b * p.a);
            }
            slot = std::make_unique<DenseLinear>(std::move(w));
        }
    }

    /// Whether any pair is masked.
    bool masked() const noexcept {
        for (const auto& p : pairs_)
            if (p.mask) return true;
        return false;
    }

    /// Writes the adapter as a llama.cpp GGUF LoRA adapter for a base of `architecture` ("llama", ...).
    void save(const std::filesystem::path& path, const std::string& architecture) const {
        // llama.cpp's format has no place for a mask: loaded there, a masked adapter would change every weight.
        if (masked())
            throw config_error(path.string() + ": a masked LoRA adapter has no llama.cpp adapter form; fold it into the model instead "
                               "(safety/safety_patch.hpp)");
        gguf::Writer out;
        out.set("general.architecture", architecture);
        out.set("general.type", "adapter");
        out.set("adapter.type", "lora");
        out.set("adapter.lora.alpha", alpha_);
        out.set("qsafe.lora.rank", static_cast<std::uint32_t>(rank()));
        for (const auto& p : pairs_) {
            out.add_tensor_f32(p.tensor + ".lora_a", {p.in_features(), p.rank()}, {p.a.data(), static_cast<std::size_t>(p.a.size())});
            out.add_tensor_f32(p.tensor + ".lora_b", {p.rank(), p.out_features()}, {p.b.data(), static_cast<std::size_t>(p.b.size())});
        }
        out.write(path);
    }

    /// Reads a GGUF LoRA adapter (llama.cpp's layout; F32, F16 or Q8_0 tensors).
    static LoraAdapter load(const std::filesystem::path& path) {
        const gguf::File file = gguf::File::open(path);
        const std::string where = path.string();
        if (file.get_optional<std::string>("general.type").value_or("") != "adapter" ||
            file.get_optional<std::string>("adapter.type").value_or("") != "lora")
            throw format_error(where + ": not a LoRA adapter (general.type must be 'adapter' and adapter.type 'lora')");
        LoraAdapter adapter;
        adapter.alpha_ = file.get_optional<float>("adapter.lora.alpha").value_or(0.0f);
        for (const auto& t : file.tensors()) {
            const std::string& name = t.name;
            if (!name.ends_with(".lora_a")) {
                if (!name.ends_with(".lora_b")) throw format_error(where + ": tensor '" + name + "' is neither a .lora_a nor a .lora_b tensor");
                continue;
            }
            const std::string base = name.substr(0, name.size() - 7);
            const gguf::TensorInfo* tb = file.find_tensor(base + ".lora_b");
            if (tb == nullptr) throw format_error(where + ": tensor '" + name + "' has no matching '" + base + ".lora_b'");
            if (t.dims.size() != 2 || tb->dims.size() != 2 || t.dims[1] != tb->dims[0])
                throw format_error(where + ": tensors '" + name + "' and '" + base + ".lora_b' do not have shapes [in, r] and [r, out]");
            LoraPair pair;
            pair.tensor = base;
            const std::vector<float> a = file.tensor_to_f32(t), b = file.tensor_to_f32(*tb);
            pair.a = Eigen::Map<const RowMatrixF>(a.data(), static_cast<Eigen::Index>(t.dims[1]), static_cast<Eigen::Index>(t.dims[0]));
            pair.b = Eigen::Map<const RowMatrixF>(b.data(), static_cast<Eigen::Index>(tb->dims[1]), static_cast<Eigen::Index>(tb->dims[0]));
            for (const float* v : {a.data(), b.data()})
                for (std::size_t i = 0, n = v == a.data() ? a.size() : b.size(); i < n; ++i)
                    if (!std::isfinite(v[i])) throw format_error(where + ": tensor '" + base + (v == a.data() ? ".lora_a" : ".lora_b") + "' holds a non-finite value at element " + std::to_string(i));
            if (!adapter.pairs_.empty() && pair.rank() != adapter.rank())
                throw format_error(where + ": tensor '" + name + "' has rank " + std::to_string(pair.rank()) + ", others " + std::to_string(adapter.rank()));
            adapter.pairs_.push_back(std::move(pair));
        }
        if (adapter.pairs_.empty()) throw format_error(where + ": the adapter holds no .lora_a / .lora_b tensors");
        // llama.cpp reads a missing or zero alpha as "scale 1": keep that meaning.
        if (!(adapter.alpha_ > 0.0f)) adapter.alpha_ = static_cast<float>(adapter.rank());
        adapter.zero_grad();
        return adapter;
    }

  private:
    /// splitmix64 → a double in [0, 1): the same stream on every platform (std distributions are not).
    static double unit_random(std::uint64_t& state) noexcept {
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return static_cast<double>(z >> 11) * 0x1.0p-53;
    }

    float alpha_ = 0.0f;
    std::vector<LoraPair> pairs_;
};

}  // namespace qsafe::train
