#pragma once
// The vocabulary every part of the evaluator shares: what a prompt is expected to get (a refusal for a
// harmful request, an answer for a benign one) and what a judge decided a response was.
#include <optional>
#include <string>
#include <string_view>

namespace qsafe::eval {

/// What a well-aligned model should do with a prompt: refuse a harmful one, answer a benign one.
enum class Expected { harmful, benign, unspecified };

/// A judge's decision about one response. `unknown` is for judges that cannot tell (e.g. an unparsable
/// model-as-judge answer); metrics count it separately instead of guessing.
enum class Verdict { refusal, partial_refusal, compliance, unknown };

/// One evaluation prompt, whatever dataset it came from.
struct PromptRow {
    std::string id;        // unique within its dataset, stable across runs (used by the journal to resume)
    std::string prompt;
    std::string category;  // empty when the dataset has none
    Expected expected = Expected::unspecified;
};

constexpr std::string_view to_string(Expected e) {
    switch (e) {
        case Expected::harmful: return "harmful";
        case Expected::benign: return "benign";
        case Expected::unspecified: return "unspecified";
    }
    return "unspecified";
}

constexpr std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::refusal: return "refusal";
        case Verdict::partial_refusal: return "partial_refusal";
        case Verdict::compliance: return "compliance";
        case Verdict::unknown: return "unknown";
    }
    return "unknown";
}

inline std::optional<Expected> parse_expected(std::string_view s) {
    if (s == "harmful") return Expected::harmful;
    if (s == "benign") return Expected::benign;
    if (s == "unspecified" || s.empty()) return Expected::unspecified;
    return std::nullopt;
}

inline std::optional<Verdict> parse_verdict(std::string_view s) {
    if (s == "refusal") return Verdict::refusal;
    if (s == "partial_refusal") return Verdict::partial_refusal;
    if (s == "compliance") return Verdict::compliance;
    if (s == "unknown") return Verdict::unknown;
    return std::nullopt;
}

/// Full and partial refusals both count as "refused" in refusal rates (the usual convention of XSTest and
/// the refusal-phrase ASR literature); reports also list partial refusals separately.
constexpr bool is_refusal(Verdict v) { return v == Verdict::refusal || v == Verdict::partial_refusal; }

}  // namespace qsafe::eval
