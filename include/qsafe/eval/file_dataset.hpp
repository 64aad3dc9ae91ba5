#pragma once
// A user's own prompt file as an evaluation dataset, beside the named ones (dataset_registry.hpp): a CSV,
// JSON Lines or JSON array file, with the columns that hold the prompt, the id and the category named, and
// the expected behaviour either read from a column (which values mean harmful) or fixed for the whole file
// (every prompt harmful, e.g. a red-team set; or every prompt benign, for over-refusal).
//
// `qsafe eval -d default,mine.csv --prompt-column question --all-harmful` and `qsafe judge` build the
// mapping from the same flags through FileDatasetColumns. Everything that can be wrong with the file — a
// missing column, an empty file, a name that clashes with another dataset of the run — is reported before
// any model work starts.
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/eval/dataset.hpp"
#include "qsafe/eval/dataset_registry.hpp"
#include "qsafe/eval/sampling.hpp"

namespace qsafe::eval {

/// Which columns of a user's file hold what, and where the expected behaviour comes from.
struct FileDatasetColumns {
    std::string prompt = "prompt";
    std::string id;        // empty: the row number
    std::string category;  // empty: no category
    std::string harmful_column;  // the column whose value says whether a prompt is harmful ...
    std::vector<std::string> harmful_values = {"harmful", "unsafe", "1", "true", "yes"};  // ... by these ('prefix*' allowed)
    std::optional<Expected> all;  // ... or one behaviour for every row (--all-harmful / --all-benign)

    /// The column map. `require_expected`: the evaluator's rates need to know which prompts are harmful, so
    /// a file without that is refused; a judge of labelled answers can do without.
    ColumnMap column_map(std::string_view source, bool require_expected = true) const {
        if (all && !harmful_column.empty())
            throw config_error(std::string(source) + ": give either a harmful column or --all-harmful / --all-benign, not both");
        ColumnMap map = ColumnMap::prompt_column(prompt);
        if (!id.empty()) map = map.with_id(id);
        if (!category.empty()) map = map.with_category(category);
        if (all) return map.expecting(*all);
        if (!harmful_column.empty()) return map.expecting(ExpectedFromColumn::harmful_when(harmful_column, harmful_values));
        if (require_expected)
            throw config_error(std::string(source) +
                               ": say which prompts are harmful: --harmful-column COLUMN (with --harmful-values), --all-harmful or "
                               "--all-benign");
        return map;
    }
};

/// Whether a --dataset entry names a file rather than a registered dataset (by its extension).
inline bool is_dataset_file(std::string_view entry) {
    for (const std::string_view ext : {".csv", ".jsonl", ".ndjson", ".json"})
        if (entry.size() > ext.size() && entry.ends_with(ext)) return true;
    return false;
}

/// A user's file as a dataset named after the file's stem, sampled like the named ones. A .json file is a
/// JSON array of objects; .jsonl / .ndjson JSON Lines; .csv CSV with a header row.
inline PromptDataset load_dataset_file(const std::filesystem::path& path, const FileDatasetColumns& columns,
                                       const DataOptions& options = {}) {
    if (!std::filesystem::is_regular_file(path)) throw io_error(path.string() + ": no such dataset file");
    const ColumnMap map = columns.column_map(path.string());
    const std::string ext = path.extension().string();
    PromptDataset all = ext == ".json"    ? load_json_array_dataset(path, "", map)
                        : ext == ".jsonl" || ext == ".ndjson" ? load_jsonl_dataset(path, map)
                                                              : load_csv_dataset(path, map);
    if (all.empty()) throw format_error(path.string() + ": no rows (an empty dataset would make every rate 0 of 0)");
    return sample(all, SampleOptions{options.limit, options.seed, options.stratify_by_category});
}

/// A --dataset entry: a registered name ("harmbench-test") or a file ("mine.csv", read through `columns`).
inline PromptDataset load_dataset_entry(std::string_view entry, const FileDatasetColumns& columns, const DataOptions& options = {}) {
    if (is_dataset_file(entry)) return load_dataset_file(std::filesystem::path(entry), columns, options);
    return load_named_dataset(entry, options);
}

/// Every dataset of a run by its list of entries; a dataset named twice (the same name, or a file whose stem
/// is a registered name or another file's stem) would mix two sets of rows under one name in the journal.
inline std::vector<PromptDataset> load_dataset_entries(const std::vector<std::string>& entries, const FileDatasetColumns& columns,
                                                       const DataOptions& options = {}) {
    if (entries.empty()) throw config_error("no dataset given");
    for (std::size_t i = 0; i < entries.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (entries[i] == entries[j]) throw config_error("dataset '" + entries[i] + "' is named twice");
    std::vector<PromptDataset> out;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        out.push_back(load_dataset_entry(entries[i], columns, options));
        for (std::size_t j = 0; j + 1 < out.size(); ++j)
            if (out[j].name() == out.back().name())
                throw config_error("datasets '" + entries[j] + "' and '" + entries[i] + "' would both be reported as '" + out[j].name() +
                                   "'; rename the file");
    }
    return out;
}

}  // namespace qsafe::eval
