#pragma once
// Subcommands of the `qsafe` tool. Each lives in its own file and adds itself to the CLI11 app.
#include <CLI/CLI.hpp>

namespace qsafe_cli {
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
}  // namespace qsafe_cli
