#pragma once
// A tiny random Llama written by the tests in Hugging Face layout (safetensors + config.json) and in
// llama.cpp layout (GGUF, q/k rows permuted as llama.cpp's converter does), plus an independent reference
// forward pass in the Hugging Face convention (rotate_half RoPE on unpermuted weights, full causal
// attention matrix), so both loaders and the decoder are checked against code that shares nothing with them.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/io/gguf.hpp"
#include "qsafe/io/safetensors.hpp"

namespace tiny {

struct TinyLlama {
    std::size_t vocab = 61, d = 48, heads = 4, kv_heads = 2, hd = 12, ff = 80, layers = 2, ctx = 64;
    float theta = 10000.0f, eps = 1e-5f;
    bool tied = false;
    std::map<std::string, qsafe::RowMatrixF> w;  // HF names -> matrices (vectors as 1 x n)

    explicit TinyLlama(std::uint64_t seed, bool tied_embeddings = false) : tied(tied_embeddings) {
        std::mt19937_64 rng(seed);
        std::normal_distribution<float> g(0.0f, 1.0f);
        auto mat = [&](std::size_t r, std::size_t c, float s) {
            qsafe::RowMatrixF m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
            for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = s * g(rng);
            return m;
        };
        auto norm = [&](std::size_t n) {
            qsafe::RowMatrixF m(1, static_cast<Eigen::Index>(n));
            for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = 1.0f + 0.1f * g(rng);
            return m;
        };
        const float s = 1.0f / std::sqrt(static_cast<float>(d));
        w["model.embed_tokens.weight"] = mat(vocab, d, 1.0f);
        for (std::size_t l = 0; l < layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            w[p + "input_layernorm.weight"] = norm(d);
            w[p + "post_attention_layernorm.weight"] = norm(d);
            w[p + "self_attn.q_proj.weight"] = mat(heads * hd, d, s);
            w[p + "self_attn.k_proj.weight"] = mat(kv_heads * hd, d, s);
            w[p + "self_attn.v_proj.weight"] = mat(kv_heads * hd, d, s);
            w[p + "self_attn.o_proj.weight"] = mat(d, heads * hd, s);
            w[p + "mlp.gate_proj.weight"] = mat(ff, d, s);
            w[p + "mlp.up_proj.weight"] = mat(ff, d, s);
            w[p + "mlp.down_proj.weight"] = mat(d, ff, 1.0f / std::sqrt(static_cast<float>(ff)));
        }
        w["model.norm.weight"] = norm(d);
        if (!tied) w["lm_head.weight"] = mat(vocab, d, s);
    }

    void write_hf(const std::filesystem::path& dir) const {
        std::filesystem::create_directories(dir);
        qsafe::safetensors::Writer out;
        for (const auto& [name, m] : w) {
            std::vector<std::uint64_t> shape = m.rows() == 1 && name.find("norm") != std::string::npos
                                                   ? std::vector<std::uint64_t>{static_cast<std::uint64_t>(m.cols())}
                                                   : std::vector<std::uint64_t>{static_cast<std::uint64_t>(m.rows()), static_cast<std::uint64_t>(m.cols())};
            out.add_tensor_f32(name, shape, {m.data(), static_cast<std::size_t>(m.size())});
        }
        out.write(dir / "model.safetensors");
        nlohmann::json c = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", d}, {"intermediate_size", ff},
                            {"num_attention_heads", heads}, {"num_key_value_heads", kv_heads}, {"num_hidden_layers", layers},
                            {"vocab_size", vocab}, {"max_position_embeddings", ctx}, {"rope_theta", theta},
                            {"rms_norm_eps", eps}, {"tie_word_embeddings", tied}};
        std::ofstream(dir / "config.json") << c.dump(2);
    }

    /// llama.cpp's converter: q/k rows regrouped so RoPE rotates adjacent pairs.
    static qsafe::RowMatrixF to_gguf_rows(const qsafe::RowMatrixF& m, std::size_t n_heads) {
        const std::size_t head = static_cast<std::size_t>(m.rows()) / n_heads, half = head / 2;
        qsafe::RowMatrixF out(m.rows(), m.cols());
        for (std::size_t h = 0; h < n_heads; ++h)
            for (std::size_t i = 0; i < half; ++i)
                for (std::size_t j = 0; j < 2; ++j)
                    out.row(static_cast<Eigen::Index>(h * head + 2 * i + j)) = m.row(static_cast<Eigen::Index>(h * head + j * half + i));
        return out;
    }

