#pragma once
// Reconstruction error of a quantized matrix against its fp32 original.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "qsafe/core/error.hpp"
#include "qsafe/core/matrix_view.hpp"

namespace qsafe {

struct ErrorMetrics {
    double mse = 0.0;          // mean squared error
    double rmse = 0.0;
    double sqnr_db = 0.0;      // 10 log10(signal power / noise power); +inf when exact
    double max_abs_error = 0.0;
};

inline ErrorMetrics error_metrics(ConstMatrixView reference, ConstMatrixView approx) {
    if (reference.rows != approx.rows || reference.cols != approx.cols)
        throw shape_error("error_metrics: shapes differ");
    double noise = 0.0, signal = 0.0, max_abs = 0.0;
    for (std::size_t r = 0; r < reference.rows; ++r) {
        for (std::size_t c = 0; c < reference.cols; ++c) {
            const double ref = reference(r, c);
            const double d = ref - static_cast<double>(approx(r, c));
            noise += d * d;
            signal += ref * ref;
            max_abs = std::max(max_abs, std::abs(d));
        }
    }
    const double n = static_cast<double>(reference.rows * reference.cols);
    ErrorMetrics m;
    m.mse = n > 0 ? noise / n : 0.0;
    m.rmse = std::sqrt(m.mse);
    m.sqnr_db = noise == 0.0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(signal / noise);
    m.max_abs_error = max_abs;
    return m;
}

}  // namespace qsafe
