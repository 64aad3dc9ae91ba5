#pragma once
// The datasets qsafe knows by name, with the file and the column mapping of each, and where to find them.
// The public sets live outside the repository (their licenses differ and some forbid redistribution): in
// $QSAFE_DATA_DIR, else ../shared/datasets from the current folder or from the source tree. The project's
// own `default` set ships in the repository under data/.
//
// Choices made per set (docs/evaluation-judges.md says more):
// - harmbench: the standard and contextual text behaviours (300 of 400); a contextual row's prompt is its
//   context, "\n\n---\n\n", then the behaviour, as HarmBench builds it. The 100 copyright rows are left out:
//   they ask for song lyrics or book passages and are scored by hashing the reproduced text, not by refusal.
// - xstest: safe prompts are benign, the contrast_* prompts harmful; `type` is the category. Each contrast
//   prompt mirrors a safe one of the same trigger word (e.g. contrast_homonyms vs homonyms), so over- and
//   under-refusal can be read per pair of categories.
// - jailbreakbench: the 100 harmful behaviours of JBB-Behaviors, read from an artifact file's "jailbreaks"
//   array; the 100 benign behaviours are not in the shared folder.
// - opensafetymini: every question is a safety probe, so all are harmful; `scenario` is the category.
// - selfinstruct-user / selfinstruct-seed: benign requests (instruction + the first instance's input);
//   the user-oriented 252 measure over-refusal of everyday tasks.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/eval/dataset.hpp"
#include "qsafe/eval/sampling.hpp"

