#pragma once
// Non-owning row-major views over fp32 data, and the Eigen aliases qsafe uses for dense math.
// Weight matrices are rows = outputs, cols = inputs, row-major, as GGUF and safetensors store them.
// Activation batches X are stored one activation vector per row: X is (batch x cols), Y is (batch x rows).
#include <cstddef>
#include <span>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <Eigen/Core>

#include "qsafe/core/error.hpp"

namespace qsafe {

using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using VectorF = Eigen::VectorXf;

/// A read-only rows x cols row-major matrix with a row stride (in elements).
struct ConstMatrixView {
    const float* data = nullptr;
    std::size_t rows = 0;
    std::size_t cols = 0;
    std::size_t stride = 0;  // elements between row starts; >= cols

    ConstMatrixView() = default;
    ConstMatrixView(const float* d, std::size_t r, std::size_t c, std::size_t s = 0)
        : data(d), rows(r), cols(c), stride(s == 0 ? c : s) {}
    ConstMatrixView(const RowMatrixF& m)  // NOLINT(google-explicit-constructor): views are cheap
        : data(m.data()), rows(static_cast<std::size_t>(m.rows())), cols(static_cast<std::size_t>(m.cols())),
          stride(static_cast<std::size_t>(m.cols())) {}

    const float* row(std::size_t r) const noexcept { return data + r * stride; }
    float operator()(std::size_t r, std::size_t c) const noexcept { return data[r * stride + c]; }
    std::span<const float> row_span(std::size_t r) const noexcept { return {row(r), cols}; }
};

/// A writable rows x cols row-major matrix with a row stride (in elements).
struct MatrixView {
    float* data = nullptr;
    std::size_t rows = 0;
    std::size_t cols = 0;
    std::size_t stride = 0;

    MatrixView() = default;
    MatrixView(float* d, std::size_t r, std::size_t c, std::size_t s = 0)
        : data(d), rows(r), cols(c), stride(s == 0 ? c : s) {}
    MatrixView(RowMatrixF& m)  // NOLINT(google-explicit-constructor)
        : data(m.data()), rows(static_cast<std::size_t>(m.rows())), cols(static_cast<std::size_t>(m.cols())),
          stride(static_cast<std::size_t>(m.cols())) {}

    float* row(std::size_t r) const noexcept { return data + r * stride; }
    float& operator()(std::size_t r, std::size_t c) const noexcept { return data[r * stride + c]; }
    operator ConstMatrixView() const noexcept { return {data, rows, cols, stride}; }  // NOLINT
};

}  // namespace qsafe
