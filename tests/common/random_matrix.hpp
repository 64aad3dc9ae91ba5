#pragma once
// Deterministic test matrices: Gaussian, heavy-tailed (Student t, 3 degrees of freedom) and tiny shapes.
#include <cmath>
#include <cstdint>
#include <random>

#include "qsafe/core/matrix_view.hpp"

namespace test_data {

inline qsafe::RowMatrixF gaussian(std::size_t rows, std::size_t cols, std::uint64_t seed, float stddev = 1.0f) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, stddev);
    qsafe::RowMatrixF m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
    return m;
}

inline qsafe::RowMatrixF heavy_tailed(std::size_t rows, std::size_t cols, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::student_t_distribution<float> dist(3.0f);
    qsafe::RowMatrixF m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
    return m;
}

/// RMS of the difference divided by the RMS of the reference.
inline double relative_rmse(const qsafe::RowMatrixF& ref, const qsafe::RowMatrixF& approx) {
    return std::sqrt((ref - approx).squaredNorm() / ref.squaredNorm());
}

}  // namespace test_data
