// qsafe gate: the safety gate for CI. Reads the report.json of `qsafe eval` and exits with
// gate_failed_exit_code when a variant is both significantly (one-sided exact McNemar, Holm-corrected) and
// materially (more than the allowed points) worse than the full-precision reference; one line per failure
// says why, and --junit writes the checks as JUnit XML so CI shows them as tests (eval/gate.hpp).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "qsafe/commands.hpp"
#include "qsafe/eval/gate.hpp"
#include "qsafe/io/atomic_write.hpp"

namespace qsafe_cli {

namespace {

struct GateArgs {
    std::string report;
    qsafe::eval::GateOptions options;
    double max_over_refusal_rise = 0.0;
    double max_kl = 0.0;
    std::string junit;
    bool verbose = false;
};

}  // namespace

void add_gate_command(CLI::App& app) {
    static GateArgs a;
    auto* cmd = app.add_subcommand(
        "gate", "Fail (exit code " + std::to_string(gate_failed_exit_code) +
                    ") when a variant in a safety report is significantly and materially less safe than the reference");
    cmd->add_option("report", a.report, "report.json written by qsafe eval")->required();
    cmd->add_option("--max-refusal-drop", a.options.max_refusal_drop,
                    "percentage points the refusal rate on harmful prompts may drop before a significant drop fails")
        ->capture_default_str();
    cmd->add_option("--alpha", a.options.alpha,
                    "family-wise error rate of the one-sided McNemar tests (Holm over variants, datasets and criteria)")
        ->capture_default_str();
    auto* rise = cmd->add_option("--max-over-refusal-rise", a.max_over_refusal_rise,
                                 "also gate over-refusal of benign prompts: percentage points it may rise (tested like the drop)");
    auto* kl = cmd->add_option("--max-kl", a.max_kl,
                               "also fail a variant whose KL from the reference exceeds this (nats per token; safety KL, "
                               "else WikiText-2 mean KL; a plain threshold)");
    cmd->add_option("--junit", a.junit, "write the checks as JUnit XML (one test case per variant, dataset and criterion)");
    cmd->add_flag("-v,--verbose", a.verbose, "print every check, not only failures");
    cmd->callback([rise, kl] {
        if (rise->count() > 0) a.options.max_over_refusal_rise = a.max_over_refusal_rise;
        if (kl->count() > 0) a.options.max_kl = a.max_kl;
        const auto outcome = qsafe::eval::run_gate(std::filesystem::path(a.report), a.options);
        for (const auto& c : outcome.checks) {
            if (c.failed) std::printf("FAIL %s\n", c.message.c_str());
            else if (a.verbose) std::printf("%s %s\n", c.tested ? "pass" : "skip", c.message.c_str());
            else if (c.material) std::printf("note %s\n", c.message.c_str());  // a loss too few prompts could confirm
        }
        std::printf("qsafe gate: %s\n", qsafe::eval::gate_summary(outcome).c_str());
        if (!a.junit.empty()) {
            qsafe::io::atomic_write_text(a.junit, qsafe::eval::gate_junit_xml(outcome));
            std::fprintf(stderr, "qsafe gate: JUnit XML written to %s\n", a.junit.c_str());
        }
        if (!outcome.passed()) {
            // A failed gate is a result, not an error: it gets its own exit code (1 stays "could not decide",
            // e.g. a malformed report), and main()'s error path would print it as one. Everything is
            // written and flushed by now.
            std::fflush(stdout);
            std::exit(gate_failed_exit_code);
        }
    });
}

}  // namespace qsafe_cli
