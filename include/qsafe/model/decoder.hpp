#pragma once
// LlamaModel: a minimal Llama-family decoder (RMSNorm, RoPE, grouped-query attention with a KV cache,
// SwiGLU MLP) whose linear layers run under any scheme. One code path serves prompt prefill and batched
// decoding: forward() takes a batch of tokens, each appended to its own sequence's cache, so linear layers
// see a (tokens x features) matrix and use the GEMM kernels; attention takes a prompt's queries in blocks
// (matrix products per head) and a decoding token alone (a matrix-vector product per head).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/model/kv_cache.hpp"
#include "qsafe/model/linear_apply.hpp"
#include "qsafe/model/ops.hpp"
#include "qsafe/model/weights.hpp"

namespace qsafe {

/// One token of a forward batch: appended to `cache` at the cache's next position.
struct TokenSlot {
    KvCache* cache = nullptr;
    std::int32_t token = 0;
    bool want_logits = false;
};

/// Sees the input of every linear layer (tokens x in_features), e.g. to collect calibration statistics.
using LinearInputObserver = std::function<void(const std::string& tensor_name, ConstMatrixView input)>;

class LlamaModel {
  public:
    explicit LlamaModel(LlamaWeights weights)
        : w_(std::move(weights)),
          inv_freq_(ops::rope_inverse_frequencies(w_.config.rope_dim, w_.config.rope_theta, w_.rope_freq_factors)) {}

    const LlamaConfig& config() const noexcept { return w_.config; }
    const LlamaWeights& weights() const noexcept { return w_; }
    LlamaWeights& mutable_weights() noexcept { return w_; }
    KvCache new_cache() const { return KvCache(w_.config); }
    void set_linear_observer(LinearInputObserver observer) { observer_ = std::move(observer); }

    /// Runs a batch of tokens. Tokens of one cache must appear in sequence order. Returns the logits
    /// (one row per slot with want_logits, in slot order).
    RowMatrixF forward(std::span<const TokenSlot> slots) {
        if (slots.empty()) return {};
        RowMatrixF x = embed(slots);
        run_blocks(slots, 0, w_.config.n_layers, x);
        return head(slots, x);
    }

    /// The token embeddings of a batch (tokens x d_model): the hidden state entering block 0.
    RowMatrixF embed(std::span<const TokenSlot> slots) const {
        const LlamaConfig& c = w_.config;
        RowMatrixF x(static_cast<Eigen::Index>(slots.size()), static_cast<Eigen::Index>(c.d_model));
        for (std::size_t t = 0; t < slots.size(); ++t) {
            if (slots[t].token < 0 || static_cast<std::size_t>(slots[t].token) >= c.vocab_size)
                throw config_error("token id " + std::to_string(slots[t].token) + " is outside the vocabulary of " +
                                   std::to_string(c.vocab_size));
            x.row(static_cast<Eigen::Index>(t)) = w_.token_embedding.row(slots[t].token);
        }
        return x;
    }

