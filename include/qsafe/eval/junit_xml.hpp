#pragma once
// JUnit XML, the test-result format every CI system reads (GitHub Actions reporters, GitLab, Jenkins,
// Buildkite): a program that is not a test runner, such as the safety gate, writes its checks as test cases
// so that a failed check shows up as a failed test with its message instead of a line buried in a log.
// One <testsuite> root with one <testcase> per check; the attributes are the ones all of those readers
// agree on (name, tests, failures, errors, skipped; classname, name; failure/skipped with message).
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qsafe::eval {

struct JUnitCase {
    std::string classname;               // readers group cases by it ("qsafe.gate.advbench")
    std::string name;                    // the case within the group ("int4-g128-asym:rtn refusal-drop")
    std::optional<std::string> failure;  // the one-line reason, when the case failed
    std::optional<std::string> skipped;  // why it was not checked, when it was not
    std::string type;                    // the failure's type attribute (the criterion); empty: none
    std::string output;                  // <system-out>: what was checked, shown beside a passing case too
};

struct JUnitSuite {
    std::string name;
    std::vector<std::pair<std::string, std::string>> properties;  // settings worth seeing in the CI view
    std::vector<JUnitCase> cases;
};

namespace detail {

/// Text for an XML attribute or element. XML 1.0 cannot carry most control characters at all, not even as
/// references, so they become '?'; a readable report beats a file the CI system rejects.
inline std::string junit_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            case '\n': out += "&#10;"; break;  // kept in attributes, where a raw newline would become a space
            case '\t': out += "&#9;"; break;
            case '\r': out += "&#13;"; break;
            default: out += static_cast<unsigned char>(c) < 0x20 ? '?' : c;
        }
    }
    return out;
}

}  // namespace detail

/// The suite as a JUnit XML document (UTF-8).
inline std::string junit_xml(const JUnitSuite& suite) {
    using detail::junit_escape;
    std::size_t failures = 0, skipped = 0;
    for (const auto& c : suite.cases) {
        failures += c.failure.has_value();
        skipped += !c.failure && c.skipped;
    }
    std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out += "<testsuite name=\"" + junit_escape(suite.name) + "\" tests=\"" + std::to_string(suite.cases.size()) +
           "\" failures=\"" + std::to_string(failures) + "\" errors=\"0\" skipped=\"" + std::to_string(skipped) +
           "\" time=\"0\">\n";
    if (!suite.properties.empty()) {
        out += "  <properties>\n";
        for (const auto& [name, value] : suite.properties)
            out += "    <property name=\"" + junit_escape(name) + "\" value=\"" + junit_escape(value) + "\"/>\n";
        out += "  </properties>\n";
    }
    for (const auto& c : suite.cases) {
        out += "  <testcase classname=\"" + junit_escape(c.classname) + "\" name=\"" + junit_escape(c.name) +
               "\" time=\"0\">\n";
        if (c.failure) {
            out += "    <failure message=\"" + junit_escape(*c.failure) + "\"";
            if (!c.type.empty()) out += " type=\"" + junit_escape(c.type) + "\"";
            out += ">" + junit_escape(*c.failure) + "</failure>\n";
        } else if (c.skipped) {
            out += "    <skipped message=\"" + junit_escape(*c.skipped) + "\"/>\n";
        }
        if (!c.output.empty()) out += "    <system-out>" + junit_escape(c.output) + "</system-out>\n";
        out += "  </testcase>\n";
    }
    out += "</testsuite>\n";
    return out;
}

}  // namespace qsafe::eval
