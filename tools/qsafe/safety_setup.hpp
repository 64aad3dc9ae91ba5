#pragma once
// Command-line pieces of safety-aware quantization shared by `quantize` (and usable by other commands):
// the safety data (the fp model's own answers to harmful prompts), the utility data, protection of
// safety-critical weights and safety-aware bit allocation. See docs/safety-aware-quantization.md.
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "qsafe/calib/calibration_stats.hpp"
#include "qsafe/model/model_loader.hpp"
#include "qsafe/safety/bit_allocation.hpp"
#include "qsafe/safety/protection.hpp"
#include "qsafe/safety/response_set.hpp"
#include "qsafe/safety/snip_scores.hpp"

namespace qsafe_cli {

struct SafetyDataOptions {
    std::string datasets = "harmbench-val";  // harmful prompts (their benign rows, if any, are left out)
    std::string exclude;                     // datasets whose prompts must not be used (the evaluation's)
    std::size_t prompts = 60;
    std::size_t max_new_tokens = 64;
    std::size_t batch = 32;
    std::uint64_t seed = 1;
    std::string set_file;  // cache of the response set: read when it exists, written otherwise

    void add_to(CLI::App& cmd);
    std::string describe() const;
};

struct SafetyPrompts {
    std::vector<std::string> ids, prompts;
};
/// The harmful prompts the options choose (a seeded sample, in dataset order, minus the excluded datasets').
SafetyPrompts safety_prompts(const SafetyDataOptions& opt);

/// The fp model's greedy answers to the harmful prompts (from set_file when it exists).
qsafe::ResponseSet safety_response_set(qsafe::LoadedModel& fp, const SafetyDataOptions& opt);

/// WikiText-2 windows from the calibration half of the text, all positions scored.
qsafe::ResponseSet utility_response_set(qsafe::LoadedModel& fp, std::size_t windows, std::size_t length, std::uint64_t seed);

/// Input statistics over every token (prompt and response) of a response set.
qsafe::CalibrationStats response_set_stats(qsafe::LoadedModel& fp, const qsafe::ResponseSet& set);

struct ProtectCliOptions {
    std::string mode = "none";
    std::string fraction = "blk.*=0.5%";
    std::string utility_exclusion = "blk.*=0.5%";
    std::string global;            // e.g. "0.5%": one threshold over all covered tensors ("" = per tensor)
    std::size_t snip_group = 1;    // examples per SNIP gradient

    void add_to(CLI::App& cmd);
    bool enabled() const { return mode != "none"; }
    qsafe::ProtectOptions options() const;
};

/// SNIP scores of `m` over refusals (train::refusal_for) to the harmful prompts the safety-data options choose.
qsafe::SnipScores snip_scores_for(const qsafe::LoadedModel& m, const SafetyDataOptions& data, std::size_t examples_per_gradient);

struct AllocateCliOptions {
    double target_bpw = 0.0;  // 0 = no allocation
    std::string allocate = "safety";
    std::string candidates = "int2-g64-asym,int3-g128-asym,int4-g128-asym,int8-g32-sym";
    std::string tensors = "blk.*";
    std::size_t sensitivity_prompts = 16;
    std::size_t utility_windows = 8, utility_length = 256;
    std::string cache;   // resumable sensitivity measurements (JSON lines)
    std::string report;  // allocation + sensitivity table as JSON

    void add_to(CLI::App& cmd);
    bool enabled() const { return target_bpw > 0.0; }
};

/// Measures the sensitivities the options ask for and returns the allocation (printing a summary).
qsafe::BitAllocation allocate_schemes(qsafe::LoadedModel& fp, const qsafe::ResponseSet* safety_set, const AllocateCliOptions& opt,
                                      const qsafe::CalibrationStats* importance);

}  // namespace qsafe_cli