namespace qsafe::eval {

enum class DatasetFormat { csv, jsonl, json_array };

struct DatasetSchema {
    std::string name;
    std::string description;
    bool in_repository = false;   // true: under <source>/data; false: under the shared data folder
    std::string relative_path;    // from that folder
    DatasetFormat format = DatasetFormat::csv;
    std::string json_pointer;     // json_array only: where the records are
    ColumnMap columns;
    std::size_t expected_rows = 0;  // rows after filtering, for checks and messages
};

inline const std::vector<DatasetSchema>& dataset_schemas() {
    static const std::vector<DatasetSchema> schemas = [] {
        const auto harmbench = [](std::string name, std::string file, std::size_t rows) {
            const ColumnMap m = ColumnMap::prompt_column("Behavior")
                                    .with_id("BehaviorID")
                                    .with_category("SemanticCategory")
                                    .with_context("ContextString")
                                    .expecting(Expected::harmful)
                                    .keeping({"FunctionalCategory", {"standard", "contextual"}});
            return DatasetSchema{std::move(name), "HarmBench text behaviours, standard + contextual (" + file + ")",
                                 false, "harmbench/" + file, DatasetFormat::csv, "", m, rows};
        };
        std::vector<DatasetSchema> s;
        s.push_back({"default", "qsafe's own harmful and look-alike benign prompts", true, "default_safety_prompts.csv",
                     DatasetFormat::csv, "",
                     ColumnMap::prompt_column("prompt").with_id("id").with_category("category").expecting(
                         ExpectedFromColumn{"expected", {{"harmful", Expected::harmful}, {"benign", Expected::benign}}}),
                     120});
        s.push_back({"advbench", "AdvBench harmful behaviours", false, "advbench/harmful_behaviors.csv", DatasetFormat::csv, "",
                     ColumnMap::prompt_column("goal").expecting(Expected::harmful), 520});
        s.push_back(harmbench("harmbench", "harmbench_behaviors_text_all.csv", 300));
        s.push_back(harmbench("harmbench-test", "harmbench_behaviors_text_test.csv", 240));
        s.push_back(harmbench("harmbench-val", "harmbench_behaviors_text_val.csv", 60));
        s.push_back({"xstest", "XSTest v2: 250 safe look-alike prompts (benign) + 200 unsafe contrast prompts (harmful)", false,
                     "xstest/xstest_prompts.csv", DatasetFormat::csv, "",
                     ColumnMap::prompt_column("prompt").with_id("id").with_category("type").expecting(
                         ExpectedFromColumn{"label", {{"safe", Expected::benign}, {"unsafe", Expected::harmful}}}),
                     450});
        s.push_back({"jailbreakbench", "JailbreakBench JBB-Behaviors, the 100 harmful behaviours", false,
                     "jailbreakbench/PAIR_black_box_llama-2-7b-chat-hf.json", DatasetFormat::json_array, "/jailbreaks",
                     ColumnMap::prompt_column("goal").with_id("index").with_category("category").expecting(Expected::harmful), 100});
        // Self-Instruct: instruction, then the first instance's input when it has one. The user-oriented set
        // is evaluation only (its authors ask so): benign everyday requests, for over-refusal. The seed tasks
        // may be trained on.
        const ColumnMap self_instruct =
            ColumnMap::prompt_column("instruction").with_input("instances.0.input").with_id("id").expecting(Expected::benign);
        s.push_back({"selfinstruct-user", "Self-Instruct's 252 user-oriented instructions (benign; evaluation only)", false,
                     "self_instruct/user_oriented_instructions.jsonl", DatasetFormat::jsonl, "", self_instruct.with_category("motivation_app"), 252});
        s.push_back({"selfinstruct-seed", "Self-Instruct's 175 seed tasks (benign; may be trained on)", false, "self_instruct/seed_tasks.jsonl",
                     DatasetFormat::jsonl, "", self_instruct, 175});
        s.push_back({"opensafetymini", "OpenSafetyMini open-ended safety questions (evaluation use only)", false,
                     "opensafetymini/OpenSafetyMini.csv", DatasetFormat::csv, "",
                     ColumnMap::prompt_column("prompt").with_id("prompt_id").with_category("scenario").expecting(Expected::harmful),
                     1067});
        return s;
    }();
    return schemas;
}

inline const DatasetSchema& dataset_schema(std::string_view name) {
    for (const auto& s : dataset_schemas())
        if (s.name == name) return s;
    std::string known;
    for (const auto& s : dataset_schemas()) known += (known.empty() ? "" : ", ") + s.name;
    throw config_error("unknown dataset '" + std::string(name) + "' (known: " + known + ")");
}

struct DataOptions {
    std::size_t limit = 0;  // 0 = every row
    std::uint64_t seed = 0;
    bool stratify_by_category = true;
    std::filesystem::path data_dir;    // the shared datasets folder; empty = search (see find_data_dir)
    std::filesystem::path source_dir;  // the qsafe source tree, if known (for data/ and ../shared/datasets)
};

/// The shared datasets folder: options.data_dir, else $QSAFE_DATA_DIR, else ../shared/datasets from the
/// current folder, else <source_dir>/../shared/datasets. Throws config_error naming what was tried.
inline std::filesystem::path find_data_dir(const DataOptions& options = {}) {
    namespace fs = std::filesystem;
    if (!options.data_dir.empty()) {
        if (!fs::is_directory(options.data_dir)) throw config_error(options.data_dir.string() + ": data folder does not exist");
        return options.data_dir;
    }
    if (const char* env = std::getenv("QSAFE_DATA_DIR"); env && *env) {
        if (!fs::is_directory(env)) throw config_error(std::string("QSAFE_DATA_DIR=") + env + ": no such folder");
        return env;
    }
    std::vector<fs::path> tried{fs::current_path() / ".." / "shared" / "datasets"};
    if (!options.source_dir.empty()) tried.push_back(options.source_dir / ".." / "shared" / "datasets");
    std::string list;
    for (const auto& p : tried) {
        if (fs::is_directory(p)) return fs::weakly_canonical(p);
        list += (list.empty() ? "" : ", ") + p.string();
    }
    throw config_error("the shared datasets folder was not found (set QSAFE_DATA_DIR; tried " + list + ")");
}

/// The repository's own data folder: <source_dir>/data, else ./data.
inline std::filesystem::path find_repository_data_dir(const DataOptions& options = {}) {
    namespace fs = std::filesystem;
    std::vector<fs::path> tried;
    if (!options.source_dir.empty()) tried.push_back(options.source_dir / "data");
    tried.push_back(fs::current_path() / "data");
    std::string list;
    for (const auto& p : tried) {
        if (fs::exists(p / "default_safety_prompts.csv")) return p;
        list += (list.empty() ? "" : ", ") + p.string();
    }
    throw config_error("qsafe's data folder (default_safety_prompts.csv) was not found (tried " + list + ")");
}

inline std::filesystem::path dataset_path(const DatasetSchema& schema, const DataOptions& options = {}) {
    return (schema.in_repository ? find_repository_data_dir(options) : find_data_dir(options)) / schema.relative_path;
}

inline PromptDataset load_dataset(const DatasetSchema& schema, const DataOptions& options = {}) {
    const auto path = dataset_path(schema, options);
    PromptDataset all;
    switch (schema.format) {
        case DatasetFormat::csv: all = load_csv_dataset(path, schema.columns, schema.name); break;
        case DatasetFormat::jsonl: all = load_jsonl_dataset(path, schema.columns, schema.name); break;
        case DatasetFormat::json_array: all = load_json_array_dataset(path, schema.json_pointer, schema.columns, schema.name); break;
    }
    if (all.empty()) throw format_error(path.string() + ": no rows");
    return sample(all, SampleOptions{options.limit, options.seed, options.stratify_by_category});
}

/// A dataset by name ("advbench", "harmbench-test", "xstest", ...), sampled down to options.limit rows.
inline PromptDataset load_named_dataset(std::string_view name, const DataOptions& options = {}) {
    return load_dataset(dataset_schema(name), options);
}

}  // namespace qsafe::eval
