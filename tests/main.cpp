// The single doctest main shared by every test executable (Debian's doctest exports no *_with_main target).
// Beyond doctest's own main it reports test cases that skipped themselves (tests/common/skip.hpp): listed
// at the end, and exit code 77 when nothing failed, so ctest shows them as skipped rather than passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "common/skip.hpp"

namespace {

/// Remembers the running test case's name for skip_test().
struct CurrentTestCaseListener : doctest::IReporter {
    explicit CurrentTestCaseListener(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats&) override {}
    void test_case_start(const doctest::TestCaseData& in) override { test_fixtures::current_test_case() = in.m_name; }
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void test_case_end(const doctest::CurrentTestCaseStats&) override {}
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}
};

}  // namespace

REGISTER_LISTENER("qsafe-current-test-case", 1, CurrentTestCaseListener);

int main(int argc, char** argv) {
    doctest::Context context(argc, argv);
    const int failed = context.run();
    if (context.shouldExit() || failed != 0) return failed;
    const auto& skipped = test_fixtures::skipped_test_cases();
    if (skipped.empty()) return 0;
    std::fprintf(stderr, "%zu test case%s skipped:\n", skipped.size(), skipped.size() == 1 ? "" : "s");
    for (const auto& line : skipped) std::fprintf(stderr, "  %s\n", line.c_str());
    return test_fixtures::skip_exit_code;
}
