#pragma once
// A training run's record for people: the per-step CSV (loss, learning rate, gradient norm, tokens/s, and
// DPO's rewards and accuracy) and an SVG of the curves.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "qsafe/eval/svg_plot.hpp"
#include "qsafe/train/trainer.hpp"

namespace qsafe::train {

inline std::string training_csv(const std::vector<StepRecord>& history, Objective objective) {
    std::string out = "step,lr,loss,grad_norm,tokens,seconds";
    if (objective == Objective::dpo) out += ",reward_chosen,reward_rejected,reward_margin,accuracy";
    out += "\n";
    char buf[256];
    for (const StepRecord& r : history) {
        std::snprintf(buf, sizeof buf, "%zu,%.6g,%.6f,%.6f,%zu,%.3f", r.step, r.lr, r.loss, r.grad_norm, r.tokens, r.seconds);
        out += buf;
        if (objective == Objective::dpo) {
            std::snprintf(buf, sizeof buf, ",%.6f,%.6f,%.6f,%.4f", r.reward_chosen, r.reward_rejected, r.reward_chosen - r.reward_rejected, r.accuracy);
            out += buf;
        }
        out += "\n";
    }
    return out;
}

namespace detail {
/// One panel: a polyline per series over steps, with a y range padded from the data.
inline std::string curve_panel(double left, double top, double width, double height, const std::string& title,
                               const std::vector<std::pair<std::string, std::vector<double>>>& series, std::size_t steps) {
    using eval::detail::svg_number;
    double lo = INFINITY, hi = -INFINITY;
    for (const auto& [name, ys] : series)
        for (double y : ys)
            if (std::isfinite(y)) lo = std::min(lo, y), hi = std::max(hi, y);
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
    const double pad = 0.05 * (hi - lo);
    lo -= pad, hi += pad;
    auto x_of = [&](std::size_t i) { return left + width * (steps > 1 ? static_cast<double>(i) / static_cast<double>(steps - 1) : 0.5); };
    auto y_of = [&](double y) { return top + height * (1.0 - (y - lo) / (hi - lo)); };
    static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
    std::string out = "<g class=\"panel\">\n<text x=\"" + svg_number(left + width / 2) + "\" y=\"" + svg_number(top - 10) +
                      "\" text-anchor=\"middle\" font-size=\"14\">" + eval::xml_escape(title) + "</text>\n";
    out += "<rect x=\"" + svg_number(left) + "\" y=\"" + svg_number(top) + "\" width=\"" + svg_number(width) + "\" height=\"" + svg_number(height) +
           "\" fill=\"none\" stroke=\"#888\"/>\n";
    for (int t = 0; t <= 4; ++t) {
        const double y = lo + (hi - lo) * t / 4.0;
        char label[32];
        std::snprintf(label, sizeof label, "%.3g", y);
        out += "<text x=\"" + svg_number(left - 6) + "\" y=\"" + svg_number(y_of(y) + 4) + "\" text-anchor=\"end\" font-size=\"11\">" + label + "</text>\n";
    }
    out += "<text x=\"" + svg_number(left) + "\" y=\"" + svg_number(top + height + 16) + "\" font-size=\"11\">1</text>\n";
    out += "<text x=\"" + svg_number(left + width) + "\" y=\"" + svg_number(top + height + 16) + "\" text-anchor=\"end\" font-size=\"11\">step " +
           std::to_string(steps) + "</text>\n";
    for (std::size_t s = 0; s < series.size(); ++s) {
        std::string points;
        for (std::size_t i = 0; i < series[s].second.size(); ++i)
            if (std::isfinite(series[s].second[i])) points += svg_number(x_of(i)) + "," + svg_number(y_of(series[s].second[i])) + " ";
        out += "<polyline fill=\"none\" stroke=\"" + std::string(colours[s % 4]) + "\" stroke-width=\"1.5\" points=\"" + points + "\"/>\n";
        out += "<text x=\"" + svg_number(left + width - 4) + "\" y=\"" + svg_number(top + 16 + 14 * static_cast<double>(s)) +
               "\" text-anchor=\"end\" font-size=\"11\" fill=\"" + colours[s % 4] + "\">" + eval::xml_escape(series[s].first) + "</text>\n";
    }
    return out + "</g>\n";
}
}  // namespace detail

/// Loss and learning rate (SFT); loss, rewards and accuracy (DPO).
inline std::string training_curves_svg(const std::vector<StepRecord>& history, Objective objective, const std::string& title) {
    std::vector<double> loss, lr, chosen, rejected, accuracy;
    for (const auto& r : history) {
        loss.push_back(r.loss);
        lr.push_back(r.lr);
        chosen.push_back(r.reward_chosen);
        rejected.push_back(r.reward_rejected);
        accuracy.push_back(r.accuracy);
    }
    const double width = 900, height = 320;
    std::string out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + eval::detail::svg_number(width) + "\" height=\"" + eval::detail::svg_number(height) +
                      "\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    out += "<text x=\"" + eval::detail::svg_number(width / 2) + "\" y=\"22\" text-anchor=\"middle\" font-size=\"16\">" + eval::xml_escape(title) + "</text>\n";
    const std::size_t n = history.size();
    out += detail::curve_panel(70, 60, 340, 220, objective == Objective::sft ? "masked token loss" : "DPO loss", {{"loss", loss}}, n);
    if (objective == Objective::sft)
        out += detail::curve_panel(520, 60, 340, 220, "learning rate", {{"lr", lr}}, n);
    else
        out += detail::curve_panel(520, 60, 340, 220, "rewards and accuracy",
                                   {{"reward chosen", chosen}, {"reward rejected", rejected}, {"accuracy", accuracy}}, n);
    return out + "</svg>\n";
}

}  // namespace qsafe::train
