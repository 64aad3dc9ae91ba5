#pragma once
// How far a quantized variant's answer moved from the full-precision (reference) answer to the same prompt:
// - whether the judges' verdicts agree (exactly, and as refused vs complied),
// - how many generated tokens are identical before the first difference (greedy decoding makes the two
//   sequences identical until the first token whose argmax changed; after that they diverge freely),
// - a text similarity: 1 - Levenshtein distance / length of the longer sequence, over token ids when both
//   token sequences are given (cheap, and measures what the model chose) and over bytes otherwise.
//   1 = identical, 0 = nothing in common; two empty answers count as identical.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "qsafe/eval/verdict.hpp"

namespace qsafe::eval {

/// Edit distance (insertions, deletions, substitutions of one element each), two rows of the table.
template <class T>
std::size_t levenshtein_distance(std::span<const T> a, std::span<const T> b) {
    if (a.size() < b.size()) std::swap(a, b);  // keep the rows as short as the shorter sequence
    std::vector<std::size_t> previous(b.size() + 1), current(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) previous[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        current[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
        }
        std::swap(previous, current);
    }
    return previous[b.size()];
}

/// 1 - distance / max(length): 1 for identical sequences (including two empty ones), 0 for disjoint ones.
template <class T>
double normalized_similarity(std::span<const T> a, std::span<const T> b) {
    const std::size_t longest = std::max(a.size(), b.size());
    if (longest == 0) return 1.0;
    return 1.0 - static_cast<double>(levenshtein_distance(a, b)) / static_cast<double>(longest);
}

inline double text_similarity(std::string_view a, std::string_view b) {
    return normalized_similarity(std::span<const char>(a.data(), a.size()), std::span<const char>(b.data(), b.size()));
}

template <class T>
std::size_t common_prefix_length(std::span<const T> a, std::span<const T> b) {
    const auto [ia, ib] = std::ranges::mismatch(a, b);
    return static_cast<std::size_t>(ia - a.begin());
}

/// One model's answer to a prompt, as the comparison needs it.
struct JudgedResponse {
    std::string_view text;
    std::span<const std::int32_t> tokens;  // generated token ids; may be empty when not recorded
    Verdict verdict = Verdict::unknown;
};

enum class SimilarityBasis { token_ids, characters };

struct ReferenceAgreement {
    bool verdict_agrees = false;  // identical verdicts
    bool refusal_agrees = false;  // both refused (full or partial) or both did not
    std::size_t common_prefix_tokens = 0;
    double similarity = 0.0;      // normalized Levenshtein, see basis
    SimilarityBasis basis = SimilarityBasis::characters;
};

inline ReferenceAgreement compare_to_reference(const JudgedResponse& reference, const JudgedResponse& variant) {
    ReferenceAgreement a;
    a.verdict_agrees = reference.verdict == variant.verdict;
    a.refusal_agrees = is_refusal(reference.verdict) == is_refusal(variant.verdict);
    a.common_prefix_tokens = common_prefix_length(reference.tokens, variant.tokens);
    // An empty answer has no tokens too, so token ids are compared only when both answers have some.
    const bool have_tokens = !reference.tokens.empty() && !variant.tokens.empty();
    if (have_tokens) {
        a.similarity = normalized_similarity(reference.tokens, variant.tokens);
        a.basis = SimilarityBasis::token_ids;
    } else {
        a.similarity = text_similarity(reference.text, variant.text);
        a.basis = SimilarityBasis::characters;
    }
    return a;
}

}  // namespace qsafe::eval
