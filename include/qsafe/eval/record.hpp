#pragma once
// What the evaluator keeps about each judged response and each model variant, and their JSON form. The JSON
// keys are written in a fixed order (nlohmann::ordered_json) and optional values are written as null rather
// than left out, so every journal line and report entry has the same shape.
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "qsafe/core/error.hpp"
#include "qsafe/eval/verdict.hpp"

namespace qsafe::eval {

/// Why generation ended: the model closed its turn, or the token budget ran out (a truncated answer may
/// be judged differently from a complete one, so the report can tell them apart).
enum class StopReason { end_of_turn, max_tokens };

constexpr std::string_view to_string(StopReason s) {
    return s == StopReason::end_of_turn ? "end_of_turn" : "max_tokens";
}

inline std::optional<StopReason> parse_stop_reason(std::string_view s) {
    if (s == "end_of_turn") return StopReason::end_of_turn;
    if (s == "max_tokens") return StopReason::max_tokens;
    return std::nullopt;
}

/// One judged response of one model variant to one prompt.
struct ResponseRecord {
    std::string dataset;  // prompt ids are unique only within a dataset
    std::string variant;
    std::string prompt_id;
    std::string category;
    Expected expected = Expected::unspecified;
    std::string prompt;
    std::string response;
    Verdict verdict = Verdict::unknown;
    std::string judge_reason;
    std::size_t prompt_tokens = 0;
    std::size_t response_tokens = 0;
    StopReason stop = StopReason::end_of_turn;
    double seconds = 0.0;  // wall time of generation; kept in the journal, never in reports
    // Agreement with the reference variant's response to the same prompt (absent for the reference itself).
    std::optional<std::size_t> identical_prefix_tokens;
    std::optional<double> similarity;  // in [0, 1]

    friend bool operator==(const ResponseRecord&, const ResponseRecord&) = default;
};

/// A model variant under evaluation: how it was made and what it costs, plus quality numbers measured
/// outside the safety run (perplexity, KL divergence against the full-precision model).
struct VariantInfo {
    std::string name;
    std::string method;        // "fp", "rtn", "gptq", "awq", ...
    std::string scheme_rules;  // e.g. "*=int4-g128-asym,output=int8-pc-sym"
    double bits_per_weight = 0.0;
    std::uint64_t file_bytes = 0;
    std::optional<double> perplexity;
    std::optional<double> mean_kl;
    std::optional<double> p99_kl;
    std::optional<double> same_top_token_pct;  // % of positions where the top token matches the reference
    // Safety KL: mean and p99 KL divergence from the reference over the reference's own answers to the
    // harmful prompts (teacher-forced), and the mean log-likelihood per token of those answers under this
    // variant (safety/response_kl.hpp).
    std::optional<double> safety_kl;
    std::optional<double> safety_kl_p99;
    std::optional<double> safety_logprob;

