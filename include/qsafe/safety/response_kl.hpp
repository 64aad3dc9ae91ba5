#pragma once
// KL divergence between the full-precision model and a variant over the response tokens of a ResponseSet
// ("safety KL" when the set holds the fp model's answers to harmful prompts): a continuous measure of how
// far a quantized model drifts from the fp model's safety behaviour, informative even when the fp model
// refuses too rarely for refusal-rate differences to be significant. Also the mean log-likelihood of the
// fp responses under each model.
//
// The reference keeps the fp model's top-k log-probs per scored position (model/kl_divergence.hpp's
// top-k bound, tight when the top k hold almost all the mass). Sequences go through the decoder in fixed
// chunks of whole sequences, so the numbers do not depend on anything but the set and the chunk size.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/model/decoder.hpp"
#include "qsafe/model/kl_divergence.hpp"
#include "qsafe/model/ops.hpp"
#include "qsafe/model/sampler.hpp"
#include "qsafe/safety/response_set.hpp"

namespace qsafe {

/// Sequences [begin, end) of a set that go through the decoder together (about `max_tokens` tokens).
struct SequenceChunk {
    std::size_t begin = 0, end = 0;
};

inline std::vector<SequenceChunk> response_chunks(const ResponseSet& set, std::size_t max_tokens = 2048) {
    std::vector<SequenceChunk> out;
    std::size_t begin = 0, tokens = 0;
    for (std::size_t i = 0; i < set.sequences.size(); ++i) {
        const std::size_t n = set.sequences[i].tokens.size();
        if (i > begin && tokens + n > max_tokens) {
            out.push_back({begin, i});
            begin = i;
            tokens = 0;
        }
        tokens += n;
    }
    if (begin < set.sequences.size()) out.push_back({begin, set.sequences.size()});
    return out;
}

/// The forward batch of one chunk: every token of its sequences, logits wanted at the scored positions.
/// `caches` gets one fresh cache per sequence.
inline std::vector<TokenSlot> chunk_slots(const LlamaModel& model, const ResponseSet& set, SequenceChunk chunk, std::vector<KvCache>& caches) {
    caches.clear();
    caches.reserve(chunk.end - chunk.begin);
    for (std::size_t i = chunk.begin; i < chunk.end; ++i) {
        const auto& s = set.sequences[i];
        if (s.tokens.size() > model.config().context_length)
            throw config_error("response set '" + set.source + "': sequence '" + s.id + "' has " + std::to_string(s.tokens.size()) +
                               " tokens, more than the model's context of " + std::to_string(model.config().context_length));
        caches.push_back(model.new_cache());
    }
    std::vector<TokenSlot> slots;
    for (std::size_t i = chunk.begin; i < chunk.end; ++i) {
        const auto& s = set.sequences[i];
        const std::size_t first = s.first_scored_position();
        for (std::size_t t = 0; t < s.tokens.size(); ++t)
            slots.push_back({&caches[i - chunk.begin], s.tokens[t], t >= first && t + 1 < s.tokens.size()});
    }
    return slots;
}

/// Calls visit(sequence index, next token, logits) for every scored position of the set, in set order.
/// `logits_of` maps (slots, chunk index) to the logits of the slots with want_logits — the whole model by
/// default; the sensitivity search passes a partial re-run from cached hidden states.
template <class Logits, class Visit>
void visit_response_positions(const ResponseSet& set, const std::vector<SequenceChunk>& chunks, const LlamaModel& model, Logits&& logits_of,
                              Visit&& visit) {
    std::vector<KvCache> caches;
    for (std::size_t c = 0; c < chunks.size(); ++c) {
        const auto slots = chunk_slots(model, set, chunks[c], caches);
        const RowMatrixF logits = logits_of(std::span<const TokenSlot>(slots), c);
        Eigen::Index row = 0;
        for (std::size_t i = chunks[c].begin; i < chunks[c].end; ++i) {
            const auto& s = set.sequences[i];
            for (std::size_t t = s.first_scored_position(); t + 1 < s.tokens.size(); ++t, ++row)
                visit(i, s.tokens[t + 1], std::span<const float>(logits.row(row).data(), static_cast<std::size_t>(logits.cols())));
        }
    }
}

/// The reference model's top-k log-probs at every scored position of a response set.
struct ResponseReference {
    std::string source;
    std::uint32_t k = 0, vocab = 0;
    std::size_t chunk_tokens = 2048;
    std::vector<std::int32_t> next_token;
    std::vector<float> next_logp;
    std::vector<std::int32_t> top_ids;  // positions x k
    std::vector<float> top_logp;

