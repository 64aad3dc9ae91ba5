#pragma once
// Vector-quantized layers behind the QuantizedLinear interface, and their registration by name:
//   vq2-d4    sub-vectors of 4 columns, one 256-entry fp16 codebook per matrix   (8 bits / 4 weights)
//   vq2-d8x2  sub-vectors of 8 columns, two additive 256-entry codebooks        (16 bits / 8 weights)
// both with fp16 row and column scales and fp16 corrections of the worst-fitted 0.5 % of the weights;
// bits per weight = 2 + the scales, codebooks and corrections (all counted).
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "qsafe/formats/vq_matrix.hpp"
#include "qsafe/kernels/vq_matmul.hpp"
#include "qsafe/quant/vector_quant.hpp"
#include "qsafe/registry/quantized_linear.hpp"
#include "qsafe/registry/scheme_registry.hpp"

namespace qsafe {

/// A layer stored as a VqMatrix; products by table lookup (gemv, small batches) or decoded row tiles.
class VectorQuantizedLinear final : public QuantizedLinear {
  public:
    VectorQuantizedLinear(VqMatrix matrix, std::string scheme_name)
        : matrix_(std::move(matrix)), name_(std::move(scheme_name)), dispatched_(isa_kernel_registry().best_vq(active_isa()).first) {}

    const VqMatrix& matrix() const noexcept { return matrix_; }
    const std::string& scheme_name() const noexcept override { return name_; }
    std::size_t rows() const noexcept override { return matrix_.rows; }
    std::size_t cols() const noexcept override { return matrix_.cols; }
    std::size_t storage_bytes() const noexcept override { return matrix_.storage_bytes(); }
    void gemv(std::span<const float> x, std::span<float> y) const override {
        if (!dispatched_) return vq_gemv(matrix_, x, y);
        kernels::check_vq_matrix(matrix_, "qsafe::vq_gemv");
        if (x.size() != matrix_.cols || y.size() != matrix_.rows)
            throw shape_error("qsafe::vq_gemv: W is " + std::to_string(matrix_.rows) + "x" + std::to_string(matrix_.cols) +
                              ", x has " + std::to_string(x.size()) + " entries, y has " + std::to_string(y.size()));
        dispatched_(matrix_, ConstMatrixView(x.data(), 1, matrix_.cols), MatrixView(y.data(), 1, matrix_.rows), VqPath::automatic);
    }
    void gemm(ConstMatrixView x, MatrixView y) const override {
        if (!dispatched_) return vq_gemm(matrix_, x, y);
        kernels::check_vq_matrix(matrix_, "qsafe::vq_gemm");
        if (x.cols != matrix_.cols || y.cols != matrix_.rows || x.rows != y.rows)
            throw shape_error("qsafe::vq_gemm: X is " + std::to_string(x.rows) + "x" + std::to_string(x.cols) + ", W is " +
                              std::to_string(matrix_.rows) + "x" + std::to_string(matrix_.cols) + ", Y is " +
                              std::to_string(y.rows) + "x" + std::to_string(y.cols));
        dispatched_(matrix_, x, y, VqPath::automatic);
    }
    RowMatrixF dequantize() const override { return matrix_.dequantize(); }
    std::vector<std::byte> serialize() const override { return qsafe::serialize(matrix_); }

    static std::unique_ptr<VectorQuantizedLinear> deserialize(std::span<const std::byte> bytes, std::string name, VqShape shape) {
        return std::make_unique<VectorQuantizedLinear>(deserialize_vq_matrix(bytes, "scheme " + name, &shape), std::move(name));
    }

  private:
    VqMatrix matrix_;
    std::string name_;
    VqGemmFn dispatched_ = nullptr;  // the program's dispatched VQ product (kernels/isa_dispatch.hpp), if any
};

/// Registers a VQ scheme under `name` with the given quantizer configuration.
inline void register_vector_scheme(std::string name, std::string description, VqConfig config,
                                   SchemeRegistry& registry = scheme_registry()) {
    SchemeEntry e;
    e.name = std::move(name);
    e.description = std::move(description);
    e.bits = static_cast<int>(8 * config.shape.books / config.shape.dim);
    e.storage_bytes = [config](std::size_t rows, std::size_t cols, std::size_t, double) {
        return vq_storage_bytes(rows, cols, config.shape, config.outlier_fraction);
    };
    e.quantize_rtn = [config](ConstMatrixView w, const QuantizeOptions& opt, const std::string& full_name) -> std::unique_ptr<QuantizedLinear> {
        return std::make_unique<VectorQuantizedLinear>(quantize_vq(w, config, opt), full_name);
    };
    e.deserialize = [shape = config.shape](std::span<const std::byte> bytes, const std::string& full_name) -> std::unique_ptr<QuantizedLinear> {
        return VectorQuantizedLinear::deserialize(bytes, full_name, shape);
    };
    registry.add(std::move(e));
}

inline void register_vector_schemes(SchemeRegistry& registry = scheme_registry()) {
    register_vector_scheme("vq2-d4", "vq d4 1x256 fp16 codebook, fp16 row+column scales, 0.5% fp16 corrections", VqConfig{VqShape{4, 1}}, registry);
    register_vector_scheme("vq2-d8x2", "vq d8 2x256 additive fp16 codebooks, fp16 row+column scales, 0.5% fp16 corrections", VqConfig{VqShape{8, 2}},
                           registry);
}

}  // namespace qsafe
