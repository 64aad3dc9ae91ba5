#pragma once
// Reverse-mode gradients through a Llama decoder (model/): the forward pass over a batch of whole sequences
// and the backward pass to every LoRA matrix — and, on request, to every fp32 parameter of the base
// (embedding, norms, biases, dense linear weights) for full fine-tuning and for checking. A masked adapter
// pair (train/weight_mask.hpp) adds its update at its masked positions only, as a sparse correction.
//
// What is kept and what is recomputed: the forward pass keeps the hidden state entering each block
// (n_layers + 1 matrices of tokens × d_model) and, for as many blocks as TrainableOptions::activation_budget
// allows (the last blocks first), the block's internals (projections, attention probabilities per sequence
// and head, SwiGLU inputs, LoRA intermediates). The backward pass uses those, and re-runs the forward of a
// block whose internals were not kept from its saved input. For SmolLM2 at 8 × 256 tokens the inputs are
// 146 MB and one block's internals 84 MB: all 30 blocks fit the default budget of 2.75 GiB. The output
// layer's logits are never stored: the forward pass takes them in chunks of 256 rows, and for each wanted
// position also keeps d log p / d(final normed state) (d_model floats), so the backward pass needs no second
// pass over the vocabulary. Input gradients go through the base weights as stored (dX = dY·W, no transposed
// copy); a quantized base layer is dequantized once into an fp32 copy for them (0.54 GB for all of SmolLM2).
//
// Forward numerics are the decoder's: the same ops (train/ops.hpp's fp32 instantiation equals
// model/ops.hpp), the same linear products (model/linear_apply.hpp), and attention in the decoder's blocks
// of 64 query rows with the same Eigen expressions, so logits agree with LlamaModel's.
//
// Every product is a fixed partition of work (core/parallel.hpp, core/fp32_blas.hpp): gradients are
// bit-identical for any thread count.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/core/fp32_blas.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/model/linear_apply.hpp"
#include "qsafe/model/ops.hpp"
#include "qsafe/model/weights.hpp"
#include "qsafe/train/lora.hpp"
#include "qsafe/train/ops.hpp"

namespace qsafe::train {

/// Rows of one length (right-padded). A row holds one sequence starting at position 0, or — packed — several
/// sequences one after another: segment_start[i] is then the position in its row where token i's sequence
/// begins; attention stays inside each sequence and RoPE positions restart at 0 for each.
struct TrainBatch {
    std::size_t sequences = 0;  // rows
    std::size_t length = 0;
    std::vector<std::int32_t> tokens;          // sequences × length
    std::vector<std::uint32_t> segment_start;  // empty: one sequence per row

    std::int32_t token(std::size_t seq, std::size_t pos) const noexcept { return tokens[seq * length + pos]; }
    std::size_t size() const noexcept { return sequences * length; }
    /// Where token i's sequence begins in its row, and token i's position in that sequence.
    std::size_t start_of(std::size_t i) const noexcept { return segment_start.empty() ? 0 : segment_start[i]; }
    std::size_t position(std::size_t i) const noexcept { return i % length - start_of(i); }

    /// Pads every sequence with `pad` to the longest one.
    static TrainBatch padded(const std::vector<std::vector<std::int32_t>>& seqs, std::int32_t pad) {
        TrainBatch b;
        b.sequences = seqs.size();
        for (const auto& s : seqs) b.length = std::max(b.length, s.size());
        b.tokens.assign(b.sequences * b.length, pad);
        for (std::size_t i = 0; i < seqs.size(); ++i) std::copy(seqs[i].begin(), seqs[i].end(), b.tokens.begin() + static_cast<std::ptrdiff_t>(i * b.length));
        return b;
    }
};

/// Gradients of the base model's own parameters (full_gradients mode); linear layers only where the base
/// layer is fp32 (DenseLinear). A tied output layer's gradient is added to token_embedding's.
struct BaseGradients {
    struct Layer {
        VectorF attn_norm, ffn_norm, bq, bk, bv;
        RowMatrixF wq, wk, wv, wo, w_gate, w_up, w_down;  // empty for quantized base layers
    };
    RowMatrixF token_embedding;
    std::vector<Layer> layers;
    VectorF output_norm;
    RowMatrixF output;  // empty when tied (see token_embedding)
};

struct TrainableOptions {
    ops::RopeLayout rope_layout = ops::RopeLayout::adjacent_pairs;
    bool full_gradients = false;  // also differentiate the base's fp32 parameters
    /// Bytes of block internals the forward pass may keep for the backward pass; blocks beyond it are
    /// recomputed (0: recompute every block, the least memory).
    std::size_t activation_budget = std::size_t{11} << 28;  // 2.75 GiB
};

class TrainableLlama {
  public:
    /// `weights` (the base) and `adapter` (may be null) must outlive this object. The base is frozen unless
    /// full_gradients is set; after changing base weights call refresh_weight_caches().
    TrainableLlama(LlamaWeights& weights, LoraAdapter* adapter, TrainableOptions options = {})
        : w_(weights), adapter_(adapter), options_(options),
          inv_freq_(qsafe::ops::rope_inverse_frequencies(weights.config.rope_dim, weights.config.rope_theta, weights.rope_freq_factors)) {
        if (adapter_) adapter_->check_fits(w_, "LoRA adapter");
        const std::size_t n_layers = w_.config.n_layers;
        slots_.resize(n_layers * 7);
        for (std::size_t l = 0; l < n_layers; ++l) {
            const LayerWeights& L = w_.layers[l];
            const QuantizedLinear* layers[] = {L.wq.get(), L.wk.get(), L.wv.get(), L.wo.get(), L.w_gate.get(), L.w_up.get(), L.w_down.get()};
            for (std::size_t p = 0; p < 7; ++p) {
                Slot& s = slots_[l * 7 + p];
                s.name = "blk." + std::to_string(l) + "." + block_projections[p] + ".weight";
                s.base = layers[p];
                s.lora = adapter_ ? adapter_->find(s.name) : nullptr;
            }
        }
        refresh_weight_caches();
        if (options_.full_gradients) zero_base_gradients();
    }

