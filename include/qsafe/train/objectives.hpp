#pragma once
// Training objectives over TrainableLlama's per-position log-probabilities: supervised fine-tuning (masked
// token cross-entropy on the response) and DPO (Rafailov et al., 2023). Each turns log-probabilities into
// a loss and the coefficients d loss / d logp that TrainableLlama::backward() takes.
//
// Examples are token sequences with a loss mask: mask[t] = 1 when token t is predicted and counted (a
// response token or the closing end-of-turn token); the prompt and padding are 0. render_example() builds
// them from (prompt, response) with the model's chat template, the response tokenized apart from the
// prompt so the mask boundary is exact.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/tokenizer/chat_template.hpp"
#include "qsafe/tokenizer/tokenizer.hpp"
#include "qsafe/train/trainable_llama.hpp"

namespace qsafe::train {

/// One training sequence: tokens and which of them the loss counts (same length).
struct MaskedSequence {
    std::vector<std::int32_t> tokens;
    std::vector<std::uint8_t> loss_mask;

    std::size_t counted() const noexcept { return static_cast<std::size_t>(std::count(loss_mask.begin(), loss_mask.end(), 1)); }
};

/// The token that closes an assistant turn in the template's format (<|im_end|>, <|eot_id|>, or EOS for
/// the [INST] formats). Throws config_error if the tokenizer has none.
inline std::int32_t end_of_turn_token(const tokenizer::Tokenizer& tok, const tokenizer::ChatTemplate& chat) {
    const bool inst = chat.family() != tokenizer::ChatFamily::chatml && chat.family() != tokenizer::ChatFamily::llama3;
    const auto id = inst ? tok.eos_id() : (tok.eot_id() ? tok.eot_id() : tok.eos_id());
    if (!id) throw config_error("tokenizer has no end-of-turn or EOS token to close a response with");
    return *id;
}

/// prompt rendered as one user turn with the assistant's turn opened (the template's own system prompt
/// included unless `with_system_prompt` is false), then response + end-of-turn; mask on the response part.
inline MaskedSequence render_example(const tokenizer::Tokenizer& tok, const tokenizer::ChatTemplate& chat, const std::string& prompt,
                                     const std::string& response, bool with_system_prompt = true) {
    tokenizer::ChatTemplate renderer = with_system_prompt ? chat : tokenizer::ChatTemplate(chat.family());
    const tokenizer::Message user{"user", prompt};
    const std::string prompt_text = renderer.format(std::span(&user, 1), /*add_generation_prompt=*/true);
    MaskedSequence s;
    s.tokens = tok.encode(prompt_text, {.add_bos = std::nullopt, .parse_special = true, .add_eos = false});
    s.loss_mask.assign(s.tokens.size(), 0);
    std::vector<std::int32_t> answer = tok.encode(response, {.add_bos = false, .parse_special = false, .add_eos = false});
    answer.push_back(end_of_turn_token(tok, chat));
    s.tokens.insert(s.tokens.end(), answer.begin(), answer.end());
    s.loss_mask.resize(s.tokens.size(), 1);
    return s;
}

/// Sequences in one batch: one per row, right-padded — or, with pack_length, several per row (first fit in the
/// given order, each row at most pack_length tokens unless one sequence is longer), which wastes less on
/// padding. The mask (padding 0) and which sequence each token belongs to come out in batch order.
struct MaskedBatch {
    TrainBatch batch;
    std::vector<std::uint8_t> mask;
    std::vector<std::int32_t> sequence_of;  // input sequence of each token, −1 for padding

