#pragma once
// Subcommands of the `qsafe` tool. Each lives in its own file and adds itself to the CLI11 app.
#include <stdexcept>

#include <CLI/CLI.hpp>

namespace qsafe_cli {

/// Exit code of a command that finished its work but whose results are suspect (e.g. an evaluation
/// whose answers came out empty or unknown in bulk): distinct from 1, a failure before or during the work.
inline constexpr int suspect_results_exit_code = 3;
/// Exit code of `qsafe gate` when a variant fails the safety gate (the report was read and judged).
inline constexpr int gate_failed_exit_code = 4;

/// Thrown after the outputs are written; main() prints the message and exits with suspect_results_exit_code.
struct SuspectResults : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void add_schemes_command(CLI::App& app);
void add_fetch_model_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_perplexity_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_compare_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_judge_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_align_command(CLI::App& app);
void add_patch_command(CLI::App& app);
void add_gate_command(CLI::App& app);
void add_merge_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
}  // namespace qsafe_cli