    friend bool operator==(const VariantInfo&, const VariantInfo&) = default;
};

/// nlohmann::json or nlohmann::ordered_json; writing always uses the order of the struct's fields.
template <class J>
concept JsonValue = std::same_as<J, nlohmann::json> || std::same_as<J, nlohmann::ordered_json>;

namespace detail {

template <JsonValue J>
const J& json_member(const J& j, const char* key, const char* what) {
    if (!j.is_object()) throw format_error(std::string(what) + ": expected a JSON object");
    const auto it = j.find(key);
    if (it == j.end()) throw format_error(std::string(what) + ": missing key '" + key + "'");
    return *it;
}

template <class T, JsonValue J>
T json_get(const J& j, const char* key, const char* what) {
    const J& value = json_member(j, key, what);
    if constexpr (std::integral<T> && !std::same_as<T, bool>) {
        // nlohmann converts a float to an integer with a plain cast (undefined behaviour for 1e30) and wraps
        // out-of-range integers: an integer field must hold an integer that fits.
        const bool fits = value.is_number_unsigned() ? std::in_range<T>(value.template get<std::uint64_t>())
                          : value.is_number_integer() ? std::in_range<T>(value.template get<std::int64_t>())
                                                      : false;
        const bool negative_count = std::is_unsigned_v<T> && value.is_number_integer() && !value.is_number_unsigned();
        if (!fits)
            throw format_error(std::string(what) + ": key '" + key + "' must be " +
                               (negative_count ? std::string("a non-negative integer,")
                                               : std::string("an integer that fits ") + (std::is_signed_v<T> ? "a signed " : "an unsigned ") +
                                                     std::to_string(sizeof(T) * 8) + "-bit type,") +
                               " not " + (value.is_number() ? value.dump() : std::string(value.type_name())));
    }
    try {
        return value.template get<T>();
    } catch (const nlohmann::json::exception&) {
        throw format_error(std::string(what) + ": key '" + key + "' has the wrong type (" + value.type_name() + ")");
    }
}

/// A finite number in [lo, hi].
template <JsonValue J>
double json_get_in_range(const J& j, const char* key, const char* what, double lo, double hi) {
    const double v = json_get<double>(j, key, what);
    if (!(v >= lo && v <= hi))
        throw format_error(std::string(what) + ": key '" + key + "' is " + json_member(j, key, what).dump() + ", outside [" +
                           std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
}

/// Missing keys and null both mean "absent", so older or hand-written files stay readable.
template <class T, JsonValue J>
std::optional<T> json_get_optional(const J& j, const char* key, const char* what) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    return json_get<T>(j, key, what);
}

template <class Enum, JsonValue J, class Parse>
Enum json_get_enum(const J& j, const char* key, const char* what, Parse parse) {
    const auto text = json_get<std::string>(j, key, what);
    const auto value = parse(text);
    if (!value) throw format_error(std::string(what) + ": key '" + key + "' has an unknown value '" + text + "'");
    return *value;
}

template <JsonValue J, class T>
J optional_to_json(const std::optional<T>& value) {
    return value ? J(*value) : J(nullptr);
}

}  // namespace detail

template <JsonValue J>
void to_json(J& j, const ResponseRecord& r) {
    j = J::object();
    j["dataset"] = r.dataset;
    j["variant"] = r.variant;
    j["prompt_id"] = r.prompt_id;
    j["category"] = r.category;
    j["expected"] = std::string(to_string(r.expected));
    j["prompt"] = r.prompt;
    j["response"] = r.response;
    j["verdict"] = std::string(to_string(r.verdict));
    j["judge_reason"] = r.judge_reason;
    j["prompt_tokens"] = r.prompt_tokens;
    j["response_tokens"] = r.response_tokens;
    j["stop"] = std::string(to_string(r.stop));
    j["seconds"] = r.seconds;
    j["identical_prefix_tokens"] = detail::optional_to_json<J>(r.identical_prefix_tokens);
    j["similarity"] = detail::optional_to_json<J>(r.similarity);
}

template <JsonValue J>
void from_json(const J& j, ResponseRecord& r) {
    constexpr const char* what = "response record";
    using detail::json_get;
    r.dataset = json_get<std::string>(j, "dataset", what);
    r.variant = json_get<std::string>(j, "variant", what);
    r.prompt_id = json_get<std::string>(j, "prompt_id", what);
    r.category = json_get<std::string>(j, "category", what);
    r.expected = detail::json_get_enum<Expected>(j, "expected", what, parse_expected);
    r.prompt = json_get<std::string>(j, "prompt", what);
    r.response = json_get<std::string>(j, "response", what);
    r.verdict = detail::json_get_enum<Verdict>(j, "verdict", what, parse_verdict);
    r.judge_reason = json_get<std::string>(j, "judge_reason", what);
    // Impossible values are refused, not carried into the rates: a journal is also a file from elsewhere.
    r.prompt_tokens = json_get<std::size_t>(j, "prompt_tokens", what);
    r.response_tokens = json_get<std::size_t>(j, "response_tokens", what);
    r.stop = detail::json_get_enum<StopReason>(j, "stop", what, parse_stop_reason);
    r.seconds = detail::json_get_in_range(j, "seconds", what, 0.0, 1e9);
    if (const auto it = j.find("identical_prefix_tokens"); it != j.end() && !it->is_null())
        r.identical_prefix_tokens = json_get<std::size_t>(j, "identical_prefix_tokens", what);
    else
        r.identical_prefix_tokens.reset();
    if (const auto it = j.find("similarity"); it != j.end() && !it->is_null())
        r.similarity = detail::json_get_in_range(j, "similarity", what, 0.0, 1.0);
    else
        r.similarity.reset();
}

template <JsonValue J>
void to_json(J& j, const VariantInfo& v) {
    j = J::object();
    j["name"] = v.name;
    j["method"] = v.method;
    j["scheme_rules"] = v.scheme_rules;
    j["bits_per_weight"] = v.bits_per_weight;
    j["file_bytes"] = v.file_bytes;
    j["perplexity"] = detail::optional_to_json<J>(v.perplexity);
    j["mean_kl"] = detail::optional_to_json<J>(v.mean_kl);
    j["p99_kl"] = detail::optional_to_json<J>(v.p99_kl);
    j["same_top_token_pct"] = detail::optional_to_json<J>(v.same_top_token_pct);
    j["safety_kl"] = detail::optional_to_json<J>(v.safety_kl);
    j["safety_kl_p99"] = detail::optional_to_json<J>(v.safety_kl_p99);
    j["safety_logprob"] = detail::optional_to_json<J>(v.safety_logprob);
}

template <JsonValue J>
void from_json(const J& j, VariantInfo& v) {
    constexpr const char* what = "variant info";
    using detail::json_get;
    using detail::json_get_optional;
    v.name = json_get<std::string>(j, "name", what);
    v.method = json_get<std::string>(j, "method", what);
    v.scheme_rules = json_get<std::string>(j, "scheme_rules", what);
    v.bits_per_weight = json_get<double>(j, "bits_per_weight", what);
    v.file_bytes = json_get<std::uint64_t>(j, "file_bytes", what);
    v.perplexity = json_get_optional<double>(j, "perplexity", what);
    v.mean_kl = json_get_optional<double>(j, "mean_kl", what);
    v.p99_kl = json_get_optional<double>(j, "p99_kl", what);
    v.same_top_token_pct = json_get_optional<double>(j, "same_top_token_pct", what);
    v.safety_kl = json_get_optional<double>(j, "safety_kl", what);
    v.safety_kl_p99 = json_get_optional<double>(j, "safety_kl_p99", what);
    v.safety_logprob = json_get_optional<double>(j, "safety_logprob", what);
}

}  // namespace qsafe::eval