    /// Runs the hidden states `x` (one row per slot) through blocks [first_layer, last_layer), writing those
    /// layers' keys and values at each cache's next positions, then advances the caches. Running part of the
    /// stack lets sequential calibration and per-layer sensitivity re-run only the blocks after a change
    /// (each such partial run uses fresh caches).
    void run_blocks(std::span<const TokenSlot> slots, std::size_t first_layer, std::size_t last_layer, RowMatrixF& x) {
        const LlamaConfig& c = w_.config;
        const std::size_t n = slots.size();
        if (first_layer > last_layer || last_layer > c.n_layers)
            throw config_error("run_blocks: block range [" + std::to_string(first_layer) + ", " + std::to_string(last_layer) +
                               ") is outside the model's " + std::to_string(c.n_layers) + " blocks");
        if (static_cast<std::size_t>(x.rows()) != n || static_cast<std::size_t>(x.cols()) != c.d_model)
            throw shape_error("run_blocks: hidden states are " + std::to_string(x.rows()) + " x " + std::to_string(x.cols()) +
                              ", expected " + std::to_string(n) + " x " + std::to_string(c.d_model));
        if (n == 0) return;
        // Positions: each slot takes the next free position of its cache.
        std::vector<std::size_t> pos(n);
        std::unordered_map<KvCache*, std::size_t> added;
        for (std::size_t t = 0; t < n; ++t) pos[t] = slots[t].cache->length() + added[slots[t].cache]++;
        for (const auto& [cache, count] : added) cache->reserve(cache->length() + count);

        const std::size_t hd = c.head_dim, q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
        RowMatrixF h(x.rows(), x.cols()), q(x.rows(), static_cast<Eigen::Index>(q_dim)), k(x.rows(), static_cast<Eigen::Index>(kv_dim)),
            v(x.rows(), static_cast<Eigen::Index>(kv_dim)), attn(x.rows(), static_cast<Eigen::Index>(q_dim)), proj(x.rows(), x.cols()),
            gate(x.rows(), static_cast<Eigen::Index>(c.d_ff)), up(x.rows(), static_cast<Eigen::Index>(c.d_ff));

        for (std::size_t layer = first_layer; layer < last_layer; ++layer) {
            const LayerWeights& L = w_.layers[layer];
            const std::string prefix = "blk." + std::to_string(layer) + ".";
            norm_rows(x, L.attn_norm, h);
            linear(prefix + "attn_q.weight", *L.wq, h, q);
            linear(prefix + "attn_k.weight", *L.wk, h, k);
            linear(prefix + "attn_v.weight", *L.wv, h, v);
            if (c.qkv_bias) {
                q.rowwise() += L.bq.transpose();
                k.rowwise() += L.bk.transpose();
                v.rowwise() += L.bv.transpose();
            }
            for (std::size_t t = 0; t < n; ++t) {
                ops::rope(q.row(static_cast<Eigen::Index>(t)).data(), c.n_heads, hd, pos[t], inv_freq_);
                ops::rope(k.row(static_cast<Eigen::Index>(t)).data(), c.n_kv_heads, hd, pos[t], inv_freq_);
                std::copy_n(k.row(static_cast<Eigen::Index>(t)).data(), kv_dim, slots[t].cache->key(layer, pos[t]));
                std::copy_n(v.row(static_cast<Eigen::Index>(t)).data(), kv_dim, slots[t].cache->value(layer, pos[t]));
            }
            attention(slots, pos, layer, q, attn);
            linear(prefix + "attn_output.weight", *L.wo, attn, proj);
            x += proj;
            norm_rows(x, L.ffn_norm, h);
            linear(prefix + "ffn_gate.weight", *L.w_gate, h, gate);
            linear(prefix + "ffn_up.weight", *L.w_up, h, up);
            parallel_for(n, [&](std::size_t t) {
                ops::swiglu({gate.row(static_cast<Eigen::Index>(t)).data(), c.d_ff}, {up.row(static_cast<Eigen::Index>(t)).data(), c.d_ff});
            });
            linear(prefix + "ffn_down.weight", *L.w_down, gate, proj);
            x += proj;
        }
        for (const auto& [cache, count] : added) cache->advance(count);
    }

    /// Final norm and output layer for the slots with want_logits (one row each, in slot order), from the
    /// hidden states leaving the last block.
    RowMatrixF head(std::span<const TokenSlot> slots, const RowMatrixF& x) const {
        const std::size_t n = slots.size();
        std::size_t n_out = 0;
        for (const auto& s : slots) n_out += s.want_logits ? 1 : 0;
        RowMatrixF last(static_cast<Eigen::Index>(n_out), x.cols());
        for (std::size_t t = 0, o = 0; t < n; ++t)
            if (slots[t].want_logits) last.row(static_cast<Eigen::Index>(o++)) = x.row(static_cast<Eigen::Index>(t));
        RowMatrixF normed(last.rows(), last.cols());
        norm_rows(last, w_.output_norm, normed);
        RowMatrixF logits(static_cast<Eigen::Index>(n_out), static_cast<Eigen::Index>(w_.config.vocab_size));
        if (n_out > 0) linear("output.weight", *w_.output, normed, logits);
        return logits;
    }

    /// Appends `tokens` to one sequence; returns the logits of every token (all_logits) or of the last.
    RowMatrixF forward_sequence(KvCache& cache, std::span<const std::int32_t> tokens, bool all_logits = false) {
        std::vector<TokenSlot> slots(tokens.size());
        for (std::size_t i = 0; i < tokens.size(); ++i) slots[i] = {&cache, tokens[i], all_logits || i + 1 == tokens.size()};
        return forward(slots);
    }

    /// One new token for each of several sequences (each with its own cache and length).
    RowMatrixF decode_step(std::span<KvCache* const> caches, std::span<const std::int32_t> tokens) {
        if (caches.size() != tokens.size()) throw shape_error("decode_step: one token per cache expected");
        std::vector<TokenSlot> slots(tokens.size());
        for (std::size_t i = 0; i < tokens.size(); ++i) slots[i] = {caches[i], tokens[i], true};
        return forward(slots);
    }

