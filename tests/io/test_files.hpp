#pragma once
// Helpers for the io tests: a per-process scratch folder, raw file writing, and a check that opening a
// malformed file raises the expected error type with a message naming the file and the problem.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace qsafe::test {

/// A folder for this test process, removed when the process exits.
inline std::filesystem::path scratch_dir() {
    struct Dir {
        std::filesystem::path path =
            std::filesystem::temp_directory_path() / ("qsafe_test_io_" + std::to_string(::getpid()));
        Dir() { std::filesystem::create_directories(path); }
        ~Dir() {
            std::error_code ignored;
            std::filesystem::remove_all(path, ignored);
        }
    };
    static const Dir dir;
    return dir.path;
}

inline std::filesystem::path scratch_file(std::string_view name) {
    return scratch_dir() / std::string(name);
}

inline std::filesystem::path write_bytes(std::string_view name, std::span<const std::byte> bytes) {
    const auto path = scratch_file(name);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
    return path;
}

inline std::filesystem::path write_text(std::string_view name, std::string_view text) {
    return write_bytes(name, std::as_bytes(std::span(text.data(), text.size())));
}

/// The cached real model ($QSAFE_CACHE_DIR/<name>, else ~/.cache/qsafe/<name>), or an empty path.
inline std::filesystem::path cached_model(std::string_view name = "SmolLM2-135M-Instruct.Q4_1.gguf") {
    for (const char* variable : {"QSAFE_CACHE_DIR", "HOME"}) {
        const char* root = std::getenv(variable);
        if (root == nullptr) continue;
        auto path = std::filesystem::path(root);
        if (std::string_view(variable) == "HOME") path /= ".cache/qsafe";
        path /= std::string(name);
        if (std::filesystem::exists(path)) return path;
    }
    return {};
}

/// Runs `open` and requires an exception of type E whose message names `path` and every fragment.
template <class E, class Open>
void check_error(Open&& open, const std::filesystem::path& path, std::initializer_list<std::string_view> fragments) {
    try {
        open();
        FAIL("expected an exception for ", path.string());
    } catch (const E& e) {
        const std::string message = e.what();
        CAPTURE(message);
        CHECK(message.find(path.string()) != std::string::npos);
        for (const auto fragment : fragments) {
            CAPTURE(fragment);
            CHECK(message.find(fragment) != std::string::npos);
        }
    }
}

}  // namespace qsafe::test