    const LlamaConfig& config() const noexcept { return w_.config; }
    LoraAdapter* adapter() noexcept { return adapter_; }

    /// LoRA dropout for the next forward passes (0 = off); `seed` picks the masks (use a new one per step).
    void set_dropout(float probability, std::uint64_t seed) noexcept {
        dropout_ = probability;
        dropout_seed_ = seed;
    }

    /// Points the backward products at the base weights: fp32 layers as they are, quantized layers through
    /// a dequantized copy. Call again after replacing or re-quantizing base layers.
    void refresh_weight_caches() {
        for (Slot& s : slots_) bind_weights(*s.base, s.dequantized, s.weights);
        bind_weights(*w_.output, output_dequantized_, output_weights_);
    }

    /// Runs the batch forward and keeps what backward() needs (unless for_backward is false: an evaluation
    /// pass, such as DPO's reference log-probabilities). Returns, for every position p ≥ 1 with want[p] set
    /// (all positions when `want` is empty), log P(token[p] | tokens before p); other entries 0.
    std::vector<double> forward(const TrainBatch& batch, std::span<const std::uint8_t> want = {}, bool for_backward = true) {
        check_batch(batch);
        // Masks may have been set or replaced since construction (safety patching re-identifies them).
        for (Slot& s : slots_) {
            if (!s.lora || !s.lora->mask) continue;
            if (s.lora->mask->rows != s.base->rows() || s.lora->mask->cols != s.base->cols())
                throw shape_error("LoRA adapter: the weight mask of '" + s.name + "' is " + std::to_string(s.lora->mask->rows) + "x" +
                                  std::to_string(s.lora->mask->cols) + ", the layer " + std::to_string(s.base->rows()) + "x" + std::to_string(s.base->cols()));
            s.masked_delta = s.lora->masked_deltas(adapter_->scale());
        }
        batch_ = batch;
        rows_.clear();
        for (std::size_t s = 0; s < batch.sequences; ++s)
            for (std::size_t t = 0; t + 1 < batch.length; ++t)
                if (want.empty() || want[s * batch.length + t + 1]) rows_.push_back(s * batch.length + t);
        const LlamaConfig& c = w_.config;
        const auto n = static_cast<Eigen::Index>(batch.size()), d = static_cast<Eigen::Index>(c.d_model);
        inputs_.assign(c.n_layers + 1, RowMatrixF());
        inputs_[0].resize(n, d);
        for (std::size_t i = 0; i < batch.size(); ++i) inputs_[0].row(static_cast<Eigen::Index>(i)) = w_.token_embedding.row(batch.tokens[i]);
        kept_.assign(c.n_layers, Activations());
        kept_valid_.assign(c.n_layers, 0);
        const std::size_t per_block = block_activation_bytes(batch);
        const std::size_t keep_blocks = !for_backward || per_block == 0 ? 0 : std::min(c.n_layers, options_.activation_budget / per_block);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const bool keep = l + keep_blocks >= c.n_layers;
            Activations local;
            Activations& act = keep ? kept_[l] : local;
            inputs_[l + 1].resize(n, d);
            layer_forward(l, inputs_[l], act, inputs_[l + 1], keep);
            kept_valid_[l] = keep;
        }
        std::vector<double> logp(batch.size(), 0.0);
        head_pass({}, &logp, nullptr, for_backward && !options_.full_gradients);
        has_forward_ = for_backward;
        return logp;
    }

    /// The logits of every position (rows in batch order): for checks and small models.
    RowMatrixF logits(const TrainBatch& batch) {
        forward(batch, std::vector<std::uint8_t>(batch.size(), 0), false);
        const LlamaConfig& c = w_.config;
        RowMatrixF normed(static_cast<Eigen::Index>(batch.size()), static_cast<Eigen::Index>(c.d_model));
        norm_rows(inputs_.back(), w_.output_norm, normed);
        RowMatrixF out(normed.rows(), static_cast<Eigen::Index>(c.vocab_size));
        apply_linear(*w_.output, normed, out);
        return out;
    }

    /// Back-propagates d loss / d logp (one coefficient per position, as forward() returned them) and adds
    /// the gradients to the adapter's grad_a / grad_b (and to base_gradients() in full_gradients mode).
    void backward(std::span<const double> dlogp) {
        if (!has_forward_) throw config_error("TrainableLlama::backward: no forward pass to differentiate");
        if (dlogp.size() != batch_.size())
            throw shape_error("TrainableLlama::backward: " + std::to_string(dlogp.size()) + " coefficients for " + std::to_string(batch_.size()) + " positions");
        const LlamaConfig& c = w_.config;
        RowMatrixF dx = RowMatrixF::Zero(static_cast<Eigen::Index>(batch_.size()), static_cast<Eigen::Index>(c.d_model));
        head_pass(dlogp, nullptr, &dx);
        for (std::size_t l = c.n_layers; l-- > 0;) {
            if (kept_valid_[l]) {
                layer_backward(l, inputs_[l], kept_[l], dx);
                kept_[l] = Activations();  // free as we go
                continue;
            }
            Activations act;
            RowMatrixF out(inputs_[l].rows(), inputs_[l].cols());
            layer_forward(l, inputs_[l], act, out, /*keep=*/true);
            layer_backward(l, inputs_[l], act, dx);
        }
        if (options_.full_gradients)
            for (std::size_t i = 0; i < batch_.size(); ++i)
                base_grads_.token_embedding.row(batch_.tokens[i]) += dx.row(static_cast<Eigen::Index>(i));
        has_forward_ = false;
        head_grad_.resize(0, 0);
    }

