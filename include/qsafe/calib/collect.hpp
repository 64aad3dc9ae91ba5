#pragma once
// Running the full-precision model over calibration samples and recording every linear layer's input
// statistics (calibration_stats.hpp). One forward pass per sample; the logits are not needed except to
// feed the output layer's statistics, which are taken at every `output_stride`-th position only (the
// output product is the largest of the model, and its input statistics converge with far fewer tokens).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qsafe/calib/calibration_stats.hpp"
#include "qsafe/model/decoder.hpp"

namespace qsafe {

struct CollectOptions {
    std::size_t output_stride = 16;
    /// Called after each sample with (samples done, samples total).
    std::function<void(std::size_t, std::size_t)> progress = {};
};

inline CalibrationStats collect_calibration_stats(LlamaModel& model, const std::vector<std::vector<std::int32_t>>& samples,
                                                  const CollectOptions& opt = {}) {
    CalibrationStats stats;
    std::string last_site;
    const void* last_data = nullptr;
    model.set_linear_observer([&](const std::string& tensor, ConstMatrixView x) {
        const std::string site = input_site(tensor);
        // q/k/v (and gate/up) are observed one after the other on the same activations: count them once.
        if (site == last_site && x.data == last_data) return;
        last_site = site;
        last_data = x.data;
        auto it = stats.sites.find(site);
        if (it == stats.sites.end()) it = stats.sites.emplace(site, LinearInputStats(x.cols)).first;
        it->second.add(x);
    });
    struct ObserverReset {
        LlamaModel& m;
        ~ObserverReset() { m.set_linear_observer({}); }
    } reset{model};

    const std::size_t stride = opt.output_stride == 0 ? 1 : opt.output_stride;
    for (std::size_t i = 0; i < samples.size(); ++i) {
        const auto& tokens = samples[i];
        if (tokens.empty()) continue;
        KvCache cache = model.new_cache();
        std::vector<TokenSlot> slots(tokens.size());
        for (std::size_t t = 0; t < tokens.size(); ++t) slots[t] = {&cache, tokens[t], (t + 1) % stride == 0};
        last_site.clear();
        last_data = nullptr;
        model.forward(slots);
        if (opt.progress) opt.progress(i + 1, samples.size());
    }
    for (auto& [site, s] : stats.sites) s.finalize();
    return stats;
}

}  // namespace qsafe
