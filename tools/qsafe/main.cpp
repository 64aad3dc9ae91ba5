// qsafe: quantize language models and measure what quantization does to their safety.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "qsafe/commands.hpp"
#include "qsafe/core/cpu_features.hpp"

int main(int argc, char** argv) {
    CLI::App app{"qsafe: quantize LLMs on a CPU and measure what quantization does to their safety"};
    app.require_subcommand(1);
    qsafe_cli::add_schemes_command(app);
    qsafe_cli::add_fetch_model_command(app);
    qsafe_cli::add_info_command(app);
    qsafe_cli::add_generate_command(app);
    qsafe_cli::add_chat_command(app);
    qsafe_cli::add_perplexity_command(app);
    qsafe_cli::add_quantize_command(app);
    qsafe_cli::add_compare_command(app);
    qsafe_cli::add_eval_command(app);
    qsafe_cli::add_judge_command(app);
    qsafe_cli::add_train_command(app);
    qsafe_cli::add_align_command(app);
    qsafe_cli::add_patch_command(app);
    qsafe_cli::add_gate_command(app);
    qsafe_cli::add_merge_command(app);
    qsafe_cli::add_sweep_command(app);
    try {
        qsafe::active_isa();  // the instruction-set level, decided once at start (a bad QSAFE_ISA fails here)
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const qsafe_cli::SuspectResults& e) {
        std::fprintf(stderr, "qsafe: %s\n", e.what());
        return qsafe_cli::suspect_results_exit_code;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "qsafe: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
