#pragma once
// The end of an evaluation, shared by `qsafe eval` and `qsafe merge`: metrics from the journal's records,
// the report files, the Markdown summary on stdout, and SuspectResults when answers came out empty or
// unknown in bulk.
#include <chrono>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "qsafe/eval/record.hpp"

namespace qsafe_cli {

struct EvaluationReportInput {
    std::span<const qsafe::eval::ResponseRecord> records;
    std::span<const qsafe::eval::VariantInfo> variants;
    std::vector<std::string> variant_order;  // the reference first
    std::filesystem::path out;
    double max_empty_pct = 50.0;
    std::chrono::steady_clock::time_point start;
};

/// Writes report.json / .md / .csv / .svg into `out` and prints the Markdown; throws SuspectResults (after
/// writing) when the metrics carry warnings.
void write_evaluation_report(const EvaluationReportInput& in);

/// Merges the shards of the run in `folder` into journal.jsonl and writes its report (qsafe merge).
void merge_and_report(const std::filesystem::path& folder, double max_empty_pct, std::chrono::steady_clock::time_point start);

}  // namespace qsafe_cli
