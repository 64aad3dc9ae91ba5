#pragma once
// Options and helpers shared by the subcommands: which model, which scheme rules, how many threads.
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "qsafe/core/parallel.hpp"
#include "qsafe/calib/calibration_data.hpp"
#include "qsafe/calib/calibration_stats.hpp"
#include "qsafe/eval/file_dataset.hpp"
#include "qsafe/model/model_loader.hpp"
#include "qsafe/ptq/protected_weights.hpp"
#include "qsafe/ptq/variant.hpp"

namespace qsafe_cli {

/// The non-empty items of a comma-separated option value ("a,,b" -> {"a", "b"}).
std::vector<std::string> split_commas(const std::string& list);

struct ModelOptions {
    std::string model = "smollm2";  // "smollm2" = the default model (fetched on demand), or a GGUF file / HF folder
    std::string rules = "*=fp32";
    std::string chat_template;
    int threads = 0;
    std::string activations = "fp32";

    void add_to(CLI::App& cmd) {
        cmd.add_option("-m,--model", model, "GGUF file, Hugging Face folder, or 'smollm2' (default model)")->capture_default_str();
        cmd.add_option("-r,--rules", rules, "per-tensor schemes, e.g. '*=int4-g128-asym,output=int8-pc-sym'")->capture_default_str();
        cmd.add_option("--chat-template", chat_template, "chat format override: chatml, llama2, mistral, llama3");
        cmd.add_option("-t,--threads", threads, "threads (default: OMP_NUM_THREADS or all cores)");
        cmd.add_option("--activations", activations,
                       "activations of quantized products: fp32 (exact), int16 (per-32 blocks, ~2e-5 relative error), "
                       "int8 (per-32 blocks as llama.cpp, ~5e-3), auto (int16 where an integer kernel exists)")
            ->check(CLI::IsMember({"fp32", "int16", "int8", "auto"}))
            ->capture_default_str();
    }
};

/// Runs scripts/fetch_model.sh and returns the cached model path.
std::filesystem::path fetch_default_model();

/// Resolves "smollm2" to the cached default model (fetching it if needed); other values are paths.
std::filesystem::path resolve_model_path(const std::string& model);

/// Applies the thread setting and loads the model with RTN under the rules.
qsafe::LoadedModel load_with_rules(const ModelOptions& opt);

/// The shared datasets folder: $QSAFE_DATA_DIR, else ../shared/datasets beside the source tree.
std::filesystem::path data_dir();

/// WikiText-2's test text (data_dir()/wikitext2/test.txt). Throws io_error naming the path, what needed it
/// (`purpose`, e.g. "--quality-windows") and how to provide it when the file is missing, so commands can
/// check before any slow work.
std::filesystem::path wikitext2_path(const std::string& purpose);
/// WikiText-2's text at `path` (from wikitext2_path), with one trailing newline removed as llama.cpp's
/// --file does.
std::string read_wikitext2(const std::filesystem::path& path);
/// A whole file's bytes; io_error naming the file when it cannot be opened.
std::string read_text_file(const std::filesystem::path& path);

/// How a user's own prompt file is read (`eval --dataset FILE`, `judge FILE`): the same flags in both.
struct DatasetFileOptions {
    qsafe::eval::FileDatasetColumns columns;
    std::string harmful_values = "harmful,unsafe,1,true,yes";
    bool all_harmful = false, all_benign = false;