    static MaskedBatch from(std::span<const MaskedSequence> seqs, std::int32_t pad, std::size_t pack_length = 0) {
        for (const auto& s : seqs)
            if (s.tokens.size() != s.loss_mask.size()) throw shape_error("MaskedBatch: a sequence's mask length differs from its token count");
        // Rows as lists of sequence indices.
        std::vector<std::vector<std::size_t>> rows;
        std::vector<std::size_t> fill;
        for (std::size_t i = 0; i < seqs.size(); ++i) {
            std::size_t r = 0;
            if (pack_length > 0)
                while (r < rows.size() && fill[r] + seqs[i].tokens.size() > pack_length) ++r;
            else
                r = rows.size();
            if (r == rows.size()) rows.emplace_back(), fill.push_back(0);
            rows[r].push_back(i);
            fill[r] += seqs[i].tokens.size();
        }
        MaskedBatch out;
        TrainBatch& b = out.batch;
        b.sequences = rows.size();
        b.length = fill.empty() ? 0 : *std::max_element(fill.begin(), fill.end());
        b.tokens.assign(b.size(), pad);
        out.mask.assign(b.size(), 0);
        out.sequence_of.assign(b.size(), -1);
        const bool packed = pack_length > 0;
        if (packed) b.segment_start.assign(b.size(), 0);
        for (std::size_t r = 0; r < rows.size(); ++r) {
            std::size_t pos = 0;
            for (std::size_t i : rows[r]) {
                const MaskedSequence& s = seqs[i];
                for (std::size_t t = 0; t < s.tokens.size(); ++t) {
                    const std::size_t at = r * b.length + pos + t;
                    b.tokens[at] = s.tokens[t];
                    out.mask[at] = t == 0 ? 0 : s.loss_mask[t];  // a sequence's first token is never predicted
                    out.sequence_of[at] = static_cast<std::int32_t>(i);
                    if (packed) b.segment_start[at] = static_cast<std::uint32_t>(pos);
                }
                pos += s.tokens.size();
            }
            // Padding after the last sequence: its own segment, so it never attends into a sequence's keys
            // unseen (it is never scored either).
            if (packed)
                for (std::size_t t = pos; t < b.length; ++t) b.segment_start[r * b.length + t] = static_cast<std::uint32_t>(pos);
        }
        return out;
    }
};

/// Masked mean token cross-entropy. `normalizer` is the number of counted tokens in the whole optimizer
/// step (all micro-batches of a gradient-accumulation step), so accumulated gradients equal one big
/// batch's. Returns this micro-batch's share of the loss; fills dlogp.
inline double sft_loss(std::span<const double> logp, std::span<const std::uint8_t> mask, double normalizer, std::vector<double>& dlogp) {
    if (logp.size() != mask.size()) throw shape_error("sft_loss: " + std::to_string(logp.size()) + " log-probabilities, " + std::to_string(mask.size()) + " mask entries");
    if (!(normalizer > 0)) throw config_error("sft_loss: no counted tokens (every loss-mask entry is 0)");
    dlogp.assign(logp.size(), 0.0);
    double loss = 0.0;
    for (std::size_t i = 0; i < logp.size(); ++i)
        if (mask[i]) {
            loss -= logp[i] / normalizer;
            dlogp[i] = -1.0 / normalizer;
        }
    return loss;
}

/// Sum of log-probabilities over each input sequence's counted tokens (in the order given to MaskedBatch::from).
inline std::vector<double> sequence_log_probs(std::span<const double> logp, const MaskedBatch& b) {
    std::vector<double> out(static_cast<std::size_t>(1 + *std::max_element(b.sequence_of.begin(), b.sequence_of.end())), 0.0);
    for (std::size_t i = 0; i < b.batch.size(); ++i)
        if (b.mask[i]) out[static_cast<std::size_t>(b.sequence_of[i])] += logp[i];
    return out;
}

/// One preference triple, already tokenized: prompt (rendered, assistant turn open) and two responses
/// (each ending in the end-of-turn token).
struct PreferenceTriple {
    std::vector<std::int32_t> prompt, chosen, rejected;

    MaskedSequence sequence(bool take_chosen) const {
        const auto& response = take_chosen ? chosen : rejected;
        MaskedSequence s;
        s.tokens = prompt;
        s.tokens.insert(s.tokens.end(), response.begin(), response.end());
        s.loss_mask.assign(prompt.size(), 0);
        s.loss_mask.resize(s.tokens.size(), 1);
        return s;
    }
};

/// log-probabilities of chosen and rejected under one model (policy or the frozen reference).
struct PreferenceLogProbs {
    double chosen = 0, rejected = 0;
};

struct DpoResult {
    double loss = 0;                 // mean over the triples (of this call)
    double reward_chosen = 0;        // mean β (π_c − ref_c)
    double reward_rejected = 0;      // mean β (π_r − ref_r)
    double accuracy = 0;             // fraction with reward_chosen > reward_rejected
    std::vector<double> losses;      // per triple
    std::vector<double> rewards_chosen, rewards_rejected;
    std::vector<double> dchosen, drejected;  // d loss / d policy log-prob, per triple (scaled by `normalizer`)
};

/// −log σ(z), stable for any z.
inline double neg_log_sigmoid(double z) noexcept { return std::max(-z, 0.0) + std::log1p(std::exp(-std::abs(z))); }

/// The DPO loss −log σ(β[(π_c − ref_c) − (π_r − ref_r)]) per triple. Gradients are of Σ loss_i / normalizer
/// (normalizer = triples in the whole optimizer step); `loss` is the plain mean over the given triples.
inline DpoResult dpo_loss(std::span<const PreferenceLogProbs> policy, std::span<const PreferenceLogProbs> reference, double beta,
                          double normalizer) {
    if (policy.size() != reference.size()) throw shape_error("dpo_loss: policy and reference log-probabilities differ in count");
    if (policy.empty()) throw config_error("dpo_loss: no preference triples");
    DpoResult r;
    const double n = static_cast<double>(policy.size());
    for (std::size_t i = 0; i < policy.size(); ++i) {
        const double rc = beta * (policy[i].chosen - reference[i].chosen), rr = beta * (policy[i].rejected - reference[i].rejected);
        const double z = rc - rr;
        const double loss = neg_log_sigmoid(z);
        const double sig_neg = 1.0 / (1.0 + std::exp(z));  // σ(−z) = −d(−log σ(z))/dz
        r.losses.push_back(loss);
        r.rewards_chosen.push_back(rc);
        r.rewards_rejected.push_back(rr);
        r.dchosen.push_back(-beta * sig_neg / normalizer);
        r.drejected.push_back(beta * sig_neg / normalizer);
        r.loss += loss / n;
        r.reward_chosen += rc / n;
        r.reward_rejected += rr / n;
        r.accuracy += (rc > rr ? 1.0 : 0.0) / n;
    }
    return r;
}

/// Spreads per-sequence coefficients over each sequence's counted positions (the dlogp backward() takes).
inline std::vector<double> spread_sequence_gradient(std::span<const double> per_sequence, const MaskedBatch& b) {
    std::vector<double> d(b.batch.size(), 0.0);
    for (std::size_t i = 0; i < b.batch.size(); ++i)
        if (b.mask[i]) d[i] = per_sequence[static_cast<std::size_t>(b.sequence_of[i])];
    return d;
}

}  // namespace qsafe::train
