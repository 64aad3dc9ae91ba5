#pragma once
// The safety report in three forms: JSON for programs, Markdown for people, CSV for spreadsheets and
// plotting (docs/report-format.md documents all three). A report is a pure function of the metrics: no
// timestamps, timings or paths go into it, numbers are rounded to fixed precision, so identical records give
// byte-identical files whatever order they were journaled in, and reports of two runs can be diffed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/io/atomic_write.hpp"
#include "qsafe/eval/metrics.hpp"
#include "qsafe/eval/svg_plot.hpp"

namespace qsafe::eval {

inline constexpr int report_format_version = 1;

namespace detail {

/// A double rounded to `digits` significant digits, so the JSON writer's shortest form stays short and the
/// last bits of a floating-point sum cannot change the report.
inline double significant(double value, int digits = 6) {
    if (value == 0.0 || !std::isfinite(value)) return value;
    char text[40];
    std::snprintf(text, sizeof text, "%.*g", digits, value);
    return std::strtod(text, nullptr);
}

inline std::string printf_double(const char* format, double value) {
    char text[64];
    std::snprintf(text, sizeof text, format, value);
    return text;
}

inline nlohmann::ordered_json rate_json(const std::optional<double>& rate) {
    return rate ? nlohmann::ordered_json(significant(*rate)) : nlohmann::ordered_json(nullptr);
}

inline nlohmann::ordered_json interval_json(const Proportion& p) {
    if (p.total == 0) return nullptr;
    const auto ci = p.wilson();
    return nlohmann::ordered_json::array({significant(ci.low), significant(ci.high)});
}

inline nlohmann::ordered_json optional_json(const std::optional<double>& value) {
    return value ? nlohmann::ordered_json(significant(*value)) : nlohmann::ordered_json(nullptr);
}

inline nlohmann::ordered_json comparison_json(const std::optional<PairedComparison>& c) {
    if (!c) return nullptr;
    nlohmann::ordered_json j;
    j["pairs"] = c->pairs;
    j["refused_to_complied"] = c->refused_to_complied;
    j["complied_to_refused"] = c->complied_to_refused;
    j["mcnemar_p"] = significant(c->mcnemar_p);
    j["mcnemar_mid_p"] = significant(c->mcnemar_mid_p);
    j["verdict_agreement"] = rate_json(c->verdict_agreement.rate());
    j["mean_identical_prefix_tokens"] = optional_json(c->mean_identical_prefix_tokens);
    j["mean_similarity"] = optional_json(c->mean_similarity);
    return j;
}

inline nlohmann::ordered_json group_json(const GroupMetrics& g) {
    nlohmann::ordered_json harmful;
    harmful["prompts"] = g.harmful;
    harmful["unknown"] = g.harmful_unknown;
    harmful["judged"] = g.refusal.total;
    harmful["refused"] = g.refusal.count;
    harmful["refused_full"] = g.full_refusal.count;
    harmful["refusal_rate"] = rate_json(g.refusal.rate());
    harmful["refusal_ci"] = interval_json(g.refusal);
    harmful["full_refusal_rate"] = rate_json(g.full_refusal.rate());
    harmful["asr"] = rate_json(g.attack_success.rate());
    harmful["asr_ci"] = interval_json(g.attack_success);

    nlohmann::ordered_json benign;
    benign["prompts"] = g.benign;
    benign["unknown"] = g.benign_unknown;
    benign["judged"] = g.over_refusal.total;
    benign["refused"] = g.over_refusal.count;
    benign["over_refusal_rate"] = rate_json(g.over_refusal.rate());
    benign["over_refusal_ci"] = interval_json(g.over_refusal);

    nlohmann::ordered_json j;
    j["category"] = g.category;
    j["harmful"] = std::move(harmful);
    j["benign"] = std::move(benign);
    j["unspecified_prompts"] = g.unspecified;
    j["vs_reference"] = {{"harmful", comparison_json(g.harmful_vs_reference)},
                         {"benign", comparison_json(g.benign_vs_reference)}};
    return j;
}

inline std::string format_percent(const std::optional<double>& rate) {
    return rate ? printf_double("%.1f", 100.0 * *rate) : std::string("—");
}

inline std::string format_percent_with_interval(const Proportion& p) {
    if (p.total == 0) return "—";
    const auto ci = p.wilson();
    return format_percent(p.rate()) + " [" + printf_double("%.1f", 100.0 * ci.low) + ", " +
           printf_double("%.1f", 100.0 * ci.high) + "]";
}

inline std::string format_count(std::size_t judged, std::size_t unknown) {
    std::string out = std::to_string(judged);
    if (unknown > 0) out += " (+" + std::to_string(unknown) + " unknown)";
    return out;
}

inline std::string format_bytes(std::uint64_t bytes) {
    if (bytes == 0) return "—";
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double value = static_cast<double>(bytes);
    int unit = 0;
    while (value >= 1024.0 && unit < 4) {
        value /= 1024.0;
        ++unit;
    }
    return unit == 0 ? std::to_string(bytes) + " B" : printf_double("%.1f", value) + " " + units[unit];
}

inline std::string format_p(double p) { return p < 1e-4 ? printf_double("%.1e", p) : printf_double("%.3g", p); }

inline std::string format_optional(const std::optional<double>& value, const char* format) {
    return value ? printf_double(format, *value) : std::string("—");
}

inline std::string format_flips(const std::optional<PairedComparison>& c) {
    if (!c) return "—";
    return std::to_string(c->refused_to_complied) + " / " + std::to_string(c->complied_to_refused);
}

/// Table cells cannot hold a pipe or a line break.
inline std::string markdown_cell(std::string_view text) {
    std::string out;
    for (const char c : text) {
        if (c == '|') out += "\\|";
        else if (c == '\n' || c == '\r') out += ' ';
        else out += c;
    }
    return out;
}

inline std::string variant_label(const VariantMetrics& v) {
    return markdown_cell(v.info.name) + (v.is_reference ? " (reference)" : "");
}

inline std::string csv_field(std::string_view text) {
    if (text.find_first_of(",\"\n\r") == std::string_view::npos) return std::string(text);
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

/// A dataset name as part of a file name: letters, digits, '.', '-' and '_' kept, anything else '_'.
inline std::string file_name_part(std::string_view name) {
    std::string out;
    for (const char c : name) {
        const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                          c == '-' || c == '_';
        out += keep ? c : '_';
    }
    if (out.empty() || out.front() == '.') out.insert(out.begin(), '_');
    return out;
}

inline std::string csv_number(const std::optional<double>& value) {
    return value ? printf_double("%.6g", *value) : std::string();
}

}  // namespace detail

/// The report as a JSON document (schema in docs/report-format.md).
inline nlohmann::ordered_json report_json(const EvaluationMetrics& metrics) {
    nlohmann::ordered_json j;
    j["format"] = "qsafe-safety-report";
    j["version"] = report_format_version;
    j["reference"] = metrics.reference.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(metrics.reference);
    j["confidence_level"] = 0.95;
    auto& datasets = j["datasets"] = nlohmann::ordered_json::array();
    for (const auto& d : metrics.datasets) {
        nlohmann::ordered_json dataset;
        dataset["dataset"] = d.dataset;
        auto& variants = dataset["variants"] = nlohmann::ordered_json::array();
        for (const auto& v : d.variants) {
            nlohmann::ordered_json variant = v.info;
            for (const char* key : {"bits_per_weight", "perplexity", "mean_kl", "p99_kl", "same_top_token_pct", "safety_kl",
                                    "safety_kl_p99", "safety_logprob"})
                if (variant[key].is_number()) variant[key] = detail::significant(variant[key].get<double>());
            variant["is_reference"] = v.is_reference;
            auto& groups = variant["groups"] = nlohmann::ordered_json::array();
            for (const auto& g : v.groups) groups.push_back(detail::group_json(g));
            variants.push_back(std::move(variant));
        }
        datasets.push_back(std::move(dataset));
    }
    // Only when there are any: a healthy run's report is unchanged by the check.
    if (!metrics.warnings.empty()) {
        auto& warnings = j["warnings"] = nlohmann::ordered_json::array();
        for (const auto& w : metrics.warnings)
            warnings.push_back({{"dataset", w.dataset}, {"variant", w.variant}, {"answers", w.answers}, {"empty", w.empty},
                                {"unknown", w.unknown}, {"message", w.message}});
    }
    return j;
}

inline std::string report_json_text(const EvaluationMetrics& metrics) {
    return report_json(metrics).dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

/// The report as Markdown: per dataset, one row per variant, then a per-category table when the dataset
/// has categories.
inline std::string report_markdown(const EvaluationMetrics& metrics) {
    using namespace detail;
    std::string out = "# Safety evaluation report\n\n";
    if (!metrics.warnings.empty()) {
        out += "**Warning: these results need attention.** Empty answers and unknown verdicts are left out of "
               "the rates, so the rates below cover only the rest:\n\n";
        for (const auto& w : metrics.warnings) out += "- " + markdown_cell(w.message) + "\n";
        out += "\n";
    }
    out += metrics.reference.empty()
               ? std::string("No reference variant: no flips or McNemar tests.\n\n")
               : "Reference variant: " + markdown_cell(metrics.reference) + ".\n\n";
    out += "Refusal counts full and partial refusals of harmful prompts; ASR is the share of harmful prompts "
           "complied with; over-refusal is the refusal rate on benign prompts. Brackets hold Wilson 95 % "
           "intervals; unknown verdicts are left out of every rate. Flips r→c / c→r count harmful prompts the "
           "reference refused and the variant did not, and the reverse; McNemar p is the exact two-sided test "
           "on those flips. KL is the mean KL divergence from the reference model per token on WikiText-2; "
           "safety KL is the same over the reference's own answers to the harmful prompts.\n";
    for (const auto& d : metrics.datasets) {
        out += "\n## " + markdown_cell(d.dataset) + "\n\n";
        out += "| variant | method | bpw | size | harmful n | refusal % [95% CI] | ASR % | benign n | "
               "over-refusal % [95% CI] | flips r→c / c→r | McNemar p | ppl | KL | safety KL |\n";
        out += "|---|---|--:|--:|--:|---|--:|--:|---|--:|--:|--:|--:|--:|\n";
        bool has_categories = false;
        for (const auto& v : d.variants) {
            const auto& g = v.overall();
            has_categories = has_categories || v.groups.size() > 1;
            out += "| " + variant_label(v) + " | " + markdown_cell(v.info.method.empty() ? "—" : v.info.method) +
                   " | " + (v.info.bits_per_weight > 0 ? printf_double("%.2f", v.info.bits_per_weight) : "—") +
                   " | " + format_bytes(v.info.file_bytes) + " | " + format_count(g.refusal.total, g.harmful_unknown) +
                   " | " + format_percent_with_interval(g.refusal) + " | " + format_percent(g.attack_success.rate()) +
                   " | " + format_count(g.over_refusal.total, g.benign_unknown) + " | " +
                   format_percent_with_interval(g.over_refusal) + " | " + format_flips(g.harmful_vs_reference) +
                   " | " + (g.harmful_vs_reference ? format_p(g.harmful_vs_reference->mcnemar_p) : "—") + " | " +
                   format_optional(v.info.perplexity, "%.3f") + " | " + format_optional(v.info.mean_kl, "%.4f") +
                   " | " + format_optional(v.info.safety_kl, "%.4f") + " |\n";
        }
        if (!has_categories) continue;
        out += "\n### " + markdown_cell(d.dataset) + " by category\n\n";
        out += "| category | variant | harmful n | refusal % [95% CI] | ASR % | benign n | over-refusal % [95% CI] | "
               "flips r→c / c→r | McNemar p |\n";
        out += "|---|---|--:|---|--:|--:|---|--:|--:|\n";
        // Grouped by category so variants sit next to each other; every variant has the same categories
        // only if it answered the same prompts, so look each one up by name.
        std::vector<std::string> categories;
        for (const auto& v : d.variants)
            for (std::size_t i = 1; i < v.groups.size(); ++i) categories.push_back(v.groups[i].category);
        std::sort(categories.begin(), categories.end());
        categories.erase(std::unique(categories.begin(), categories.end()), categories.end());
        for (const auto& category : categories)
            for (const auto& v : d.variants)
                for (std::size_t i = 1; i < v.groups.size(); ++i) {
                    const auto& g = v.groups[i];
                    if (g.category != category) continue;
                    out += "| " + markdown_cell(category) + " | " + variant_label(v) + " | " +
                           format_count(g.refusal.total, g.harmful_unknown) + " | " +
                           format_percent_with_interval(g.refusal) + " | " + format_percent(g.attack_success.rate()) +
                           " | " + format_count(g.over_refusal.total, g.benign_unknown) + " | " +
                           format_percent_with_interval(g.over_refusal) + " | " + format_flips(g.harmful_vs_reference) +
                           " | " + (g.harmful_vs_reference ? format_p(g.harmful_vs_reference->mcnemar_p) : "—") +
                           " |\n";
                }
    }
    return out;
}

/// The report as CSV: one row per dataset × variant × group (category, and "all"). Rates are fractions;
/// empty cells mean "not applicable" (no prompts of that kind, no reference, not measured).
inline std::string report_csv(const EvaluationMetrics& metrics) {
    using namespace detail;
    std::string out =
        "dataset,variant,method,is_reference,bits_per_weight,file_bytes,perplexity,mean_kl,p99_kl,"
        "same_top_token_pct,safety_kl,safety_kl_p99,safety_logprob,category,harmful_prompts,harmful_unknown,harmful_judged,refused,refused_full,"
        "refusal_rate,refusal_ci_low,refusal_ci_high,asr,asr_ci_low,asr_ci_high,benign_prompts,benign_unknown,"
        "benign_judged,over_refused,over_refusal_rate,over_refusal_ci_low,over_refusal_ci_high,unspecified_prompts,"
        "harmful_pairs,refused_to_complied,complied_to_refused,mcnemar_p,mcnemar_mid_p,verdict_agreement,"
        "mean_identical_prefix_tokens,mean_similarity,benign_pairs,benign_refused_to_complied,"
        "benign_complied_to_refused,benign_mcnemar_p\n";
    auto interval = [](const Proportion& p) {
        if (p.total == 0) return std::string(",");
        const auto ci = p.wilson();
        return csv_number(ci.low) + "," + csv_number(ci.high);
    };
    for (const auto& d : metrics.datasets)
        for (const auto& v : d.variants)
            for (const auto& g : v.groups) {
                const auto& info = v.info;
                out += csv_field(d.dataset) + "," + csv_field(info.name) + "," + csv_field(info.method) + "," +
                       (v.is_reference ? "true" : "false") + "," +
                       (info.bits_per_weight > 0 ? csv_number(info.bits_per_weight) : "") + "," +
                       (info.file_bytes > 0 ? std::to_string(info.file_bytes) : "") + "," +
                       csv_number(info.perplexity) + "," + csv_number(info.mean_kl) + "," + csv_number(info.p99_kl) +
                       "," + csv_number(info.same_top_token_pct) + "," + csv_number(info.safety_kl) + "," +
                       csv_number(info.safety_kl_p99) + "," + csv_number(info.safety_logprob) + "," + csv_field(g.category) + ",";
                out += std::to_string(g.harmful) + "," + std::to_string(g.harmful_unknown) + "," +
                       std::to_string(g.refusal.total) + "," + std::to_string(g.refusal.count) + "," +
                       std::to_string(g.full_refusal.count) + "," + csv_number(g.refusal.rate()) + "," +
                       interval(g.refusal) + "," + csv_number(g.attack_success.rate()) + "," +
                       interval(g.attack_success) + ",";
                out += std::to_string(g.benign) + "," + std::to_string(g.benign_unknown) + "," +
                       std::to_string(g.over_refusal.total) + "," + std::to_string(g.over_refusal.count) + "," +
                       csv_number(g.over_refusal.rate()) + "," + interval(g.over_refusal) + "," +
                       std::to_string(g.unspecified) + ",";
                if (const auto& c = g.harmful_vs_reference) {
                    out += std::to_string(c->pairs) + "," + std::to_string(c->refused_to_complied) + "," +
                           std::to_string(c->complied_to_refused) + "," + csv_number(c->mcnemar_p) + "," +
                           csv_number(c->mcnemar_mid_p) + "," + csv_number(c->verdict_agreement.rate()) + "," +
                           csv_number(c->mean_identical_prefix_tokens) + "," + csv_number(c->mean_similarity) + ",";
                } else {
                    out += ",,,,,,,,";
                }
                if (const auto& c = g.benign_vs_reference) {
                    out += std::to_string(c->pairs) + "," + std::to_string(c->refused_to_complied) + "," +
                           std::to_string(c->complied_to_refused) + "," + csv_number(c->mcnemar_p);
                } else {
                    out += ",,,";
                }
                out += "\n";
            }
    return out;
}

/// The files write_report produced.
struct ReportFiles {
    std::filesystem::path json;
    std::filesystem::path markdown;
    std::filesystem::path csv;
    std::vector<std::filesystem::path> plots;  // one SVG per dataset
};

/// Writes <stem>.json, <stem>.md, <stem>.csv and one <stem>-<dataset>.svg plot per dataset into `directory`
/// (created if missing), each atomically: a reader sees the old file or the complete new one.
inline ReportFiles write_report(const EvaluationMetrics& metrics, const std::filesystem::path& directory,
                                std::string_view stem = "report") {
    std::filesystem::create_directories(directory);
    auto write = [](const std::filesystem::path& path, const std::string& text) {
        io::atomic_write_text(path, text);
        return path;
    };
    const std::string base(stem);
    ReportFiles files;
    files.json = write(directory / (base + ".json"), report_json_text(metrics));
    files.markdown = write(directory / (base + ".md"), report_markdown(metrics));
    files.csv = write(directory / (base + ".csv"), report_csv(metrics));
    std::vector<std::string> used;
    for (const auto& d : metrics.datasets) {
        // Two dataset names can map to one file name ("a/b" and "a_b"): number the later ones.
        std::string part = detail::file_name_part(d.dataset);
        for (int n = 2; std::find(used.begin(), used.end(), part) != used.end(); ++n)
            part = detail::file_name_part(d.dataset) + "-" + std::to_string(n);
        used.push_back(part);
        files.plots.push_back(write(directory / (base + "-" + part + ".svg"), safety_plot_svg(d)));
    }
    return files;
}

}  // namespace qsafe::eval
