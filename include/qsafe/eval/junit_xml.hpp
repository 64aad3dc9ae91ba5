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

#include "qsafe/eval/xml_escape.hpp"

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


/// The suite as a JUnit XML document (UTF-8).
inline std::string junit_xml(const JUnitSuite& suite) {
    std::size_t failures = 0, skipped = 0;
    for (const auto& c : suite.cases) {
        failures += c.failure.has_value();
        skipped += !c.failure && c.skipped;
    }
    std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out += "<testsuite name=\"" + xml_escape(suite.name) + "\" tests=\"" + std::to_string(suite.cases.size()) +
           "\" failures=\"" + std::to_string(failures) + "\" errors=\"0\" skipped=\"" + std::to_string(skipped) +
           "\" time=\"0\">\n";
    if (!suite.properties.empty()) {
        out += "  <properties>\n";
        for (const auto& [name, value] : suite.properties)
            out += "    <property name=\"" + xml_escape(name) + "\" value=\"" + xml_escape(value) + "\"/>\n";
        out += "  </properties>\n";
    }
    for (const auto& c : suite.cases) {
        out += "  <testcase classname=\"" + xml_escape(c.classname) + "\" name=\"" + xml_escape(c.name) +
               "\" time=\"0\">\n";
        if (c.failure) {
            out += "    <failure message=\"" + xml_escape(*c.failure) + "\"";
            if (!c.type.empty()) out += " type=\"" + xml_escape(c.type) + "\"";
            out += ">" + xml_escape(*c.failure) + "</failure>\n";
        } else if (c.skipped) {
            out += "    <skipped message=\"" + xml_escape(*c.skipped) + "\"/>\n";
        }
        if (!c.output.empty()) out += "    <system-out>" + xml_escape(c.output) + "</system-out>\n";
        out += "  </testcase>\n";
    }
    out += "</testsuite>\n";
    return out;
}

}  // namespace qsafe::eval
