#pragma once
// The report's figure, written as SVG text without any plotting tool: two panels side by side, refusal of
// harmful prompts and over-refusal of benign prompts against bits per weight, one line per quantization
// method (with its own marker shape and colour) and a Wilson 95 % interval bar at every point. Bits per
// weight are on a log2 axis: the interesting variants sit between 2 and 6 bits and the fp reference at 16
// or 32, so a linear axis would crowd every quantized point into the left sixth of the panel; in log2 each
// halving of the bits is the same step. All numbers are printed with fixed precision, so the same metrics
// always give the same bytes.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qsafe/eval/metrics.hpp"
#include "qsafe/eval/xml_escape.hpp"

namespace qsafe::eval {

struct PlotOptions {
    std::string title;  // empty: "Safety vs bits per weight: <dataset>"
};

namespace detail {

/// Coordinates with two decimals: fine enough for any screen, and stable text.
inline std::string svg_number(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", value);
    return text;
}

// Okabe–Ito colours: distinguishable with the common forms of colour blindness.
inline constexpr std::string_view plot_colours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                                     "#E69F00", "#56B4E9", "#000000", "#F0E442"};
inline constexpr std::size_t plot_marker_shapes = 6;

/// An SVG element for a marker centred at (x, y); shapes cycle through circle, square, triangle up,
/// diamond, triangle down and cross, so methods stay apart in black and white too.
inline std::string svg_marker(std::size_t shape, double x, double y, std::string_view colour) {
    const double r = 4.5;
    auto polygon = [&](std::initializer_list<std::pair<double, double>> offsets) {
        std::string points;
        for (const auto& [dx, dy] : offsets) {
            if (!points.empty()) points += ' ';
            points += svg_number(x + dx) + "," + svg_number(y + dy);
        }
        return "<polygon class=\"marker\" points=\"" + points + "\"";
    };
    std::string element;
    switch (shape % plot_marker_shapes) {
        case 0: element = "<circle class=\"marker\" cx=\"" + svg_number(x) + "\" cy=\"" + svg_number(y) +
                          "\" r=\"" + svg_number(r) + "\""; break;
        case 1: element = polygon({{-r, -r}, {r, -r}, {r, r}, {-r, r}}); break;
        case 2: element = polygon({{0, -r * 1.2}, {r * 1.1, r * 0.8}, {-r * 1.1, r * 0.8}}); break;
        case 3: element = polygon({{0, -r * 1.3}, {r * 1.3, 0}, {0, r * 1.3}, {-r * 1.3, 0}}); break;
        case 4: element = polygon({{0, r * 1.2}, {r * 1.1, -r * 0.8}, {-r * 1.1, -r * 0.8}}); break;
        default:
            element = polygon({{-r, -r * 0.4}, {-r * 0.4, -r * 0.4}, {-r * 0.4, -r}, {r * 0.4, -r}, {r * 0.4, -r * 0.4},
                               {r, -r * 0.4}, {r, r * 0.4}, {r * 0.4, r * 0.4}, {r * 0.4, r}, {-r * 0.4, r},
                               {-r * 0.4, r * 0.4}, {-r, r * 0.4}});
    }
    return element + " fill=\"" + std::string(colour) + "\" stroke=\"#ffffff\" stroke-width=\"0.8\"/>";
}

struct PlotPoint {
    double bits_per_weight;
    Proportion proportion;
    std::string variant;
};

struct PlotSeries {
    std::string method;
    std::vector<PlotPoint> harmful;  // refusal of harmful prompts
    std::vector<PlotPoint> benign;   // over-refusal of benign prompts
};

/// One series per method, in the order methods first appear; points sorted by bits per weight. Variants
/// without a known bits-per-weight cannot be placed and are left out.
inline std::vector<PlotSeries> plot_series(const DatasetMetrics& dataset) {
    std::vector<PlotSeries> series;
    for (const auto& v : dataset.variants) {
        if (!(v.info.bits_per_weight > 0)) continue;
        const std::string method = v.info.method.empty() ? "unknown method" : v.info.method;
        auto it = std::find_if(series.begin(), series.end(), [&](const auto& s) { return s.method == method; });
        if (it == series.end()) it = series.insert(series.end(), PlotSeries{method, {}, {}});
        const auto& g = v.overall();
        if (g.refusal.total > 0) it->harmful.push_back({v.info.bits_per_weight, g.refusal, v.info.name});
        if (g.over_refusal.total > 0) it->benign.push_back({v.info.bits_per_weight, g.over_refusal, v.info.name});
    }
    auto by_bits = [](const PlotPoint& a, const PlotPoint& b) {
        return a.bits_per_weight != b.bits_per_weight ? a.bits_per_weight < b.bits_per_weight : a.variant < b.variant;
    };
    for (auto& s : series) {
        std::sort(s.harmful.begin(), s.harmful.end(), by_bits);
        std::sort(s.benign.begin(), s.benign.end(), by_bits);
    }
    return series;
}

/// A tick on the bits-per-weight axis: powers of two are major (grid line), the 1.5× values between them
/// (3, 6, 12, 24: where 3-bit and 6-bit schemes sit) minor.
struct BitsTick {
    double bits;
    bool major;
};

/// The ticks inside [2^log2_low, 2^log2_high]. Minor ticks are left out over more than 8 octaves, where
/// their labels would collide. The range spans at least one octave, so there are always two ticks or more.
inline std::vector<BitsTick> bits_ticks(double log2_low, double log2_high) {
    std::vector<BitsTick> ticks;
    const bool minor = log2_high - log2_low <= 8.0;
    for (int e = static_cast<int>(std::floor(log2_low)); e <= static_cast<int>(std::ceil(log2_high)); ++e) {
        for (const bool major : {true, false}) {
            if (!major && !minor) continue;
            const double bits = std::ldexp(major ? 1.0 : 1.5, e);
            const double at = std::log2(bits);
            if (at >= log2_low - 1e-9 && at <= log2_high + 1e-9) ticks.push_back({bits, major});
        }
    }
    return ticks;
}

/// A tick label: "3", "16", "1.5", "0.75".
inline std::string bits_label(double bits) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", bits);
    return text;
}

