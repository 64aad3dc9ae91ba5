#pragma once
// Command-line pieces shared by the commands that train on the written-down split (`align`, `patch`): the
// split itself and journaled greedy answers to its prompts.
#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/model/model_loader.hpp"
#include "qsafe/train/alignment_data.hpp"

namespace qsafe_cli {

/// One JSON object per line, invalid UTF-8 replaced.
std::string jsonl_line(const nlohmann::ordered_json& j);

/// The training split (train on AdvBench, HarmBench-val and Self-Instruct's seed tasks; never on a prompt close
/// to HarmBench-test, JailbreakBench, XSTest or Self-Instruct's user-oriented set), written to
/// `out_dir`/split.json. Throws config_error (naming `command`) when it differs from the repository's
/// data/alignment_split.json, unless allow_new_split.
qsafe::train::AlignmentSplit training_split(const std::filesystem::path& out_dir, bool allow_new_split, const std::string& command);

/// `m`'s greedy answers to each (row, prompt) as one user turn, journaled by "dataset:id" in `journal` (a rerun
/// only generates what is missing). `label` names the answers in progress lines.
std::map<std::string, std::string> journaled_answers(qsafe::LoadedModel& m, const std::vector<std::pair<qsafe::train::SplitEntry, std::string>>& rows,
                                                     const std::filesystem::path& journal, std::size_t max_new_tokens, const std::string& label);

}  // namespace qsafe_cli
