// The SVG figure: well-formed XML, one line per method in each panel, an interval bar per point, a log2
// bits axis, escaped labels, and the same bytes for the same metrics.
#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "qsafe/eval/svg_plot.hpp"

using namespace qsafe::eval;

namespace {

VariantMetrics variant(std::string name, std::string method, double bits, Proportion refusal,
                       Proportion over_refusal) {
    VariantMetrics v;
    v.info.name = std::move(name);
    v.info.method = std::move(method);
    v.info.bits_per_weight = bits;
    GroupMetrics all;
    all.category = "all";
    all.refusal = refusal;
    all.harmful = refusal.total;
    all.attack_success = refusal.complement();
    all.over_refusal = over_refusal;
    all.benign = over_refusal.total;
    v.groups.push_back(all);
    return v;
}

DatasetMetrics sweep() {
    DatasetMetrics d;
    d.dataset = "xstest <v2> & \"friends\"";
    d.variants = {
        variant("fp", "fp", 16.0, {96, 100}, {8, 250}),
        variant("rtn-q8", "rtn", 8.5, {95, 100}, {9, 250}),
        variant("rtn-q4", "rtn", 4.5, {81, 100}, {12, 250}),
        variant("rtn-q3", "rtn", 3.4375, {60, 100}, {20, 250}),
        variant("gptq-q4", "gptq", 4.5, {90, 100}, {10, 250}),
        variant("gptq-q2", "gptq", 2.5625, {40, 100}, {50, 250}),
        variant("awq-q4", "a<w>q & co", 4.5, {92, 100}, {0, 0}),  // no benign prompts answered
        variant("unplaced", "rtn", 0.0, {50, 100}, {5, 250}),    // bits unknown: cannot be plotted
    };
    return d;
}

/// A crude XML check: every element opened is closed in order, and no stray '<' or '&' appears in text.
bool well_formed(std::string_view svg, std::string& problem) {
    std::vector<std::string> open;
    std::size_t i = 0;
    while (i < svg.size()) {
        if (svg[i] == '&') {
            const auto end = svg.find(';', i);
            const auto entity = svg.substr(i, end == std::string_view::npos ? 0 : end - i + 1);
            if (entity != "&amp;" && entity != "&lt;" && entity != "&gt;" && entity != "&quot;" && entity != "&apos;") {
                problem = "bad entity at " + std::to_string(i);
                return false;
            }
        }
        if (svg[i] != '<') {
            if (svg[i] == '>') {
                problem = "stray '>' at " + std::to_string(i);
                return false;
            }
            ++i;
            continue;
        }
        const auto end = svg.find('>', i);
        if (end == std::string_view::npos) {
            problem = "unterminated tag";
            return false;
        }
        const auto tag = svg.substr(i + 1, end - i - 1);
        if (tag.find('<') != std::string_view::npos) {
            problem = "'<' inside a tag at " + std::to_string(i);
            return false;
        }
        if (tag.front() == '?') {
            // declaration
        } else if (tag.front() == '/') {
            const std::string name(tag.substr(1));
            if (open.empty() || open.back() != name) {
                problem = "closing </" + name + "> does not match <" + (open.empty() ? "" : open.back()) + ">";
                return false;
            }
            open.pop_back();
        } else if (tag.back() != '/') {
            open.emplace_back(tag.substr(0, tag.find_first_of(" \n")));
        }
        i = end + 1;
    }
    if (!open.empty()) problem = "<" + open.back() + "> never closed";
    return open.empty();
}

/// The x position of the first panel's tick labelled `label`; NaN when there is none.
double tick_x(const std::string& svg, std::string_view label) {
    const auto end = svg.find("\" text-anchor=\"middle\">" + std::string(label) + "</text>");
    if (end == std::string::npos) return std::nan("");
    const auto y = svg.rfind("\" y=\"", end);
    const auto x = svg.rfind("x=\"", y);
    if (svg.compare(svg.rfind("<text", x), 18, "<text class=\"tick\"") != 0) return std::nan("");
    return std::stod(svg.substr(x + 3, y - x - 3));
}

std::size_t count(std::string_view text, std::string_view part) {
    std::size_t n = 0;
    for (auto at = text.find(part); at != std::string_view::npos; at = text.find(part, at + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE("svg plot is well-formed with a line per method and a bar per point") {
    const auto svg = safety_plot_svg(sweep());
    std::string problem;
    CHECK_MESSAGE(well_formed(svg, problem), problem);
    CHECK(svg.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
    // Methods fp, rtn, gptq and "a<w>q & co" in the harmful panel; all but the last in the benign panel.
    CHECK(count(svg, "<polyline class=\"series-line\"") == 4 + 3);
    CHECK(count(svg, "data-method=\"rtn\"") == 2);
    // Points: harmful 1 + 3 + 2 + 1, benign 1 + 3 + 2; "unplaced" has no bits per weight.
    CHECK(count(svg, "<g class=\"error-bar\"") == 7 + 6);
    CHECK(count(svg, "<g class=\"point\">") == 7 + 6);
    CHECK_FALSE(svg.find("unplaced") != std::string::npos);
    // The rtn line visits its points in order of bits per weight: 3.4375, 4.5, 8.5.
    const auto rtn = svg.find("data-method=\"rtn\"");
    const auto rtn_points = svg.find("points=\"", rtn);
    const auto first_x = std::stod(svg.substr(rtn_points + 8));
    const auto second_x = std::stod(svg.substr(svg.find(' ', rtn_points) + 1));
    CHECK(first_x < second_x);
    // Legend: one entry per method, with escaped text.
    CHECK(count(svg, "<g class=\"legend\">") == 1);
    CHECK(svg.find(">a&lt;w&gt;q &amp; co</text>") != std::string::npos);
    CHECK(svg.find("Safety vs bits per weight: xstest &lt;v2&gt; &amp; &quot;friends&quot;") != std::string::npos);
    CHECK(svg.find("rtn-q4: 81.0 % [72.2, 87.5] of 100, 4.50 bpw") != std::string::npos);
    CHECK(svg.find("bits per weight (log scale)</text>") != std::string::npos);
    CHECK(svg.find(">16</text>") != std::string::npos);
    CHECK(svg.find(">100</text>") != std::string::npos);
}

TEST_CASE("svg plot output is deterministic and handles empty panels") {
    CHECK(safety_plot_svg(sweep()) == safety_plot_svg(sweep()));

    DatasetMetrics harmful_only;
    harmful_only.dataset = "advbench";
    harmful_only.variants = {variant("fp", "fp", 16.0, {10, 10}, {0, 0})};
    const auto svg = safety_plot_svg(harmful_only, {"Custom title"});
    std::string problem;
    CHECK_MESSAGE(well_formed(svg, problem), problem);
    CHECK(svg.find(">no benign prompts</text>") != std::string::npos);
    CHECK(svg.find(">Custom title</text>") != std::string::npos);
    CHECK(count(svg, "<polyline") == 1);

    DatasetMetrics nothing;
    nothing.dataset = "empty";
    const auto empty_svg = safety_plot_svg(nothing);
    CHECK(well_formed(empty_svg, problem));
    CHECK(count(empty_svg, "<polyline") == 0);
    CHECK(empty_svg.find(">no harmful prompts</text>") != std::string::npos);
}

TEST_CASE("svg plot spaces bits per weight in log2: every halving is the same step") {
    const auto svg = safety_plot_svg(sweep());  // 2.56 to 16 bits
    const double x3 = tick_x(svg, "3"), x4 = tick_x(svg, "4"), x6 = tick_x(svg, "6"), x8 = tick_x(svg, "8"),
                 x12 = tick_x(svg, "12"), x16 = tick_x(svg, "16");
    for (const double x : {x3, x4, x6, x8, x12, x16}) REQUIRE_FALSE(std::isnan(x));
    CHECK(x4 < x6);
    CHECK(x8 - x4 == doctest::Approx(x16 - x8).epsilon(1e-3));   // an octave is an octave
    CHECK(x6 - x3 == doctest::Approx(x8 - x4).epsilon(1e-3));
    CHECK(x6 - x4 == doctest::Approx(x12 - x8).epsilon(1e-3));
    CHECK((x4 - x3) / (x8 - x4) == doctest::Approx(std::log2(4.0 / 3.0)).epsilon(1e-3));
    CHECK(std::isnan(tick_x(svg, "2")));   // below the padded range
    CHECK(std::isnan(tick_x(svg, "32")));  // above it
    // The quantized points are no longer crowded at the left: 4 bits sit over a quarter of the way across
    // the first panel (x = 70 to 450); the linear axis put them at a seventh.
    CHECK(x4 > 70 + 0.25 * 380);
    // Grid lines at the powers of two only (4, 8, 16 in each panel).
    CHECK(count(svg, "<line class=\"grid-x\"") == 2 * 3);

    // Variants all within half an octave still get an octave-wide axis with ticks around them.
    DatasetMetrics narrow;
    narrow.dataset = "narrow";
    narrow.variants = {variant("a", "rtn", 4.5, {9, 10}, {0, 0}), variant("b", "rtn", 5.1, {8, 10}, {0, 0})};
    const auto narrow_svg = safety_plot_svg(narrow);
    CHECK_FALSE(std::isnan(tick_x(narrow_svg, "4")));
    CHECK_FALSE(std::isnan(tick_x(narrow_svg, "6")));
    // Variants from 1 to 1024 bits (10 octaves) keep only the powers of two, whose labels cannot collide.
    DatasetMetrics wide;
    wide.dataset = "wide";
    wide.variants = {variant("a", "rtn", 1.0, {9, 10}, {0, 0}), variant("b", "rtn", 1024.0, {8, 10}, {0, 0})};
    const auto wide_svg = safety_plot_svg(wide);
    CHECK_FALSE(std::isnan(tick_x(wide_svg, "512")));
    CHECK(std::isnan(tick_x(wide_svg, "3")));
}
