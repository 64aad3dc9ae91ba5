#pragma once
// Options shared by every quantizer. Spans are borrowed for the duration of the call only.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace qsafe {

struct QuantizeOptions {
    /// Search, per group, a clipping ratio in [clip_min_ratio, 1] that minimises the (importance-weighted)
    /// squared error instead of using the group's full range (as llama.cpp's and AWQ's clip search do).
    bool clip_search = false;
    int clip_steps = 20;
    float clip_min_ratio = 0.5f;

    /// Per input column weights of the squared error (llama.cpp's imatrix idea: mean x_j^2 from calibration).
    std::span<const float> importance = {};
    /// Per input column scores for choosing outlier columns (e.g. calibration max|x_j| or ||x_j||);
    /// when empty, the weight matrix's column L2 norms are used.
    std::span<const float> column_scores = {};
    /// Per weight scores (rows * cols, row-major) for choosing sparse outliers, higher = keep in fp16
    /// (e.g. a safety-criticality score); when empty, |w| is used.
    std::span<const float> weight_scores = {};
    /// Run-time overrides of the outlier policy's default amounts.
    std::optional<std::size_t> outlier_columns = {};
    std::optional<double> outlier_fraction = {};

    /// Learned codebooks: seed of the deterministic k-means initialisation, and Lloyd iterations.
    std::uint64_t seed = 0x5eedULL;
    int kmeans_iterations = 25;

    /// Named in error messages (e.g. "blk.3.attn_q.weight").
    std::string tensor_name = {};
};

}  // namespace qsafe