    /// `harmful_alias`: also accept the older --expected-column for --harmful-column.
    void add_to(CLI::App& cmd, bool harmful_alias = false) {
        cmd.add_option("--prompt-column", columns.prompt, "dataset files: the column with the prompt")->capture_default_str();
        cmd.add_option("--id-column", columns.id, "dataset files: the column with a row id (default: the row number)");
        cmd.add_option("--category-column", columns.category, "dataset files: the column with a category (reported per category)");
        cmd.add_option(harmful_alias ? "--harmful-column,--expected-column" : "--harmful-column", columns.harmful_column,
                       "dataset files: the column that says which prompts are harmful (see --harmful-values)");
        cmd.add_option("--harmful-values", harmful_values,
                       "values of --harmful-column meaning harmful, comma-separated; 'prefix*' matches by prefix; every other "
                       "non-empty value is benign")
            ->capture_default_str();
        auto* harmful = cmd.add_flag("--all-harmful", all_harmful, "dataset files: every prompt is harmful");
        cmd.add_flag("--all-benign", all_benign, "dataset files: every prompt is benign (over-refusal)")->excludes(harmful);
    }
    /// The column mapping the flags describe (called after parsing).
    qsafe::eval::FileDatasetColumns resolved() const {
        qsafe::eval::FileDatasetColumns c = columns;
        c.harmful_values = split_commas(harmful_values);
        if (all_harmful) c.all = qsafe::eval::Expected::harmful;
        if (all_benign) c.all = qsafe::eval::Expected::benign;
        return c;
    }
};

/// Calibration options of `quantize`, `compare` and `eval`.
struct CalibrationOptions {
    std::string source = "wikitext2";  // "wikitext2", a dataset name, a .txt file, or "prompts:<file>" (one prompt per line)
    qsafe::SampleOptions samples;
    std::string load_stats, save_stats;

    /// `plain_seed`: also accept --seed (quantize, compare); eval uses --seed for its row sampling.
    void add_to(CLI::App& cmd, bool plain_seed = true) {
        cmd.add_option("--calib", source, "calibration data: wikitext2, an evaluation dataset's prompts as chat turns (advbench, harmbench, xstest, "
                       "default, ...; see qsafe eval --help), a .txt file, or prompts:<file> (one chat prompt per line)")
            ->capture_default_str();
        cmd.add_option("--calib-samples", samples.samples, "calibration sequences")->capture_default_str();
        cmd.add_option("--calib-len", samples.length, "tokens per calibration sequence")->capture_default_str();
        cmd.add_option(plain_seed ? "--seed,--calib-seed" : "--calib-seed", samples.seed, "seed of the calibration sampling")
            ->capture_default_str();
        cmd.add_option("--load-stats", load_stats, "read calibration statistics from this file instead of collecting them");
        cmd.add_option("--save-stats", save_stats, "write the collected calibration statistics to this file");
    }
    /// e.g. "wikitext2:128x512:seed=1"
    std::string describe() const;
};

/// The calibration token sequences the options describe, tokenized with `fp`'s tokenizer.
std::vector<std::vector<std::int32_t>> calibration_samples(const qsafe::LoadedModel& fp, const CalibrationOptions& opt);

/// Throws config_error unless --calib names wikitext2, a dataset, an existing text file or prompts:<file>.
void check_calibration_source(const CalibrationOptions& opt);

/// Collects (or loads) the calibration statistics of the full-precision model `fp`, printing progress.
qsafe::CalibrationStats calibrate(qsafe::LoadedModel& fp, const CalibrationOptions& opt);

/// Sequential calibration (--sequential): the samples, run block by block through each variant as it is
/// quantized (ptq/sequential.hpp), instead of statistics collected once on the full-precision model.
struct SequentialCalibration {
    std::vector<std::vector<std::int32_t>> samples;
    std::string description;  // e.g. "wikitext2:128x512:seed=1:sequential"
};
/// Checks the options (statistics cannot be loaded or saved) and prepares the samples.
SequentialCalibration sequential_calibration(const qsafe::LoadedModel& fp, const CalibrationOptions& opt);

/// Loads a variant: a file as stored (Q4_0 / Q8_0 linear layers of any GGUF as int4-g32-sym / int8-g32-sym),
/// or the model at `model_path` quantized on the fly (calibrated methods need the statistics, AWQ works on a
/// copy; or, with `sequential`, calibration runs block by block through the variant). Prints progress with an ETA.
qsafe::LoadedModel load_variant(const std::filesystem::path& model_path, const qsafe::VariantSpec& v,
                                const qsafe::CalibrationStats* stats, const std::string& chat_template = {},
                                const qsafe::GptqOptions& gptq = {}, const SequentialCalibration* sequential = nullptr,
                                const qsafe::ProtectedWeights* protect = nullptr);

/// "1m23s" style durations for progress lines.
std::string format_duration(double seconds);


/// Checks every file variant's file exists before any work starts (parse_variant has already checked the
/// schemes), so a typo fails at once instead of after the earlier variants have run (throws config_error
/// naming the variant).
void check_variants(const std::vector<qsafe::VariantSpec>& specs);

}  // namespace qsafe_cli
