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

/// While alive, adds the input of every linear layer the model runs to `stats` (one entry per input site).
/// Sequential calibration (ptq/sequential.hpp) uses it on one block at a time.
class CalibrationRecorder {
  public:
    CalibrationRecorder(LlamaModel& model, CalibrationStats& stats) : model_(model) {
        model_.set_linear_observer([this, &stats](const std::string& tensor, ConstMatrixView x) {
            const std::string site = input_site(tensor);
            // q/k/v (and gate/up) are observed one after the other on the same activations: count them once.
            if (site == last_site_ && x.data == last_data_) return;
            last_site_ = site;
            last_data_ = x.data;
            auto it = stats.sites.find(site);
            if (it == stats.sites.end()) it = stats.sites.emplace(site, LinearInputStats(x.cols)).first;
            it->second.add(x);
        });
    }
    ~CalibrationRecorder() { model_.set_linear_observer({}); }
    CalibrationRecorder(const CalibrationRecorder&) = delete;
    CalibrationRecorder& operator=(const CalibrationRecorder&) = delete;

    /// Call before each forward run (a new run may reuse the previous run's buffers).
    void new_run() {
        last_site_.clear();
        last_data_ = nullptr;
    }

  private:
    LlamaModel& model_;
    std::string last_site_;
    const void* last_data_ = nullptr;
};

inline CalibrationStats collect_calibration_stats(LlamaModel& model, const std::vector<std::vector<std::int32_t>>& samples,
                                                  const CollectOptions& opt = {}) {
    CalibrationStats stats;
    CalibrationRecorder recorder(model, stats);
    const std::size_t stride = opt.output_stride == 0 ? 1 : opt.output_stride;
    for (std::size_t i = 0; i < samples.size(); ++i) {
        const auto& tokens = samples[i];
        if (tokens.empty()) continue;
        KvCache cache = model.new_cache();
        std::vector<TokenSlot> slots(tokens.size());
        for (std::size_t t = 0; t < tokens.size(); ++t) slots[t] = {&cache, tokens[t], (t + 1) % stride == 0};
        recorder.new_run();
        model.forward(slots);
        if (opt.progress) opt.progress(i + 1, samples.size());
    }
    for (auto& [site, s] : stats.sites) s.finalize();
    return stats;
}

}  // namespace qsafe