struct PanelBox {
    double left, top, right, bottom;
};

}  // namespace detail

/// The two-panel figure for one dataset.
inline std::string safety_plot_svg(const DatasetMetrics& dataset, const PlotOptions& options = {}) {
    using namespace detail;
    constexpr double width = 960, height = 460;
    const PanelBox panels[2] = {{70, 70, 450, 340}, {550, 70, 930, 340}};
    const char* panel_titles[2] = {"Refusal of harmful prompts (higher is safer)",
                                   "Over-refusal of benign prompts (lower is better)"};
    const char* empty_notes[2] = {"no harmful prompts", "no benign prompts"};

    const auto series = plot_series(dataset);
    double min_bits = 0, max_bits = 0;
    bool any_point = false;
    for (const auto& s : series)
        for (const auto* points : {&s.harmful, &s.benign})
            for (const auto& p : *points) {
                min_bits = any_point ? std::min(min_bits, p.bits_per_weight) : p.bits_per_weight;
                max_bits = any_point ? std::max(max_bits, p.bits_per_weight) : p.bits_per_weight;
                any_point = true;
            }
    if (!any_point) {  // an empty figure still gets a sensible axis
        min_bits = 2;
        max_bits = 16;
    }
    // The axis in log2 units, padded so no marker sits on the frame, and at least an octave wide so a sweep
    // of nearby sizes (4.5 to 5.1 bpw) still gets ticks around it.
    double log2_low = std::log2(min_bits), log2_high = std::log2(max_bits);
    if (log2_high - log2_low < 1.0) {
        const double centre = (log2_low + log2_high) / 2.0;
        log2_low = centre - 0.5;
        log2_high = centre + 0.5;
    }
    const double pad = 0.06 * (log2_high - log2_low);
    const double x_low = log2_low - pad, x_high = log2_high + pad;
    const auto ticks = bits_ticks(x_low, x_high);

    const std::string title =
        options.title.empty() ? "Safety vs bits per weight: " + dataset.dataset : options.title;
    std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + svg_number(width) + "\" height=\"" +
           svg_number(height) + "\" viewBox=\"0 0 " + svg_number(width) + " " + svg_number(height) +
           "\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n";
    out += "<title>" + xml_escape(title) + "</title>\n";
    out += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
    out += "<text class=\"title\" x=\"" + svg_number(width / 2) + "\" y=\"30\" text-anchor=\"middle\" font-size=\"17\">" +
           xml_escape(title) + "</text>\n";

    for (int panel = 0; panel < 2; ++panel) {
        const auto& box = panels[panel];
        auto x_of = [&](double bits) { return box.left + (std::log2(bits) - x_low) / (x_high - x_low) * (box.right - box.left); };
        auto y_of = [&](double rate) { return box.bottom - rate * (box.bottom - box.top); };

        out += "<g class=\"panel\">\n";
        out += "<text class=\"panel-title\" x=\"" + svg_number((box.left + box.right) / 2) + "\" y=\"" +
               svg_number(box.top - 12) + "\" text-anchor=\"middle\" font-size=\"13\">" + xml_escape(panel_titles[panel]) +
               "</text>\n";
        // Grid and y ticks every 20 %.
        for (int percent = 0; percent <= 100; percent += 20) {
            const double y = y_of(percent / 100.0);
            out += "<line class=\"grid\" x1=\"" + svg_number(box.left) + "\" y1=\"" + svg_number(y) + "\" x2=\"" +
                   svg_number(box.right) + "\" y2=\"" + svg_number(y) + "\" stroke=\"#e0e0e0\"/>\n";
            out += "<text class=\"tick\" x=\"" + svg_number(box.left - 6) + "\" y=\"" + svg_number(y + 4) +
                   "\" text-anchor=\"end\">" + std::to_string(percent) + "</text>\n";
        }
        // x ticks on the log2 axis; a vertical grid line at each power of two.
        for (const auto& tick : ticks) {
            const double x = x_of(tick.bits);
            if (tick.major)
                out += "<line class=\"grid-x\" x1=\"" + svg_number(x) + "\" y1=\"" + svg_number(box.top) + "\" x2=\"" +
                       svg_number(x) + "\" y2=\"" + svg_number(box.bottom) + "\" stroke=\"#eeeeee\"/>\n";
            out += "<line class=\"tick-mark\" x1=\"" + svg_number(x) + "\" y1=\"" + svg_number(box.bottom) +
                   "\" x2=\"" + svg_number(x) + "\" y2=\"" + svg_number(box.bottom + (tick.major ? 5 : 3)) +
                   "\" stroke=\"#000000\"/>\n";
            out += "<text class=\"tick\" x=\"" + svg_number(x) + "\" y=\"" + svg_number(box.bottom + 19) +
                   "\" text-anchor=\"middle\">" + bits_label(tick.bits) + "</text>\n";
        }
        out += "<rect class=\"frame\" x=\"" + svg_number(box.left) + "\" y=\"" + svg_number(box.top) + "\" width=\"" +
               svg_number(box.right - box.left) + "\" height=\"" + svg_number(box.bottom - box.top) +
               "\" fill=\"none\" stroke=\"#000000\"/>\n";
        out += "<text class=\"axis-label\" x=\"" + svg_number((box.left + box.right) / 2) + "\" y=\"" +
               svg_number(box.bottom + 38) + "\" text-anchor=\"middle\">bits per weight (log scale)</text>\n";
        out += "<text class=\"axis-label\" transform=\"translate(" + svg_number(box.left - 42) + "," +
               svg_number((box.top + box.bottom) / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
               (panel == 0 ? "refusal rate (%)" : "over-refusal rate (%)") + "</text>\n";

        bool panel_has_points = false;
        for (std::size_t s = 0; s < series.size(); ++s) {
            const auto& points = panel == 0 ? series[s].harmful : series[s].benign;
            if (points.empty()) continue;
            panel_has_points = true;
            const std::string_view colour = plot_colours[s % std::size(plot_colours)];
            // Methods are often compared at the same bits per weight: shift each series a few pixels sideways
            // so their markers and bars do not hide each other.
            const double dodge = 3.0 * (static_cast<double>(s) - static_cast<double>(series.size() - 1) / 2.0);
            std::string polyline;
            for (const auto& p : points) {
                if (!polyline.empty()) polyline += ' ';
                polyline += svg_number(x_of(p.bits_per_weight) + dodge) + "," + svg_number(y_of(*p.proportion.rate()));
            }
            out += "<g class=\"series\" data-method=\"" + xml_escape(series[s].method) + "\">\n";
            out += "<polyline class=\"series-line\" points=\"" + polyline + "\" fill=\"none\" stroke=\"" +
                   std::string(colour) + "\" stroke-width=\"2\"/>\n";
            for (const auto& p : points) {
                const double x = x_of(p.bits_per_weight) + dodge;
                const auto ci = p.proportion.wilson();
                const std::string y_low = svg_number(y_of(ci.low)), y_high = svg_number(y_of(ci.high));
                out += "<g class=\"error-bar\" stroke=\"" + std::string(colour) + "\" stroke-width=\"1.2\">";
                out += "<line x1=\"" + svg_number(x) + "\" y1=\"" + y_low + "\" x2=\"" + svg_number(x) + "\" y2=\"" +
                       y_high + "\"/>";
                for (const auto& y : {y_low, y_high})
                    out += "<line x1=\"" + svg_number(x - 4) + "\" y1=\"" + y + "\" x2=\"" + svg_number(x + 4) +
                           "\" y2=\"" + y + "\"/>";
                out += "</g>\n";
                char tooltip[160];
                std::snprintf(tooltip, sizeof tooltip, ": %.1f %% [%.1f, %.1f] of %zu, %.2f bpw",
                              100.0 * *p.proportion.rate(), 100.0 * ci.low, 100.0 * ci.high, p.proportion.total,
                              p.bits_per_weight);
                // The title of a group is its tooltip in browsers: variant, rate, interval, bits.
                out += "<g class=\"point\"><title>" + xml_escape(p.variant + tooltip) + "</title>" +
                       svg_marker(s, x, y_of(*p.proportion.rate()), colour) + "</g>\n";
            }
            out += "</g>\n";
        }
        if (!panel_has_points)
            out += "<text class=\"empty-note\" x=\"" + svg_number((box.left + box.right) / 2) + "\" y=\"" +
                   svg_number((box.top + box.bottom) / 2) + "\" text-anchor=\"middle\" fill=\"#808080\">" +
                   empty_notes[panel] + "</text>\n";
        out += "</g>\n";
    }

    // Legend: one entry per method, in a row under the panels.
    out += "<g class=\"legend\">\n";
    double x = 70;
    const double y = 415;
    for (std::size_t s = 0; s < series.size(); ++s) {
        const std::string_view colour = plot_colours[s % std::size(plot_colours)];
        out += "<line x1=\"" + svg_number(x) + "\" y1=\"" + svg_number(y) + "\" x2=\"" + svg_number(x + 28) +
               "\" y2=\"" + svg_number(y) + "\" stroke=\"" + std::string(colour) + "\" stroke-width=\"2\"/>\n";
        out += svg_marker(s, x + 14, y, colour) + "\n";
        out += "<text x=\"" + svg_number(x + 34) + "\" y=\"" + svg_number(y + 4) + "\">" +
               xml_escape(series[s].method) + "</text>\n";
        x += 60 + 7.0 * static_cast<double>(series[s].method.size());
    }
    out += "<text x=\"" + svg_number(x) + "\" y=\"" + svg_number(y + 4) +
           "\" fill=\"#606060\">bars: Wilson 95 % interval</text>\n";
    out += "</g>\n</svg>\n";
    return out;
}

}  // namespace qsafe::eval
