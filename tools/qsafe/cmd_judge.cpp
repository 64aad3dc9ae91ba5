// qsafe judge: score model completions in a CSV or JSONL file with a judge, and, when the file has human
// labels, report how well the judge agrees with them (agreement, Cohen's kappa, confusion matrix, and the
// refused-vs-complied agreement that refusal rates depend on).
#include <array>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/eval/dataset.hpp"
#include "qsafe/eval/model_judge.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/eval/refusal_judge.hpp"

namespace qsafe_cli {

namespace {

using qsafe::eval::Verdict;

struct JudgeArgs {
    std::string input;
    DatasetFileOptions prompts;  // prompt, id, category columns and which prompts are harmful
    std::string response_column = "completion";
    std::string label_column;
    std::string label_map =
        "full_compliance=compliance,full_refusal=refusal,partial_refusal=partial_refusal,"
        "compliance=compliance,refusal=refusal,partial=partial_refusal";
    std::string judge = "refusal";
    std::size_t max_chars = qsafe::eval::RefusalJudgeOptions{}.max_chars;
    std::string out;
};

/// "a=b,c=d" -> {a: b, c: d}; each value must name a verdict.
std::map<std::string, Verdict, std::less<>> parse_label_map(const std::string& text) {
    std::map<std::string, Verdict, std::less<>> map;
    for (const std::string& item : split_commas(text)) {
        const std::size_t eq = item.find('=');
        if (eq == std::string::npos) throw qsafe::config_error("--label-map: '" + item + "' is not label=verdict");
        const auto verdict = qsafe::eval::parse_verdict(item.substr(eq + 1));
        if (!verdict)
            throw qsafe::config_error("--label-map: '" + item.substr(eq + 1) +
                                      "' is not a verdict (refusal, partial_refusal, compliance, unknown)");
        map[item.substr(0, eq)] = *verdict;
    }
    return map;
}

/// A label's verdict: the exact label, else the label without a leading "<digits>_" ordering prefix
/// (XSTest writes "1_full_compliance").
std::optional<Verdict> map_label(const std::map<std::string, Verdict, std::less<>>& map, std::string_view label) {
    if (const auto it = map.find(label); it != map.end()) return it->second;
    std::size_t digits = 0;
    while (digits < label.size() && label[digits] >= '0' && label[digits] <= '9') ++digits;
    if (digits > 0 && digits < label.size() && label[digits] == '_') {
        if (const auto it = map.find(label.substr(digits + 1)); it != map.end()) return it->second;
    }
    return std::nullopt;
}

constexpr std::array<Verdict, 4> all_verdicts{Verdict::refusal, Verdict::partial_refusal, Verdict::compliance, Verdict::unknown};

std::size_t verdict_index(Verdict v) {
    for (std::size_t i = 0; i < all_verdicts.size(); ++i)
        if (all_verdicts[i] == v) return i;
    return all_verdicts.size() - 1;
}

void print_agreement(const std::vector<Verdict>& labels, const std::vector<Verdict>& verdicts) {
    const std::size_t n = labels.size();
    std::array<std::array<std::size_t, 4>, 4> confusion{};
    std::size_t agree = 0, binary_agree = 0;
    for (std::size_t i = 0; i < n; ++i) {
        ++confusion[verdict_index(labels[i])][verdict_index(verdicts[i])];
        agree += labels[i] == verdicts[i];
        binary_agree += qsafe::eval::is_refusal(labels[i]) == qsafe::eval::is_refusal(verdicts[i]);
    }
    // Cohen's kappa: agreement beyond what the two marginal distributions give by chance.
    double expected = 0.0;
    for (std::size_t k = 0; k < all_verdicts.size(); ++k) {
        double row = 0.0, col = 0.0;
        for (std::size_t j = 0; j < all_verdicts.size(); ++j) {
            row += static_cast<double>(confusion[k][j]);
            col += static_cast<double>(confusion[j][k]);
        }
        expected += (row / static_cast<double>(n)) * (col / static_cast<double>(n));
    }
    const double observed = static_cast<double>(agree) / static_cast<double>(n);
    const double kappa = expected < 1.0 ? (observed - expected) / (1.0 - expected) : 1.0;
    std::printf("agreement with labels: %zu/%zu = %.1f %% (Cohen's kappa %.3f)\n", agree, n, 100.0 * observed, kappa);
    std::printf("refused-vs-complied agreement (partial counts as refused): %zu/%zu = %.1f %%\n", binary_agree, n,
                100.0 * static_cast<double>(binary_agree) / static_cast<double>(n));
    std::printf("confusion matrix (rows: label, columns: judge):\n%-17s", "");
    for (const Verdict v : all_verdicts) std::printf("%16s", std::string(qsafe::eval::to_string(v)).c_str());
    std::printf("\n");
    for (std::size_t r = 0; r < all_verdicts.size(); ++r) {
        std::size_t row_total = 0;
        for (const auto c : confusion[r]) row_total += c;
        if (row_total == 0 && all_verdicts[r] == Verdict::unknown) continue;
        std::printf("%-17s", std::string(qsafe::eval::to_string(all_verdicts[r])).c_str());
        for (const auto c : confusion[r]) std::printf("%16zu", c);
        std::printf("\n");
    }
}

void run_judge(const JudgeArgs& a) {
    const auto records = qsafe::eval::read_table_records(a.input);
    qsafe::eval::require_column(records, a.response_column, "response");
    const qsafe::eval::FileDatasetColumns cols = a.prompts.resolved();
    (void)cols.column_map(records.source, /*require_expected=*/false);  // refuses a harmful column together with --all-*
    const bool have_prompts = [&] {
        for (const auto& c : records.columns)
            if (c == cols.prompt) return true;
        return false;
    }();
    if (!have_prompts && a.judge.starts_with("model:")) qsafe::eval::require_column(records, cols.prompt, "prompt");
    if (!cols.id.empty()) qsafe::eval::require_column(records, cols.id, "id");
    if (!cols.category.empty()) qsafe::eval::require_column(records, cols.category, "category");
    if (!a.label_column.empty()) qsafe::eval::require_column(records, a.label_column, "label");
    std::optional<qsafe::eval::ExpectedFromColumn> expected_from;
    if (!cols.harmful_column.empty()) {
        qsafe::eval::require_column(records, cols.harmful_column, "harmful");
        expected_from = qsafe::eval::ExpectedFromColumn::harmful_when(cols.harmful_column, cols.harmful_values);
    }
    const auto label_map = parse_label_map(a.label_map);

    const auto field = [&](std::size_t r, const std::string& column) -> std::string {
        const auto it = records.rows[r].find(column);
        if (it == records.rows[r].end())
            throw qsafe::format_error(records.source + ":" + std::to_string(records.lines[r]) + ": record has no '" + column + "' field");
        return it->second;
    };

    std::vector<qsafe::eval::PromptRow> rows;
    std::vector<std::string> responses;
    std::vector<Verdict> labels;
    for (std::size_t r = 0; r < records.rows.size(); ++r) {
        qsafe::eval::PromptRow row;
        row.id = cols.id.empty() ? std::to_string(r + 1) : field(r, cols.id);
        if (have_prompts) row.prompt = field(r, cols.prompt);
        if (!cols.category.empty()) row.category = field(r, cols.category);
        if (cols.all) row.expected = *cols.all;
        if (expected_from) {
            const std::string value = field(r, expected_from->column);
            const auto expected = expected_from->lookup(value);
            if (!expected)
                throw qsafe::format_error(records.source + ":" + std::to_string(records.lines[r]) + ": empty value in column '" +
                                          expected_from->column + "' (harmful or benign?)");
            row.expected = *expected;
        }
        rows.push_back(std::move(row));
        responses.push_back(field(r, a.response_column));
        if (!a.label_column.empty()) {
            const std::string label = field(r, a.label_column);
            const auto verdict = map_label(label_map, label);
            if (!verdict)
                throw qsafe::format_error(records.source + ":" + std::to_string(records.lines[r]) + ": label '" + label +
                                          "' is not in --label-map");
            labels.push_back(*verdict);
        }
    }

    std::vector<qsafe::eval::JudgeResult> results;
    std::string judge_name;
    if (a.judge == "refusal" || a.judge == "gcg") {
        qsafe::eval::RefusalJudgeOptions options =
            a.judge == "gcg" ? qsafe::eval::gcg_refusal_judge_options() : qsafe::eval::RefusalJudgeOptions{};
        options.max_chars = a.max_chars;
        const qsafe::eval::RefusalJudge judge(options);
        for (std::size_t i = 0; i < rows.size(); ++i) results.push_back(judge.judge(rows[i], responses[i]));
        judge_name = a.judge + " (first " + std::to_string(a.max_chars) + " chars)";
    } else if (a.judge.starts_with("model:")) {
        auto judge = qsafe::eval::ModelJudge::load(resolve_model_path(a.judge.substr(6)));
        const std::vector<std::string_view> views(responses.begin(), responses.end());
        results = judge.judge_batch(rows, views);
        judge_name = judge.name();
    } else {
        throw qsafe::config_error("--judge: '" + a.judge + "' is not refusal, gcg or model:<path>");
    }

    if (expected_from || cols.all) {
        std::size_t harmful = 0;
        for (const auto& row : rows) harmful += row.expected == qsafe::eval::Expected::harmful;
        judge_name += ", " + std::to_string(harmful) + " harmful prompts " +
                      (expected_from ? "by '" + expected_from->column + "'" : std::string(cols.all == qsafe::eval::Expected::harmful ? "(--all-harmful)" : "(--all-benign)"));
    }
    std::size_t counts[4] = {};
    for (const auto& r : results) ++counts[verdict_index(r.verdict)];
    std::printf("judge %s on %s: %zu responses: refusal %zu, partial_refusal %zu, compliance %zu, unknown %zu\n", judge_name.c_str(),
                records.source.c_str(), results.size(), counts[0], counts[1], counts[2], counts[3]);

    if (!a.out.empty()) {
        std::string lines;
        for (std::size_t i = 0; i < results.size(); ++i) {
            nlohmann::json j{{"id", rows[i].id},
                             {"line", records.lines[i]},
                             {"verdict", qsafe::eval::to_string(results[i].verdict)},
                             {"reason", results[i].reason}};
            if (!labels.empty()) j["label"] = qsafe::eval::to_string(labels[i]);
            lines += j.dump() + '\n';
        }
        qsafe::io::atomic_write_text(a.out, lines);
        std::printf("wrote %s\n", a.out.c_str());
    }
    if (!labels.empty()) {
        std::vector<Verdict> verdicts;
        for (const auto& r : results) verdicts.push_back(r.verdict);
        print_agreement(labels, verdicts);
    }
}

}  // namespace

void add_judge_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("judge", "Score completions in a CSV/JSONL file and compare with human labels if given");
    static JudgeArgs a;
    cmd->add_option("input", a.input, "CSV or JSONL (.jsonl) file of completions")->required()->check(CLI::ExistingFile);
    cmd->add_option("--response-column", a.response_column, "column with the model's response")->capture_default_str();
    cmd->add_option("--label-column", a.label_column, "column with human labels; enables the agreement report");
    a.prompts.add_to(*cmd, /*harmful_alias=*/true);  // the prompt column is needed by model judges only
    cmd->add_option("--label-map", a.label_map,
                    "label=verdict pairs; a leading '<digits>_' of a label is ignored if the full label is not listed")
        ->capture_default_str();
    cmd->add_option("--judge", a.judge, "refusal (qsafe's phrase list), gcg (the GCG/AdvBench list), or model:<path|smollm2>")
        ->capture_default_str();
    cmd->add_option("--max-chars", a.max_chars, "bytes from the start searched for refusal phrases")->capture_default_str();
    cmd->add_option("-o,--out", a.out, "write one JSON line per response: id, line, verdict, reason, label");
    cmd->callback([] { run_judge(a); });
}

}  // namespace qsafe_cli
