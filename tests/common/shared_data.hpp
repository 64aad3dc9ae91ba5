#pragma once
// The shared datasets folder for tests that read real data: found like the tool finds it
// ($QSAFE_DATA_DIR, else ../shared/datasets); a test without it is skipped (or fails under CI: skip.hpp).
#include <doctest/doctest.h>

#include <filesystem>
#include <optional>

#include "common/skip.hpp"
#include "qsafe/eval/dataset_registry.hpp"

namespace test_fixtures {

/// Data options that also look next to the source tree.
inline qsafe::eval::DataOptions source_data_options() {
    qsafe::eval::DataOptions options;
    options.source_dir = QSAFE_SOURCE_DIR;
    return options;
}

/// The shared datasets folder, or nothing (the running test case is then skipped: return from it).
inline std::optional<std::filesystem::path> shared_data_dir() {
    try {
        return qsafe::eval::find_data_dir(source_data_options());
    } catch (const qsafe::config_error& e) {
        skip_test(std::string("shared datasets not found: ") + e.what());
        return std::nullopt;
    }
}

}  // namespace test_fixtures
