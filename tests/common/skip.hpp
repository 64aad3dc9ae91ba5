#pragma once
// Tests that need something outside the repository (the default model, the shared datasets) call
// skip_test() when it is missing, instead of returning early as if they had passed:
//   - under CI (CI=true, as .ci/run is run) a missing model or dataset is a failure: a green CI run means
//     every test ran;
//   - elsewhere the test case is recorded as skipped; the test program prints the skipped cases and their
//     reasons at the end and exits with skip_exit_code, which ctest reports as "Skipped" (the tests are
//     registered with SKIP_RETURN_CODE), and scripts/test.sh counts them.
// tests/main.cpp tracks which test case is running and turns the record into the exit code.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace test_fixtures {

/// The exit code of a test program whose cases all passed but some were skipped (automake's convention,
/// also ctest's SKIP_RETURN_CODE in tests/CMakeLists.txt).
inline constexpr int skip_exit_code = 77;

/// True when running under CI, where nothing may be skipped.
inline bool running_in_ci() {
    const char* ci = std::getenv("CI");
    if (ci == nullptr) return false;
    const std::string_view value(ci);
    return value == "true" || value == "1" || value == "yes";
}

/// The test case doctest is running (set by the listener in tests/main.cpp).
inline std::string& current_test_case() {
    static std::string name;
    return name;
}

/// "test case: reason" for every skipped case of this run.
inline std::vector<std::string>& skipped_test_cases() {
    static std::vector<std::string> skipped;
    return skipped;
}

/// Marks the running test case as skipped for `reason` (which should say how to provide what is missing),
/// or fails it under CI. The caller returns right after.
inline void skip_test(const std::string& reason) {
    if (running_in_ci()) FAIL("cannot run under CI=true: " << reason);
    MESSAGE("SKIPPED: " << reason);
    skipped_test_cases().push_back(current_test_case() + ": " + reason);
}

}  // namespace test_fixtures
