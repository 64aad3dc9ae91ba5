#pragma once
// One evaluation run as `qsafe eval` does it — variants, datasets, judge, journal, report; unsharded, one
// shard of N, or one MPI rank — callable by the commands that are made of evaluations (`qsafe sweep`).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "qsafe/common.hpp"
#include "qsafe/eval/evaluator.hpp"
#include "qsafe/mpi_session.hpp"
#include "qsafe/quant/gptq.hpp"

namespace qsafe_cli {

/// The options of `qsafe eval`. Variant specs may contain commas inside "rules=..."; such a variant is given
/// in `extra_variants` (the CLI's --variant).
struct EvalArgs {
    std::string model = "smollm2", chat_template, out = "results", judge = "refusal", datasets = "default";
    std::string variants = "fp,int4-g128-asym:rtn,int2-g32-asym:rtn";
    std::vector<std::string> extra_variants;
    std::size_t limit = 0, judge_chars = 200, quality_windows = 0;
    std::uint64_t seed = 0;
    double max_empty_pct = 50.0;
    bool resume = false, no_stratify = false, no_safety_kl = false;
    int threads = 0;
    qsafe::eval::DecodingOptions decoding;
    CalibrationOptions calib;
    qsafe::GptqOptions gptq;
    DatasetFileOptions dataset_files;
    std::string shard;  // "I/N"
    bool merge_when_done = false;
    bool mpi = false;
};

/// Runs the evaluation `a` describes (as one MPI rank when `mpi` is given) and writes its report, or, for a
/// shard, its journal and marker. Throws SuspectResults after writing a report whose answers came out
/// empty or unknown in bulk.
void run_evaluation(const EvalArgs& a, const MpiSession* mpi);

}  // namespace qsafe_cli
