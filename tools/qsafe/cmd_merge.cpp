// qsafe merge: combines the journals of a sharded evaluation (`qsafe eval --shard I/N`, one process each,
// on one machine or many) into one journal and the report an unsharded run would have written.
#include <chrono>
#include <cstdio>
#include <string>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/eval/metrics.hpp"
#include "qsafe/eval/report.hpp"
#include "qsafe/eval/sharding.hpp"
#include "qsafe/evaluation_report.hpp"

namespace qsafe_cli {

void write_evaluation_report(const EvaluationReportInput& in) {
    qsafe::eval::MetricsOptions mopt;
    mopt.variant_order = in.variant_order;
    mopt.reference = "fp";
    mopt.max_empty_or_unknown_share = in.max_empty_pct / 100.0;
    const auto metrics = qsafe::eval::compute_metrics(in.records, in.variants, mopt);
    const auto files = qsafe::eval::write_report(metrics, in.out);
    std::fputs(qsafe::eval::report_markdown(metrics).c_str(), stdout);
    std::fprintf(stderr, "[report: %s, %s, %s; total time %s]\n", files.json.c_str(), files.markdown.c_str(), files.csv.c_str(),
                 format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - in.start).count()).c_str());
    if (!metrics.warnings.empty()) {
        std::string lines;
        for (const auto& w : metrics.warnings) lines += "\n  " + w.message;
        throw SuspectResults("the report is written, but " + std::to_string(metrics.warnings.size()) +
                             " result(s) need attention (--max-empty-pct sets the bar):" + lines);
    }
}

void merge_and_report(const std::filesystem::path& folder, double max_empty_pct, std::chrono::steady_clock::time_point start) {
    const qsafe::eval::MergedRun run = qsafe::eval::merge_shards(folder);
    const qsafe::eval::ShardFiles files{folder};
    qsafe::eval::write_merged_journal(run, files.merged_journal());
    std::fprintf(stderr, "[merged %zu shards: %zu answers of %zu variants into %s]\n", run.shards, run.records.size(), run.variants.size(),
                 files.merged_journal().c_str());
    write_evaluation_report({run.records, run.variants, run.variant_order, folder, max_empty_pct, start});
}

namespace {
struct MergeArgs {
    std::string folder;
    double max_empty_pct = 50.0;
    bool if_complete = false;
};
}  // namespace

void add_merge_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("merge", "Merge the shard journals of a sharded `qsafe eval` into one journal and its report");
    static MergeArgs m;
    cmd->add_option("folder", m.folder, "the output folder the shards wrote to (qsafe eval --shard I/N -o FOLDER)")->required();
    cmd->add_option("--max-empty-pct", m.max_empty_pct, "as in qsafe eval: the share of empty or unknown answers that is suspect")
        ->capture_default_str();
    cmd->add_flag("--if-complete", m.if_complete, "do nothing (exit 0) while some shard has not finished, instead of failing");
    cmd->callback([] {
        const auto start = std::chrono::steady_clock::now();
        if (m.if_complete && !qsafe::eval::all_shards_done(m.folder)) {
            std::fprintf(stderr, "[%s: not every shard has finished yet; nothing merged]\n", m.folder.c_str());
            return;
        }
        merge_and_report(m.folder, m.max_empty_pct, start);
    });
}

}  // namespace qsafe_cli