  private:
    void norm_rows(const RowMatrixF& in, const VectorF& weight, RowMatrixF& out) const {
        const auto d = static_cast<std::size_t>(in.cols());
        parallel_for(static_cast<std::size_t>(in.rows()), [&](std::size_t t) {
            ops::rms_norm({in.row(static_cast<Eigen::Index>(t)).data(), d}, {weight.data(), d}, w_.config.norm_eps,
                          {out.row(static_cast<Eigen::Index>(t)).data(), d});
        });
    }

    void linear(const std::string& name, const QuantizedLinear& layer, const RowMatrixF& in, RowMatrixF& out) const {
        if (observer_) observer_(name, in);
        apply_linear(layer, in, out);
    }

    /// Causal attention of every slot's query over its cache. A run of slots that extend one cache at
    /// consecutive positions (a prompt being prefilled) is done per head in blocks of query rows as two
    /// matrix products (scores = Q K^T, out = P V), so keys and values are read once per block instead of
    /// once per query; single tokens (decoding) take one matrix-vector product per head. Jobs are a fixed
    /// partition of (run, head, row block), so results do not depend on the thread count.
    void attention(std::span<const TokenSlot> slots, const std::vector<std::size_t>& pos, std::size_t layer,
                   const RowMatrixF& q, RowMatrixF& out) const {
        const LlamaConfig& c = w_.config;
        const std::size_t hd = c.head_dim, group = c.n_heads / c.n_kv_heads;
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        constexpr std::size_t rows_per_block = 64;
        struct Job {
            std::size_t first, count, head;  // query rows [first, first + count) of one run, one head
        };
        std::vector<Job> jobs;
        for (std::size_t t = 0; t < slots.size();) {
            std::size_t end = t + 1;
            while (end < slots.size() && slots[end].cache == slots[t].cache && pos[end] == pos[end - 1] + 1) ++end;
            for (std::size_t head = 0; head < c.n_heads; ++head)
                for (std::size_t r = t; r < end; r += rows_per_block) jobs.push_back({r, std::min(rows_per_block, end - r), head});
            t = end;
        }
        using Stride = Eigen::OuterStride<>;
        using HeadRows = Eigen::Map<const RowMatrixF, 0, Stride>;
        using OutRows = Eigen::Map<RowMatrixF, 0, Stride>;
        const auto kv_dim = static_cast<Eigen::Index>(c.n_kv_heads * hd);
        parallel_for(jobs.size(), [&](std::size_t j) {
            const Job job = jobs[j];
            const std::size_t kv_head = job.head / group;
            const KvCache& cache = *slots[job.first].cache;
            const std::size_t n = pos[job.first + job.count - 1] + 1;  // keys the last row of the block sees
            // Keys and values of this KV head over positions [0, n): row j at stride kv_dim in the cache.
            const HeadRows keys(cache.key(layer, 0) + kv_head * hd, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(hd), Stride(kv_dim));
            const HeadRows values(cache.value(layer, 0) + kv_head * hd, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(hd), Stride(kv_dim));
            const auto rows = static_cast<Eigen::Index>(job.count);
            const HeadRows queries(q.row(static_cast<Eigen::Index>(job.first)).data() + job.head * hd, rows,
                                   static_cast<Eigen::Index>(hd), Stride(q.cols()));
            OutRows o(out.row(static_cast<Eigen::Index>(job.first)).data() + job.head * hd, rows, static_cast<Eigen::Index>(hd),
                      Stride(out.cols()));
            thread_local RowMatrixF scores;
            scores.resize(rows, static_cast<Eigen::Index>(n));
            if (job.count == 1)
                scores.row(0).transpose().noalias() = keys * queries.row(0).transpose();  // vectorized dot products
            else
                scores.noalias() = queries * keys.transpose();
            for (Eigen::Index r = 0; r < rows; ++r) {
                // Row r sees positions [0, pos + 1); later columns belong to later queries of the block.
                const std::size_t seen = pos[job.first + static_cast<std::size_t>(r)] + 1;
                std::span<float> row(scores.row(r).data(), seen);
                for (float& v : row) v *= scale;
                ops::softmax(row);
                std::fill(scores.row(r).data() + seen, scores.row(r).data() + n, 0.0f);
            }
            if (job.count == 1)
                o.row(0).transpose().noalias() = values.transpose() * scores.row(0).transpose();
            else
                o.noalias() = scores * values;
        });
    }

    LlamaWeights w_;
    std::vector<double> inv_freq_;
    LinearInputObserver observer_;
};

}  // namespace qsafe