    /// Bytes one block's kept internals take for `batch` (what activation_budget is spent in).
    std::size_t block_activation_bytes(const TrainBatch& batch) const {
        const LlamaConfig& c = w_.config;
        const std::size_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
        std::size_t per_token = 4 * c.d_model + 2 * q + 2 * kv + 3 * c.d_ff;  // h1, x_mid, h2, (x_out), q, attn, k, v, gate, up, act
        const std::size_t rank = adapter_ ? adapter_->rank() : 0;
        if (adapter_) per_token += (adapter_->masked() ? 0 : 7 * rank) + (dropout_ > 0.0f ? 6 * c.d_model + q + c.d_ff : 0);
        return sizeof(float) * (per_token * batch.size() + batch.sequences * c.n_heads * batch.length * batch.length);
    }

    BaseGradients& base_gradients() noexcept { return base_grads_; }
    /// Zeroes the base gradients in place: once sized, their buffers never move, so an optimizer may keep
    /// pointers into them (train/fake_quant.hpp does).
    void zero_base_gradients() {
        const LlamaConfig& c = w_.config;
        auto reset = [](RowMatrixF& g, const QuantizedLinear& q) {
            if (!dynamic_cast<const DenseLinear*>(&q)) return g.resize(0, 0);
            g.resize(static_cast<Eigen::Index>(q.rows()), static_cast<Eigen::Index>(q.cols()));
            g.setZero();
        };
        auto zero = [](auto& g, Eigen::Index rows, Eigen::Index cols) {
            g.resize(rows, cols);
            g.setZero();
        };
        auto zero_vector = [](VectorF& g, Eigen::Index n) {
            g.resize(n);
            g.setZero();
        };
        zero(base_grads_.token_embedding, w_.token_embedding.rows(), w_.token_embedding.cols());
        base_grads_.layers.resize(c.n_layers);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            const LayerWeights& L = w_.layers[l];
            auto& g = base_grads_.layers[l];
            zero_vector(g.attn_norm, L.attn_norm.size());
            zero_vector(g.ffn_norm, L.ffn_norm.size());
            zero_vector(g.bq, L.bq.size());
            zero_vector(g.bk, L.bk.size());
            zero_vector(g.bv, L.bv.size());
            reset(g.wq, *L.wq), reset(g.wk, *L.wk), reset(g.wv, *L.wv), reset(g.wo, *L.wo);
            reset(g.w_gate, *L.w_gate), reset(g.w_up, *L.w_up), reset(g.w_down, *L.w_down);
        }
        zero_vector(base_grads_.output_norm, w_.output_norm.size());
        if (output_is_tied()) base_grads_.output.resize(0, 0);
        else reset(base_grads_.output, *w_.output);
    }

    /// Whether the output layer is the token embedding (then its gradient goes to the embedding's).
    bool output_is_tied() const noexcept { return w_.config.tied_embeddings; }

  private:
    struct Slot {
        std::string name;
        const QuantizedLinear* base = nullptr;
        LoraPair* lora = nullptr;
        const RowMatrixF* weights = nullptr;  // out × in fp32: the layer's own (DenseLinear) or `dequantized`
        RowMatrixF dequantized;
        std::vector<float> masked_delta;  // a masked adapter's update at its masked entries, set by forward()
    };
    /// One LoRA branch's forward intermediates (kept for backward).
    struct LoraState {
        RowMatrixF input;  // the adapter's input after dropout (empty when dropout is off: use the layer input)
        RowMatrixF u;      // input · Aᵀ (rows × rank)
    };
    struct Activations {
        RowMatrixF h1, q, k, v, attn, x_mid, h2, gate, up, act;
        std::vector<RowMatrixF> probs;  // per (sequence, head): length × length causal attention weights
        LoraState lora[7];
    };

    static constexpr std::size_t head_chunk = 256;
    static constexpr std::size_t attention_block = 64;  // query rows per product, as the decoder

    void check_batch(const TrainBatch& b) const {
        if (b.sequences == 0 || b.length == 0) throw shape_error("training batch is empty");
        if (b.tokens.size() != b.size()) throw shape_error("training batch holds " + std::to_string(b.tokens.size()) + " tokens for " + std::to_string(b.sequences) + " x " + std::to_string(b.length));
        if (!b.segment_start.empty()) {
            if (b.segment_start.size() != b.size()) throw shape_error("training batch: segment starts do not cover every token");
            for (std::size_t i = 0; i < b.size(); ++i)
                if (b.segment_start[i] > i % b.length) throw shape_error("training batch: token " + std::to_string(i) + "'s segment starts after it");
        }
        if (b.length > w_.config.context_length)
            throw config_error("training sequence of " + std::to_string(b.length) + " tokens exceeds the context length " + std::to_string(w_.config.context_length));
        for (std::size_t i = 0; i < b.tokens.size(); ++i)
            if (b.tokens[i] < 0 || static_cast<std::size_t>(b.tokens[i]) >= w_.config.vocab_size)
                throw config_error("training batch: token id " + std::to_string(b.tokens[i]) + " at sequence " + std::to_string(i / b.length) + ", position " +
                                   std::to_string(i % b.length) + " is outside the vocabulary of " + std::to_string(w_.config.vocab_size));
    }

    void norm_rows(const RowMatrixF& in, const VectorF& weight, RowMatrixF& out) const {
        const auto d = static_cast<std::size_t>(in.cols());
        parallel_for(static_cast<std::size_t>(in.rows()), [&](std::size_t t) {
            qsafe::ops::rms_norm({in.row(static_cast<Eigen::Index>(t)).data(), d}, {weight.data(), d}, w_.config.norm_eps,
                                 {out.row(static_cast<Eigen::Index>(t)).data(), d});
        });
    }

    // ---- linear layers with their adapters ----

    /// A deterministic keep/drop decision per (seed, slot, element) for LoRA dropout.
    bool keep(std::size_t slot, std::size_t element) const noexcept {
        std::uint64_t z = dropout_seed_ * 0x9E3779B97F4A7C15ull ^ (static_cast<std::uint64_t>(slot) << 40) ^ element;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return static_cast<double>(z >> 11) * 0x1.0p-53 >= static_cast<double>(dropout_);
    }

    void linear_forward(std::size_t slot_index, const RowMatrixF& in, RowMatrixF& out, LoraState* keep_state) const {
        const Slot& s = slots_[slot_index];
        apply_linear(*s.base, in, out);
        if (!s.lora) return;
        LoraState local;
        LoraState& st = keep_state ? *keep_state : local;
        const RowMatrixF* x = &in;
        if (dropout_ > 0.0f) {
            st.input.resize(in.rows(), in.cols());
            apply_dropout(slot_index, in, st.input);
            x = &st.input;
        }
        const LoraPair& p = *s.lora;
        if (p.mask) {
            // y[t, i] += Σ_e δ_e · x[t, col_e] over row i's masked entries: a sparse product per token row.
            const WeightMask& m = *p.mask;
            const float* delta = s.masked_delta.data();
            for_row_blocks(static_cast<std::size_t>(x->rows()), [&](Eigen::Index r0, Eigen::Index rn) {
                for (Eigen::Index t = r0; t < r0 + rn; ++t) {
                    const float* xr = x->row(t).data();
                    float* yr = out.row(t).data();
                    for (std::size_t i = 0; i < m.rows; ++i) {
                        float sum = 0.0f;
                        for (std::uint32_t e = m.row_ptr[i]; e < m.row_ptr[i + 1]; ++e) sum += delta[e] * xr[m.col[e]];
                        yr[i] += sum;
                    }
                }
            });
            return;
        }
        const float scale = adapter_->scale();
        st.u.resize(x->rows(), p.a.rows());
        // Rows in fixed blocks: each block is the same product whatever the thread count.
        for_row_blocks(static_cast<std::size_t>(x->rows()), [&](Eigen::Index r0, Eigen::Index rn) {
            st.u.middleRows(r0, rn).noalias() = x->middleRows(r0, rn) * p.a.transpose();
            out.middleRows(r0, rn).noalias() += (scale * st.u.middleRows(r0, rn)) * p.b.transpose();
        });
    }

    /// Given dY for the layer's output, writes dX (or adds it, when accumulate) and adds the parameter grads.
    void linear_backward(std::size_t slot_index, const RowMatrixF& in, const LoraState& st, const RowMatrixF& dy, RowMatrixF& dx, bool accumulate,
                         RowMatrixF* base_grad) {
        const Slot& s = slots_[slot_index];
        RowMatrixF dxl;
        product_nn(dy, *s.weights, accumulate ? dxl : dx);
        RowMatrixF& target = accumulate ? dxl : dx;
        if (base_grad && base_grad->size() > 0) add_weight_grad(dy, in, *base_grad);
        if (s.lora && s.lora->mask) {
            masked_lora_backward(slot_index, dropout_ > 0.0f ? st.input : in, dy, target);
        } else if (s.lora) {
            LoraPair& p = *s.lora;
            const float scale = adapter_->scale();
            const RowMatrixF& x = dropout_ > 0.0f ? st.input : in;
            const auto n = static_cast<std::size_t>(dy.rows());
            // dU = s · dY B ; dB += s · dYᵀ U ; dA += dUᵀ X ; dX += dU A (through the dropout mask)
            RowMatrixF du(dy.rows(), p.b.cols());
            for_row_blocks(n, [&](Eigen::Index r0, Eigen::Index rn) { du.middleRows(r0, rn).noalias() = scale * (dy.middleRows(r0, rn) * p.b); });
            for_row_blocks(static_cast<std::size_t>(p.b.rows()), [&](Eigen::Index o0, Eigen::Index on) {
                p.grad_b.middleRows(o0, on).noalias() += scale * (dy.middleCols(o0, on).transpose() * st.u);
            });
            for_row_blocks(static_cast<std::size_t>(p.a.cols()), [&](Eigen::Index i0, Eigen::Index in_count) {
                p.grad_a.middleCols(i0, in_count).noalias() += du.transpose() * x.middleCols(i0, in_count);
            });
            for_row_blocks(n, [&](Eigen::Index r0, Eigen::Index rn) {
                if (dropout_ > 0.0f) {
                    RowMatrixF dxa = du.middleRows(r0, rn) * p.a;
                    mask_rows(slot_index, dxa, static_cast<std::size_t>(r0));
                    target.middleRows(r0, rn) += dxa;
                } else {
                    target.middleRows(r0, rn).noalias() += du.middleRows(r0, rn) * p.a;
                }
            });
        }
        if (accumulate) add_into(dx, dxl);
    }

    /// A masked LoRA branch's backward (train/weight_mask.hpp): g_e = Σ_t dY[t,i]·X[t,j] per masked entry e
    /// = (i, j), from which dB[i,:] += s·g_e·A[:,j] and dA[:,j] += s·g_e·B[i,:]; and dX[t,j] += δ_e·dY[t,i]
    /// (through the dropout mask when dropout is on). `x` is the branch's input (after dropout).
    void masked_lora_backward(std::size_t slot_index, const RowMatrixF& x, const RowMatrixF& dy, RowMatrixF& dx) {
        const Slot& s = slots_[slot_index];
        LoraPair& p = *s.lora;
        const WeightMask& m = *p.mask;
        const float scale = adapter_->scale();
        const float* delta = s.masked_delta.data();
        // Token-major copies, so each entry's sum over tokens reads two contiguous rows.
        const RowMatrixF dy_t = dy.transpose(), x_t = x.transpose();
        std::vector<float> g(m.count());
        for_row_blocks(m.rows, [&](Eigen::Index r0, Eigen::Index rn) {
            for (Eigen::Index i = r0; i < r0 + rn; ++i)
                for (std::uint32_t e = m.row_ptr[static_cast<std::size_t>(i)]; e < m.row_ptr[static_cast<std::size_t>(i) + 1]; ++e) {
                    g[e] = dy_t.row(i).dot(x_t.row(m.col[e]));
                    p.grad_b.row(i) += (scale * g[e]) * p.a.col(m.col[e]).transpose();
                }
        });
        // dA's columns are shared between rows: one thread, entries in order, so the sum is reproducible.
        for (std::size_t i = 0; i < m.rows; ++i)
            for (std::uint32_t e = m.row_ptr[i]; e < m.row_ptr[i + 1]; ++e)
                p.grad_a.col(m.col[e]) += (scale * g[e]) * p.b.row(static_cast<Eigen::Index>(i)).transpose();
        for_row_blocks(static_cast<std::size_t>(dy.rows()), [&](Eigen::Index r0, Eigen::Index rn) {
            RowMatrixF block = RowMatrixF::Zero(rn, static_cast<Eigen::Index>(m.cols));
            for (Eigen::Index t = 0; t < rn; ++t) {
                const float* dyr = dy.row(r0 + t).data();
                float* out = block.row(t).data();
                for (std::size_t i = 0; i < m.rows; ++i)
                    for (std::uint32_t e = m.row_ptr[i]; e < m.row_ptr[i + 1]; ++e) out[m.col[e]] += delta[e] * dyr[i];
            }
            if (dropout_ > 0.0f) mask_rows(slot_index, block, static_cast<std::size_t>(r0));
            dx.middleRows(r0, rn) += block;
        });
    }

    /// out = dropout(in) with this slot's masks (kept elements scaled by 1 / (1 − p)).
    void apply_dropout(std::size_t slot_index, const RowMatrixF& in, RowMatrixF& out) const {
        for_row_blocks(static_cast<std::size_t>(in.rows()), [&](Eigen::Index r0, Eigen::Index rn) {
            for (Eigen::Index r = r0; r < r0 + rn; ++r) {
                const auto first = static_cast<std::size_t>(r) * static_cast<std::size_t>(in.cols());
                const float inv_keep = 1.0f / (1.0f - dropout_);
                for (Eigen::Index j = 0; j < in.cols(); ++j)
                    out(r, j) = keep(slot_index, first + static_cast<std::size_t>(j)) ? in(r, j) * inv_keep : 0.0f;
            }
        });
    }
    /// The same mask on a gradient block whose first row is row0 of the layer's input.
    void mask_rows(std::size_t slot_index, RowMatrixF& block, std::size_t row0) const {
        const float inv_keep = 1.0f / (1.0f - dropout_);
        for (Eigen::Index r = 0; r < block.rows(); ++r) {
            const std::size_t first = (row0 + static_cast<std::size_t>(r)) * static_cast<std::size_t>(block.cols());
            for (Eigen::Index j = 0; j < block.cols(); ++j)
                block(r, j) = keep(slot_index, first + static_cast<std::size_t>(j)) ? block(r, j) * inv_keep : 0.0f;
        }
    }

    /// body(first, count) over fixed blocks of 64 rows (or columns) of n, in parallel. Fixed block sizes
    /// keep every product identical for any thread count.
    template <class Body>
    static void for_row_blocks(std::size_t n, Body&& body) {
        constexpr std::size_t block = 64;
        parallel_for((n + block - 1) / block, [&](std::size_t b) {
            const std::size_t first = b * block;
            body(static_cast<Eigen::Index>(first), static_cast<Eigen::Index>(std::min(block, n - first)));
        });
    }
    /// dst += src, in parallel.
    static void add_into(RowMatrixF& dst, const RowMatrixF& src) {
        for_row_blocks(static_cast<std::size_t>(dst.rows()), [&](Eigen::Index r0, Eigen::Index rn) { dst.middleRows(r0, rn) += src.middleRows(r0, rn); });
    }
    /// out = a + b, in parallel.
    static void sum_into(const RowMatrixF& a, const RowMatrixF& b, RowMatrixF& out) {
        out.resize(a.rows(), a.cols());
        for_row_blocks(static_cast<std::size_t>(a.rows()), [&](Eigen::Index r0, Eigen::Index rn) {
            out.middleRows(r0, rn) = a.middleRows(r0, rn) + b.middleRows(r0, rn);
        });
    }

    /// grad += dYᵀ X (out × in).
    static void add_weight_grad(const RowMatrixF& dy, const RowMatrixF& x, RowMatrixF& grad) {
        RowMatrixF g;
        product_nt(dy.transpose(), x.transpose(), g);
        grad += g;
    }

    // ---- one block ----

    void layer_forward(std::size_t l, const RowMatrixF& x, Activations& a, RowMatrixF& x_out, bool keep_all = false) {
        const LlamaConfig& c = w_.config;
        const LayerWeights& L = w_.layers[l];
        const auto n = x.rows();
        const std::size_t hd = c.head_dim, q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
        a.h1.resize(n, x.cols());
        norm_rows(x, L.attn_norm, a.h1);
        a.q.resize(n, static_cast<Eigen::Index>(q_dim));
        a.k.resize(n, static_cast<Eigen::Index>(kv_dim));
        a.v.resize(n, static_cast<Eigen::Index>(kv_dim));
        linear_forward(l * 7 + 0, a.h1, a.q, keep_all ? &a.lora[0] : nullptr);
        linear_forward(l * 7 + 1, a.h1, a.k, keep_all ? &a.lora[1] : nullptr);
        linear_forward(l * 7 + 2, a.h1, a.v, keep_all ? &a.lora[2] : nullptr);
        if (c.qkv_bias) {
            a.q.rowwise() += L.bq.transpose();
            a.k.rowwise() += L.bk.transpose();
            a.v.rowwise() += L.bv.transpose();
        }
        for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) {
            ops::rope(a.q.row(static_cast<Eigen::Index>(i)).data(), c.n_heads, hd, batch_.position(i), inv_freq_, options_.rope_layout);
            ops::rope(a.k.row(static_cast<Eigen::Index>(i)).data(), c.n_kv_heads, hd, batch_.position(i), inv_freq_, options_.rope_layout);
        }
        a.attn.resize(n, static_cast<Eigen::Index>(q_dim));
        attention_forward(a, keep_all);
        RowMatrixF proj(n, x.cols());
        linear_forward(l * 7 + 3, a.attn, proj, keep_all ? &a.lora[3] : nullptr);
        sum_into(x, proj, a.x_mid);
        a.h2.resize(n, x.cols());
        norm_rows(a.x_mid, L.ffn_norm, a.h2);
        a.gate.resize(n, static_cast<Eigen::Index>(c.d_ff));
        a.up.resize(n, static_cast<Eigen::Index>(c.d_ff));
        linear_forward(l * 7 + 4, a.h2, a.gate, keep_all ? &a.lora[4] : nullptr);
        linear_forward(l * 7 + 5, a.h2, a.up, keep_all ? &a.lora[5] : nullptr);
        a.act.resize(n, static_cast<Eigen::Index>(c.d_ff));
        parallel_for(static_cast<std::size_t>(n), [&](std::size_t t) {
            const auto r = static_cast<Eigen::Index>(t);
            ops::swiglu<float>({a.gate.row(r).data(), c.d_ff}, {a.up.row(r).data(), c.d_ff}, {a.act.row(r).data(), c.d_ff});
        });
        linear_forward(l * 7 + 6, a.act, proj, keep_all ? &a.lora[6] : nullptr);
        sum_into(a.x_mid, proj, x_out);
    }

    /// Causal attention per sequence, head and block of 64 query rows, with the decoder's expressions.
    void attention_forward(Activations& a, bool keep_probs) {
        const LlamaConfig& c = w_.config;
        const std::size_t hd = c.head_dim, group = c.n_heads / c.n_kv_heads, T = batch_.length, H = c.n_heads;
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        if (keep_probs) {
            a.probs.resize(batch_.sequences * H);
            for (auto& p : a.probs) p = RowMatrixF::Zero(static_cast<Eigen::Index>(T), static_cast<Eigen::Index>(T));
        }
        const std::size_t blocks = (T + attention_block - 1) / attention_block;
        using Stride = Eigen::OuterStride<>;
        using HeadRows = Eigen::Map<const RowMatrixF, 0, Stride>;
        using OutRows = Eigen::Map<RowMatrixF, 0, Stride>;
        const auto kv_dim = static_cast<Eigen::Index>(c.n_kv_heads * hd), q_dim = static_cast<Eigen::Index>(H * hd);
        parallel_for(batch_.sequences * H * blocks, [&](std::size_t j) {
            const std::size_t seq = j / (H * blocks), head = j / blocks % H, block = j % blocks;
            const std::size_t first = block * attention_block, count = std::min(attention_block, T - first);
            const std::size_t kv_head = head / group, n = first + count, row0 = seq * T;
            const HeadRows keys(a.k.row(static_cast<Eigen::Index>(row0)).data() + kv_head * hd, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(hd), Stride(kv_dim));
            const HeadRows values(a.v.row(static_cast<Eigen::Index>(row0)).data() + kv_head * hd, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(hd), Stride(kv_dim));
            const auto rows = static_cast<Eigen::Index>(count);
            const HeadRows queries(a.q.row(static_cast<Eigen::Index>(row0 + first)).data() + head * hd, rows, static_cast<Eigen::Index>(hd), Stride(q_dim));
            OutRows o(a.attn.row(static_cast<Eigen::Index>(row0 + first)).data() + head * hd, rows, static_cast<Eigen::Index>(hd), Stride(q_dim));
            thread_local RowMatrixF scores;
            scores.resize(rows, static_cast<Eigen::Index>(n));
            if (count == 1)
                scores.row(0).transpose().noalias() = keys * queries.row(0).transpose();
            else
                scores.noalias() = queries * keys.transpose();
            for (Eigen::Index r = 0; r < rows; ++r) {
                // Keys from the query's own sequence only (a packed row holds several); zero weight elsewhere.
                const std::size_t seen = first + static_cast<std::size_t>(r) + 1, start = batch_.start_of(row0 + seen - 1);
                std::span<float> row(scores.row(r).data() + start, seen - start);
                for (float& v : row) v *= scale;
                qsafe::ops::softmax(row);
                std::fill(scores.row(r).data(), scores.row(r).data() + start, 0.0f);
                std::fill(scores.row(r).data() + seen, scores.row(r).data() + n, 0.0f);
            }
            if (count == 1)
                o.row(0).transpose().noalias() = values.transpose() * scores.row(0).transpose();
            else
                o.noalias() = scores * values;
            if (keep_probs) a.probs[seq * H + head].block(static_cast<Eigen::Index>(first), 0, rows, static_cast<Eigen::Index>(n)) = scores;
        });
    }

    /// From d(attn) to d(q), d(k), d(v) (q and k after RoPE). Jobs are (sequence, KV head): the heads
    /// sharing a KV head add to its dK, dV in head order.
    void attention_backward(const Activations& a, const RowMatrixF& dattn, RowMatrixF& dq, RowMatrixF& dk, RowMatrixF& dv) const {
        const LlamaConfig& c = w_.config;
        const std::size_t hd = c.head_dim, group = c.n_heads / c.n_kv_heads, T = batch_.length, H = c.n_heads;
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        using Stride = Eigen::OuterStride<>;
        using HeadRows = Eigen::Map<const RowMatrixF, 0, Stride>;
        using OutRows = Eigen::Map<RowMatrixF, 0, Stride>;
        const auto kv_dim = static_cast<Eigen::Index>(c.n_kv_heads * hd), q_dim = static_cast<Eigen::Index>(H * hd);
        const auto Ti = static_cast<Eigen::Index>(T), hdi = static_cast<Eigen::Index>(hd);
        parallel_for(batch_.sequences * c.n_kv_heads, [&](std::size_t j) {
            const std::size_t seq = j / c.n_kv_heads, kv_head = j % c.n_kv_heads;
            const auto row0 = static_cast<Eigen::Index>(seq * T);
            const HeadRows K(a.k.row(row0).data() + kv_head * hd, Ti, hdi, Stride(kv_dim));
            const HeadRows V(a.v.row(row0).data() + kv_head * hd, Ti, hdi, Stride(kv_dim));
            OutRows dK(dk.row(row0).data() + kv_head * hd, Ti, hdi, Stride(kv_dim));
            OutRows dV(dv.row(row0).data() + kv_head * hd, Ti, hdi, Stride(kv_dim));
            dK.setZero();
            dV.setZero();
            RowMatrixF ds(Ti, Ti);
            for (std::size_t head = kv_head * group; head < (kv_head + 1) * group; ++head) {
                const RowMatrixF& P = a.probs[seq * H + head];
                const HeadRows dO(dattn.row(row0).data() + head * hd, Ti, hdi, Stride(q_dim));
                const HeadRows Q(a.q.row(row0).data() + head * hd, Ti, hdi, Stride(q_dim));
                OutRows dQ(dq.row(row0).data() + head * hd, Ti, hdi, Stride(q_dim));
                dV.noalias() += P.transpose() * dO;
                ds.noalias() = dO * V.transpose();
                for (Eigen::Index r = 0; r < Ti; ++r) {
                    const auto seen = static_cast<std::size_t>(r) + 1;
                    ops::softmax_backward<float>({P.row(r).data(), seen}, {ds.row(r).data(), seen}, {ds.row(r).data(), seen});
                    for (std::size_t i = 0; i < seen; ++i) ds(r, static_cast<Eigen::Index>(i)) *= scale;
                    std::fill(ds.row(r).data() + seen, ds.row(r).data() + T, 0.0f);
                }
                dQ.noalias() = ds * K;
                dK.noalias() += ds.transpose() * Q;
            }
        });
    }

    /// dx holds d(loss)/d(block output) on entry and d(loss)/d(block input) on return.
    void layer_backward(std::size_t l, const RowMatrixF& x, const Activations& a, RowMatrixF& dx) {
        const LlamaConfig& c = w_.config;
        const LayerWeights& L = w_.layers[l];
        BaseGradients::Layer* g = options_.full_gradients ? &base_grads_.layers[l] : nullptr;
        const auto n = x.rows();
        const std::size_t hd = c.head_dim;
        // MLP: x_out = x_mid + down(swiglu(gate(h2), up(h2))), h2 = norm(x_mid)
        RowMatrixF dact;
        linear_backward(l * 7 + 6, a.act, a.lora[6], dx, dact, false, g ? &g->w_down : nullptr);
        RowMatrixF dgate(n, static_cast<Eigen::Index>(c.d_ff)), dup(n, static_cast<Eigen::Index>(c.d_ff));
        parallel_for(static_cast<std::size_t>(n), [&](std::size_t t) {
            const auto r = static_cast<Eigen::Index>(t);
            ops::swiglu_backward<float>({a.gate.row(r).data(), c.d_ff}, {a.up.row(r).data(), c.d_ff}, {dact.row(r).data(), c.d_ff},
                                        {dgate.row(r).data(), c.d_ff}, {dup.row(r).data(), c.d_ff});
        });
        RowMatrixF dh2;
        linear_backward(l * 7 + 4, a.h2, a.lora[4], dgate, dh2, false, g ? &g->w_gate : nullptr);
        linear_backward(l * 7 + 5, a.h2, a.lora[5], dup, dh2, true, g ? &g->w_up : nullptr);
        norm_backward(a.x_mid, L.ffn_norm, dh2, dx, g ? &g->ffn_norm : nullptr);  // dx now d/d x_mid
        // Attention: x_mid = x + o(attn(rope(q(h1)), rope(k(h1)), v(h1))), h1 = norm(x)
        RowMatrixF dattn;
        linear_backward(l * 7 + 3, a.attn, a.lora[3], dx, dattn, false, g ? &g->wo : nullptr);
        RowMatrixF dq(n, a.q.cols()), dk(n, a.k.cols()), dv(n, a.v.cols());
        attention_backward(a, dattn, dq, dk, dv);
        parallel_for(static_cast<std::size_t>(n), [&](std::size_t i) {
            ops::rope(dq.row(static_cast<Eigen::Index>(i)).data(), c.n_heads, hd, batch_.position(i), inv_freq_, options_.rope_layout, -1);
            ops::rope(dk.row(static_cast<Eigen::Index>(i)).data(), c.n_kv_heads, hd, batch_.position(i), inv_freq_, options_.rope_layout, -1);
        });
        if (g && c.qkv_bias) {
            g->bq += dq.colwise().sum().transpose();
            g->bk += dk.colwise().sum().transpose();
            g->bv += dv.colwise().sum().transpose();
        }
        RowMatrixF dh1;
        linear_backward(l * 7 + 0, a.h1, a.lora[0], dq, dh1, false, g ? &g->wq : nullptr);
        linear_backward(l * 7 + 1, a.h1, a.lora[1], dk, dh1, true, g ? &g->wk : nullptr);
        linear_backward(l * 7 + 2, a.h1, a.lora[2], dv, dh1, true, g ? &g->wv : nullptr);
        norm_backward(x, L.attn_norm, dh1, dx, g ? &g->attn_norm : nullptr);
    }

    /// dx += d/dx of norm(x)·w given d(norm output); the weight gradient (rows summed in order) into dw.
    void norm_backward(const RowMatrixF& x, const VectorF& w, const RowMatrixF& dy, RowMatrixF& dx, VectorF* dw) const {
        const auto d = static_cast<std::size_t>(x.cols());
        const auto n = static_cast<std::size_t>(x.rows());
        RowMatrixF dxn(x.rows(), x.cols());
        RowMatrixF dwr = dw ? RowMatrixF::Zero(x.rows(), x.cols()) : RowMatrixF();
        parallel_for(n, [&](std::size_t t) {
            const auto r = static_cast<Eigen::Index>(t);
            ops::rms_norm_backward<float>({x.row(r).data(), d}, {w.data(), d}, w_.config.norm_eps, {dy.row(r).data(), d}, {dxn.row(r).data(), d},
                                          dw ? std::span<float>(dwr.row(r).data(), d) : std::span<float>());
        });
        add_into(dx, dxn);
        if (dw) *dw += dwr.colwise().sum().transpose();
    }

    // ---- output layer ----

    /// Forward (dx null): the target log-probabilities of the wanted rows into *logp, and with keep_grad
    /// each row's d logp / d(normed state) = (onehot(target) − softmax)·W into head_grad_. Backward: d loss /
    /// d(last hidden state) into *dx — from head_grad_ when the forward pass kept it, else by recomputing
    /// the logits chunk by chunk (full_gradients mode, which also needs them for the output weights).
    void head_pass(std::span<const double> dlogp, std::vector<double>* logp, RowMatrixF* dx, bool keep_grad = false) {
        const LlamaConfig& c = w_.config;
        const RowMatrixF& xl = inputs_.back();
        const auto d = static_cast<Eigen::Index>(c.d_model), vocab = static_cast<Eigen::Index>(c.vocab_size);
        const bool backward = dx != nullptr;
        RowMatrixF dnormed_all;
        if (backward) dnormed_all = RowMatrixF::Zero(xl.rows(), d);
        if (backward && head_grad_.rows() == static_cast<Eigen::Index>(rows_.size()) && !rows_.empty()) {
            parallel_for(rows_.size(), [&](std::size_t i) {
                const auto row = static_cast<Eigen::Index>(rows_[i]);
                dnormed_all.row(row) = static_cast<float>(dlogp[rows_[i] + 1]) * head_grad_.row(static_cast<Eigen::Index>(i));
            });
            norm_backward(xl, w_.output_norm, dnormed_all, *dx, nullptr);
            return;
        }
        if (!backward && keep_grad) head_grad_.resize(static_cast<Eigen::Index>(rows_.size()), d);
        else if (!backward) head_grad_.resize(0, 0);
        RowMatrixF* out_grad = nullptr;
        if (backward && options_.full_gradients) out_grad = output_is_tied() ? &base_grads_.token_embedding : &base_grads_.output;
        for (std::size_t c0 = 0; c0 < rows_.size(); c0 += head_chunk) {
            const std::size_t m = std::min(head_chunk, rows_.size() - c0);
            RowMatrixF h(static_cast<Eigen::Index>(m), d), normed(static_cast<Eigen::Index>(m), d);
            for (std::size_t i = 0; i < m; ++i) h.row(static_cast<Eigen::Index>(i)) = xl.row(static_cast<Eigen::Index>(rows_[c0 + i]));
            norm_rows(h, w_.output_norm, normed);
            RowMatrixF logits(static_cast<Eigen::Index>(m), vocab);
            apply_linear(*w_.output, normed, logits);
            parallel_for(m, [&](std::size_t i) {
                const std::size_t row = rows_[c0 + i];
                const auto target = static_cast<std::size_t>(batch_.tokens[row + 1]);
                std::span<float> lg(logits.row(static_cast<Eigen::Index>(i)).data(), c.vocab_size);
                if (!backward && !keep_grad) {
                    (*logp)[row + 1] = ops::target_log_prob<float>(lg, target, {});
                } else if (!backward) {
                    (*logp)[row + 1] = ops::target_log_prob<float>(lg, target, lg);
                    ops::target_log_prob_backward<float>(lg, target, 1.0f);
                } else {
                    ops::target_log_prob<float>(lg, target, lg);
                    ops::target_log_prob_backward<float>(lg, target, static_cast<float>(dlogp[row + 1]));
                }
            });
            if (!backward && !keep_grad) continue;
            RowMatrixF dnormed(static_cast<Eigen::Index>(m), d);
            product_nn(logits, *output_weights_, dnormed);
            if (!backward) {
                head_grad_.middleRows(static_cast<Eigen::Index>(c0), static_cast<Eigen::Index>(m)) = dnormed;
                continue;
            }
            if (out_grad && out_grad->size() > 0) add_weight_grad(logits, normed, *out_grad);
            for (std::size_t i = 0; i < m; ++i) dnormed_all.row(static_cast<Eigen::Index>(rows_[c0 + i])) = dnormed.row(static_cast<Eigen::Index>(i));
        }
        if (backward) norm_backward(xl, w_.output_norm, dnormed_all, *dx, options_.full_gradients ? &base_grads_.output_norm : nullptr);
    }

    /// y = x · wᵀ with core/fp32_blas.hpp's deterministic tiled product.
    static void product_nt(const RowMatrixF& x, const RowMatrixF& w, RowMatrixF& y) {
        y.resize(x.rows(), w.rows());
        fp32_blas::gemm_nt(x, w.data(), static_cast<std::size_t>(w.rows()), static_cast<std::size_t>(w.cols()), y);
    }
    /// y = x · w (w row-major, not transposed), deterministic tiles as product_nt.
    static void product_nn(const RowMatrixF& x, const RowMatrixF& w, RowMatrixF& y) {
        y.resize(x.rows(), w.cols());
        fp32_blas::gemm_nn(x, w.data(), static_cast<std::size_t>(w.cols()), static_cast<std::size_t>(w.cols()), y);
    }
    /// `weights` = the layer's own fp32 matrix, or a dequantized copy kept in `cache`.
    static void bind_weights(const QuantizedLinear& layer, RowMatrixF& cache, const RowMatrixF*& weights) {
        if (const auto* dense = dynamic_cast<const DenseLinear*>(&layer)) {
            cache.resize(0, 0);
            weights = &dense->weights();
        } else {
            cache = layer.dequantize();
            weights = &cache;
        }
    }

    LlamaWeights& w_;
    LoraAdapter* adapter_;
    TrainableOptions options_;
    std::vector<double> inv_freq_;
    std::vector<Slot> slots_;
    RowMatrixF output_dequantized_;
    const RowMatrixF* output_weights_ = nullptr;
    RowMatrixF head_grad_;  // per wanted row: d logp / d(final normed state), from the forward pass
    std::vector<Activations> kept_;  // block internals kept by the forward pass (kept_valid_[l])
    std::vector<std::uint8_t> kept_valid_;
    float dropout_ = 0.0f;
    std::uint64_t dropout_seed_ = 0;
    TrainBatch batch_;
    std::vector<std::size_t> rows_;     // positions whose next token's log-probability is wanted
    std::vector<RowMatrixF> inputs_;    // hidden state entering each block, and leaving the last
    bool has_forward_ = false;
    BaseGradients base_grads_;
};

}  // namespace qsafe::train
