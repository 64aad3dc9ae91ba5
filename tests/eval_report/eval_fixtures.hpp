#pragma once
// Shared helpers of the eval_report tests: a scratch folder and a compact way to build judged records.
#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>

#include "qsafe/eval/record.hpp"

namespace qsafe::test {

/// A folder for this test process, removed when the process exits.
inline std::filesystem::path eval_scratch_dir() {
    struct Dir {
        std::filesystem::path path =
            std::filesystem::temp_directory_path() / ("qsafe_test_eval_report_" + std::to_string(::getpid()));
        Dir() { std::filesystem::create_directories(path); }
        ~Dir() {
            std::error_code ignored;
            std::filesystem::remove_all(path, ignored);
        }
    };
    static const Dir dir;
    return dir.path;
}

/// A fresh path in the scratch folder (any earlier file of that name is removed).
inline std::filesystem::path eval_scratch_file(std::string_view name) {
    auto path = eval_scratch_dir() / std::string(name);
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
    return path;
}

inline std::string read_text(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_text(const std::filesystem::path& path, std::string_view text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
}

inline eval::ResponseRecord judged(std::string variant, std::string prompt_id, eval::Expected expected,
                                   eval::Verdict verdict, std::string category = "misc",
                                   std::string dataset = "advbench") {
    eval::ResponseRecord r;
    r.dataset = std::move(dataset);
    r.variant = std::move(variant);
    r.prompt_id = std::move(prompt_id);
    r.category = std::move(category);
    r.expected = expected;
    r.prompt = "prompt " + r.prompt_id;
    r.response = std::string("response of ") + r.variant + " to " + r.prompt_id;
    r.verdict = verdict;
    r.judge_reason = std::string(eval::to_string(verdict));
    r.prompt_tokens = 10 + r.prompt_id.size();
    r.response_tokens = 20;
    r.seconds = 0.5;
    return r;
}

}  // namespace qsafe::test