    std::size_t positions() const noexcept { return next_token.size(); }
};

inline ResponseReference record_response_reference(LlamaModel& reference, const ResponseSet& set, std::uint32_t k = 128,
                                                   std::size_t chunk_tokens = 2048) {
    ResponseReference r;
    r.source = set.source;
    r.vocab = static_cast<std::uint32_t>(reference.config().vocab_size);
    r.k = std::min(k, r.vocab);
    r.chunk_tokens = chunk_tokens;
    std::vector<float> logp(r.vocab);
    visit_response_positions(
        set, response_chunks(set, chunk_tokens), reference, [&](std::span<const TokenSlot> slots, std::size_t) { return reference.forward(slots); },
        [&](std::size_t, std::int32_t next, std::span<const float> logits) {
            ops::log_softmax(logits, logp);
            r.next_token.push_back(next);
            r.next_logp.push_back(logp[static_cast<std::size_t>(next)]);
            append_top_k(logp, r.k, r.top_ids, r.top_logp);
        });
    return r;
}

/// KL(reference || variant) statistics over the scored positions, plus both models' mean log-likelihood
/// of the response tokens (KlStats: ppl_reference / ppl_variant are exp(-mean log-likelihood)).
struct ResponseKlStats {
    KlStats kl;
    double mean_logprob_reference = 0.0, mean_logprob_variant = 0.0;
};

/// Accumulates the KL of logits against the reference, position by position in set order.
class ResponseKlAccumulator {
  public:
    explicit ResponseKlAccumulator(const ResponseReference& ref) : ref_(ref), logq_(ref.vocab) {}

    void add(std::int32_t next, std::span<const float> logits) {
        if (p_ >= ref_.positions() || next != ref_.next_token[p_])
            throw config_error("response KL: the reference was recorded on a different response set than '" + ref_.source + "'");
        ops::log_softmax(logits, logq_);
        const TopKKl d = top_k_kl({ref_.top_ids.data() + p_ * ref_.k, ref_.k}, {ref_.top_logp.data() + p_ * ref_.k, ref_.k}, logq_);
        acc_.add(d.kl, Sampler::argmax(logits) == ref_.top_ids[p_ * ref_.k], -static_cast<double>(ref_.next_logp[p_]),
                 -static_cast<double>(logq_[static_cast<std::size_t>(next)]), d.tail_mass);
        ++p_;
    }
    ResponseKlStats result() const {
        if (p_ != ref_.positions())
            throw config_error("response KL: " + std::to_string(p_) + " positions scored, the reference has " + std::to_string(ref_.positions()));
        ResponseKlStats s;
        s.kl = acc_.result();
        if (s.kl.positions > 0) {
            s.mean_logprob_reference = -std::log(s.kl.ppl_reference);
            s.mean_logprob_variant = -std::log(s.kl.ppl_variant);
        }
        return s;
    }

  private:
    const ResponseReference& ref_;
    std::vector<float> logq_;
    KlAccumulator acc_;
    std::size_t p_ = 0;
};

inline ResponseKlStats compare_on_responses(LlamaModel& variant, const ResponseSet& set, const ResponseReference& ref) {
    if (ref.vocab != variant.config().vocab_size) throw config_error("response KL: the variant's vocabulary differs from the reference's");
    ResponseKlAccumulator acc(ref);
    visit_response_positions(
        set, response_chunks(set, ref.chunk_tokens), variant, [&](std::span<const TokenSlot> slots, std::size_t) { return variant.forward(slots); },
        [&](std::size_t, std::int32_t next, std::span<const float> logits) { acc.add(next, logits); });
    return acc.result();
}

}  // namespace qsafe
