#include "qsafe/training_setup.hpp"

#include <cstdio>
#include <fstream>

#include "qsafe/common.hpp"
#include "qsafe/core/error.hpp"
#include "qsafe/eval/dataset_registry.hpp"
#include "qsafe/eval/jsonl.hpp"
#include "qsafe/io/append_log.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/model/generation.hpp"

namespace qsafe_cli {

namespace fs = std::filesystem;
namespace tr = qsafe::train;

std::string jsonl_line(const nlohmann::ordered_json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"; }

tr::AlignmentSplit training_split(const fs::path& out_dir, bool allow_new_split, const std::string& command) {
    qsafe::eval::DataOptions data;
    data.source_dir = QSAFE_SOURCE_DIR;
    auto load = [&](const char* name) { return qsafe::eval::load_named_dataset(name, data); };
    tr::AlignmentSplit split = tr::make_alignment_split({load("advbench"), load("harmbench-val")}, {load("selfinstruct-seed")},
                                                        {load("harmbench-test"), load("jailbreakbench"), load("xstest"), load("selfinstruct-user")});
    const std::string split_text = split.to_json().dump(1) + "\n";
    fs::create_directories(out_dir);
    qsafe::io::atomic_write_text(out_dir / "split.json", split_text);
    // The written-down split of the repository: the same datasets must give the same split.
    const fs::path fixed = fs::path(QSAFE_SOURCE_DIR) / "data" / "alignment_split.json";
    if (fs::exists(fixed) && read_text_file(fixed) != split_text && !allow_new_split)
        throw qsafe::config_error(command + ": the split computed from the datasets in " + qsafe::eval::find_data_dir(data).string() + " differs from " +
                                  fixed.string() + " (other dataset files?); compare with " + (out_dir / "split.json").string() +
                                  ", or pass --allow-new-split to train on it anyway");
    return split;
}

std::map<std::string, std::string> journaled_answers(qsafe::LoadedModel& m, const std::vector<std::pair<tr::SplitEntry, std::string>>& rows,
                                                     const fs::path& journal, std::size_t max_new_tokens, const std::string& label) {
    std::map<std::string, std::string> done;
    if (const auto cut = qsafe::io::cut_unfinished_last_line(journal))
        std::fprintf(stderr, "%s: dropped the unfinished last line (%llu bytes) an interrupted run left; that answer is generated again\n",
                     journal.string().c_str(), static_cast<unsigned long long>(cut));
    if (fs::exists(journal))
        for (const auto& r : qsafe::eval::read_jsonl(journal)) done[r.value.at("key").get<std::string>()] = r.value.at("response").get<std::string>();
    std::vector<std::vector<std::int32_t>> prompts;
    std::vector<std::string> keys;
    for (const auto& [e, prompt] : rows) {
        const std::string key = e.dataset + ":" + e.id;
        if (done.contains(key)) continue;
        const qsafe::tokenizer::Message user{"user", prompt};
        prompts.push_back(m.tokenizer.encode(m.chat_template.format(std::span(&user, 1)), {.parse_special = true}));
        keys.push_back(key);
    }
    if (prompts.empty()) return done;
    std::fprintf(stderr, "[%s: %zu to generate (%zu journaled)]\n", label.c_str(), prompts.size(), done.size());
    std::ofstream out(journal, std::ios::app);
    if (!out) throw qsafe::io_error(journal.string() + ": cannot append");
    qsafe::GenerationOptions g;
    g.max_new_tokens = max_new_tokens;
    g.max_batch = 32;
    std::size_t finished = 0;
    qsafe::generate(m.model, m.tokenizer, prompts, g, nullptr, [&](std::size_t i, const qsafe::GenerationResult& r) {
        done[keys[i]] = r.text;
        out << jsonl_line({{"key", keys[i]}, {"response", r.text}}) << std::flush;
        if (++finished % 32 == 0) std::fprintf(stderr, "  %zu/%zu\n", finished, prompts.size());
    });
    return done;
}

}  // namespace qsafe_cli