    void write_gguf(const std::filesystem::path& path) const {
        qsafe::gguf::Writer out;
        out.set("general.architecture", std::string("llama"));
        out.set("general.name", std::string("tiny-llama"));
        out.set("llama.block_count", static_cast<std::uint32_t>(layers));
        out.set("llama.context_length", static_cast<std::uint32_t>(ctx));
        out.set("llama.embedding_length", static_cast<std::uint32_t>(d));
        out.set("llama.feed_forward_length", static_cast<std::uint32_t>(ff));
        out.set("llama.attention.head_count", static_cast<std::uint32_t>(heads));
        out.set("llama.attention.head_count_kv", static_cast<std::uint32_t>(kv_heads));
        out.set("llama.rope.freq_base", theta);
        out.set("llama.attention.layer_norm_rms_epsilon", eps);
        out.set("llama.vocab_size", static_cast<std::uint32_t>(vocab));
        auto add = [&](const std::string& name, const qsafe::RowMatrixF& m) {
            std::vector<std::uint64_t> dims = m.rows() == 1 ? std::vector<std::uint64_t>{static_cast<std::uint64_t>(m.cols())}
                                                            : std::vector<std::uint64_t>{static_cast<std::uint64_t>(m.cols()), static_cast<std::uint64_t>(m.rows())};
            out.add_tensor_f32(name, dims, {m.data(), static_cast<std::size_t>(m.size())});
        };
        add("token_embd.weight", w.at("model.embed_tokens.weight"));
        for (std::size_t l = 0; l < layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".", g = "blk." + std::to_string(l) + ".";
            add(g + "attn_norm.weight", w.at(p + "input_layernorm.weight"));
            add(g + "ffn_norm.weight", w.at(p + "post_attention_layernorm.weight"));
            add(g + "attn_q.weight", to_gguf_rows(w.at(p + "self_attn.q_proj.weight"), heads));
            add(g + "attn_k.weight", to_gguf_rows(w.at(p + "self_attn.k_proj.weight"), kv_heads));
            add(g + "attn_v.weight", w.at(p + "self_attn.v_proj.weight"));
            add(g + "attn_output.weight", w.at(p + "self_attn.o_proj.weight"));
            add(g + "ffn_gate.weight", w.at(p + "mlp.gate_proj.weight"));
            add(g + "ffn_up.weight", w.at(p + "mlp.up_proj.weight"));
            add(g + "ffn_down.weight", w.at(p + "mlp.down_proj.weight"));
        }
        add("output_norm.weight", w.at("model.norm.weight"));
        if (!tied) add("output.weight", w.at("lm_head.weight"));
        out.write(path);
    }

    /// Reference forward in the Hugging Face convention: logits for every position (n x vocab), in double.
    Eigen::MatrixXd reference_logits(const std::vector<std::int32_t>& tokens) const {
        using M = Eigen::MatrixXd;
        const auto n = static_cast<Eigen::Index>(tokens.size());
        auto W = [&](const std::string& name) -> M { return w.at(name).cast<double>(); };
        auto rmsnorm = [&](const M& x, const M& weight) {
            M out(x.rows(), x.cols());
            for (Eigen::Index t = 0; t < x.rows(); ++t)
                out.row(t) = x.row(t) / std::sqrt(x.row(t).squaredNorm() / static_cast<double>(x.cols()) + eps);
            return M(out.array().rowwise() * weight.row(0).array());
        };
        auto rotate = [&](M& x, std::size_t n_heads) {  // rotate_half RoPE on each head
            const std::size_t half = hd / 2;
            for (Eigen::Index t = 0; t < x.rows(); ++t)
                for (std::size_t h = 0; h < n_heads; ++h)
                    for (std::size_t i = 0; i < half; ++i) {
                        const double f = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(hd));
                        const double a = static_cast<double>(t) * f, c = std::cos(a), s = std::sin(a);
                        const auto lo = static_cast<Eigen::Index>(h * hd + i), hi = static_cast<Eigen::Index>(h * hd + i + half);
                        const double x1 = x(t, lo), x2 = x(t, hi);
                        x(t, lo) = x1 * c - x2 * s;
                        x(t, hi) = x2 * c + x1 * s;
                    }
        };
        M x(n, static_cast<Eigen::Index>(d));
        const M emb = W("model.embed_tokens.weight");
        for (Eigen::Index t = 0; t < n; ++t) x.row(t) = emb.row(tokens[static_cast<std::size_t>(t)]);
        for (std::size_t l = 0; l < layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            const M h = rmsnorm(x, W(p + "input_layernorm.weight"));
            M q = h * W(p + "self_attn.q_proj.weight").transpose(), k = h * W(p + "self_attn.k_proj.weight").transpose();
            const M v = h * W(p + "self_attn.v_proj.weight").transpose();
            rotate(q, heads);
            rotate(k, kv_heads);
            M attn = M::Zero(n, static_cast<Eigen::Index>(heads * hd));
            for (std::size_t hh = 0; hh < heads; ++hh) {
                const std::size_t kvh = hh / (heads / kv_heads);
                const M qh = q.middleCols(static_cast<Eigen::Index>(hh * hd), static_cast<Eigen::Index>(hd));
                const M kh = k.middleCols(static_cast<Eigen::Index>(kvh * hd), static_cast<Eigen::Index>(hd));
                const M vh = v.middleCols(static_cast<Eigen::Index>(kvh * hd), static_cast<Eigen::Index>(hd));
                M scores = qh * kh.transpose() / std::sqrt(static_cast<double>(hd));
                for (Eigen::Index i = 0; i < n; ++i) {
                    for (Eigen::Index j = i + 1; j < n; ++j) scores(i, j) = -1e300;
                    const double m = scores.row(i).maxCoeff();
                    scores.row(i) = (scores.row(i).array() - m).exp();
                    scores.row(i) /= scores.row(i).sum();
                }
                attn.middleCols(static_cast<Eigen::Index>(hh * hd), static_cast<Eigen::Index>(hd)) = scores * vh;
            }
            x += attn * W(p + "self_attn.o_proj.weight").transpose();
            const M h2 = rmsnorm(x, W(p + "post_attention_layernorm.weight"));
            const M gate = h2 * W(p + "mlp.gate_proj.weight").transpose(), up = h2 * W(p + "mlp.up_proj.weight").transpose();
            const M act = (gate.array() / (1.0 + (-gate.array()).exp()) * up.array()).matrix();
            x += act * W(p + "mlp.down_proj.weight").transpose();
        }
        const M out = rmsnorm(x, W("model.norm.weight"));
        return out * W(tied ? "model.embed_tokens.weight" : "lm_head.weight").transpose();
    }
};

}  // namespace tiny
