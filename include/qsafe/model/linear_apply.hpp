#pragma once
// How the decoder multiplies a batch of activations by one linear layer. Shared by inference (model/decoder)
// and training (train/), so a trained model's forward pass runs exactly the products the evaluator runs.
#include <algorithm>
#include <cstddef>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/registry/quantized_linear.hpp"

namespace qsafe {

/// out = in · Wᵀ with the layer's kernels: GEMV for one row, GEMM in chunks of up to 64 rows.
inline void apply_linear(const QuantizedLinear& layer, ConstMatrixView in, MatrixView out) {
    const std::size_t rows = in.rows;
    if (rows == 1 && in.stride == in.cols && out.stride == out.cols) {
        layer.gemv({in.data, layer.cols()}, {out.data, layer.rows()});
        return;
    }
    // The quantized kernels take up to 64 activation rows at a time; dense fp32 layers take the whole
    // batch in one product (far faster for prompt prefill, calibration and training).
    const std::size_t chunk = dynamic_cast<const DenseLinear*>(&layer) ? std::max<std::size_t>(rows, 1) : 64;
    for (std::size_t r = 0; r < rows; r += chunk) {
        const std::size_t m = std::min(chunk, rows - r);
        layer.gemm(ConstMatrixView(in.data + r * in.stride, m, in.cols, in.stride), MatrixView(out.data + r * out.stride, m, out.cols, out.stride));
    }
}

}  // namespace qsafe
