#pragma once
// QuantizedLinear: a linear layer's weights under some scheme chosen at run time. The model and the tools
// hold layers through this interface; each implementation owns typed storage (QuantizedMatrix<S>, or dense
// fp32) and forwards to the typed kernels, so the virtual call happens once per matrix product.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/core/fp32_blas.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/formats/matrix_serialization.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/kernels/isa_dispatch.hpp"
#include "qsafe/kernels/matmul.hpp"

namespace qsafe {

/// How the model's quantized layers feed activations to the kernels (see kernels/matmul_options.hpp):
/// fp32 (the default) is exact; int16 quantizes activations per block of 32 for the integer kernels (~2e-5
/// relative error per product on Gaussian inputs); int8 does it as llama.cpp does (faster, ~5e-3).
/// One process-wide setting, read at every product.
inline std::atomic<ActivationPrecision>& activation_precision_setting() noexcept {
    static std::atomic<ActivationPrecision> setting{ActivationPrecision::fp32};
    return setting;
}
inline void set_activation_precision(ActivationPrecision p) noexcept { activation_precision_setting().store(p); }
inline ActivationPrecision activation_precision() noexcept { return activation_precision_setting().load(); }

class QuantizedLinear {
  public:
    virtual ~QuantizedLinear() = default;

    /// The registered scheme name this layer was built with (e.g. "int4-g128-asym", "fp32").
    virtual const std::string& scheme_name() const noexcept = 0;
    virtual std::size_t rows() const noexcept = 0;  // outputs
    virtual std::size_t cols() const noexcept = 0;  // inputs
    /// Bytes of every stored array (codes, scales, zero points, codebooks, outliers).
    virtual std::size_t storage_bytes() const noexcept = 0;
    double bits_per_weight() const noexcept {
        return 8.0 * static_cast<double>(storage_bytes()) / static_cast<double>(rows() * cols());
    }

    /// y = W x (x: cols entries, y: rows entries).
    virtual void gemv(std::span<const float> x, std::span<float> y) const = 0;
    /// Y = X W^T, one activation vector per row (X: batch x cols, Y: batch x rows).
    virtual void gemm(ConstMatrixView x, MatrixView y) const = 0;
    /// The weights as reconstructed by the kernels (rows x cols).
    virtual RowMatrixF dequantize() const = 0;
    /// The typed storage as bytes; the registry entry of scheme_name() loads them back.
    virtual std::vector<std::byte> serialize() const = 0;
};

/// A layer stored as QuantizedMatrix<S>. Its products run the program's dispatched kernel for S at the
/// active instruction-set level when one is registered (kernels/isa_dispatch.hpp), else the kernels of the
/// including translation unit's flags.
template <QuantScheme S>
class QuantizedLinearOf final : public QuantizedLinear {
  public:
    QuantizedLinearOf(QuantizedMatrix<S> matrix, std::string scheme_name)
        : matrix_(std::move(matrix)), name_(std::move(scheme_name)), kernel_(dispatched_kernel<S>()) {}

    const QuantizedMatrix<S>& matrix() const noexcept { return matrix_; }
    const std::string& scheme_name() const noexcept override { return name_; }
    std::size_t rows() const noexcept override { return matrix_.rows; }
    std::size_t cols() const noexcept override { return matrix_.cols; }
    std::size_t storage_bytes() const noexcept override { return matrix_.storage_bytes(); }
    void gemv(std::span<const float> x, std::span<float> y) const override {
        if (!kernel_) return qsafe::gemv(matrix_, x, y, MatmulOptions{activation_precision()});
        detail::check_quantized_matrix(matrix_, "qsafe::gemv");
        if (x.size() != matrix_.cols || y.size() != matrix_.rows)
            throw shape_error("qsafe::gemv: W is " + detail::dims(matrix_.rows, matrix_.cols) + ", x has " +
                              std::to_string(x.size()) + " entries, y has " + std::to_string(y.size()));
        kernel_->gemm(&matrix_, ConstMatrixView(x.data(), 1, matrix_.cols), MatrixView(y.data(), 1, matrix_.rows),
                      MatmulOptions{activation_precision()});
    }
    void gemm(ConstMatrixView x, MatrixView y) const override {
        if (!kernel_) return qsafe::gemm(matrix_, x, y, MatmulOptions{activation_precision()});
        detail::check_gemm_shapes(matrix_, x, y, "qsafe::gemm");
        kernel_->gemm(&matrix_, x, y, MatmulOptions{activation_precision()});
    }
    RowMatrixF dequantize() const override { return matrix_.dequantize(); }
    std::vector<std::byte> serialize() const override { return qsafe::serialize(matrix_); }
    /// The dispatched kernel the products run, or nullptr (the including unit's own kernels).
    const SchemeKernel* dispatched() const noexcept { return kernel_; }

  private:
    QuantizedMatrix<S> matrix_;
    std::string name_;
    const SchemeKernel* kernel_ = nullptr;
};

/// An unquantized fp32 layer (the full-precision reference), multiplied with Eigen (GEMV) and
/// core/fp32_blas.hpp (GEMM).
class DenseLinear final : public QuantizedLinear {
  public:
    explicit DenseLinear(RowMatrixF weights, std::string scheme_name = "fp32")
        : w_(std::move(weights)), name_(std::move(scheme_name)) {}

    const RowMatrixF& weights() const noexcept { return w_; }
    /// For training (finite-difference checks, full-parameter updates): the next product uses the new values.
    RowMatrixF& mutable_weights() noexcept { return w_; }
    const std::string& scheme_name() const noexcept override { return name_; }
    std::size_t rows() const noexcept override { return static_cast<std::size_t>(w_.rows()); }
    std::size_t cols() const noexcept override { return static_cast<std::size_t>(w_.cols()); }
    std::size_t storage_bytes() const noexcept override { return static_cast<std::size_t>(w_.size()) * sizeof(float); }

    void gemv(std::span<const float> x, std::span<float> y) const override {
        check(x.size(), y.size(), 1);
        const Eigen::Map<const VectorF> xv(x.data(), w_.cols());
        // Rows split statically over threads: each output is one dot product, as in a serial run.
        // Fixed 64-row blocks: each block is the same Eigen product whatever the thread count, compiled for
        // the active instruction-set level where the program dispatches (core/fp32_blas.hpp).
        const auto gemv_rows = fp32_blas::active_fp32().kernels.gemv_rows;
        parallel_for(block_count(), [&](std::size_t b) {
            const auto [begin, n] = block(b);
            gemv_rows(w_.data() + begin * w_.cols(), static_cast<std::size_t>(w_.cols()), static_cast<std::size_t>(n),
                      static_cast<std::size_t>(w_.cols()), x.data(), y.data() + begin);
        });
    }
    void gemm(ConstMatrixView x, MatrixView y) const override {
        if (x.cols != cols() || y.cols != rows() || x.rows != y.rows)
            throw shape_error("fp32 gemm: X is " + std::to_string(x.rows) + "x" + std::to_string(x.cols) + ", W is " +
                              std::to_string(rows()) + "x" + std::to_string(cols()) + ", Y is " + std::to_string(y.rows) +
                              "x" + std::to_string(y.cols));
        fp32_blas::gemm_nt(x, w_.data(), rows(), cols(), y);
    }
    RowMatrixF dequantize() const override { return w_; }
    std::vector<std::byte> serialize() const override {
        ByteWriter out;
        out.put(static_cast<std::uint64_t>(w_.rows()));
        out.put(static_cast<std::uint64_t>(w_.cols()));
        out.put_array(std::span<const float>(w_.data(), static_cast<std::size_t>(w_.size())));
        return out.take();
    }
    static std::unique_ptr<DenseLinear> deserialize(std::span<const std::byte> bytes, std::string name = "fp32") {
        ByteReader in(bytes, "fp32 matrix");
        const auto rows = in.get<std::uint64_t>("rows");
        const auto cols = in.get<std::uint64_t>("cols");
        std::vector<float> values;
        in.get_array(values, "values");
        if (rows == 0 || cols == 0 || values.size() != rows * cols)
            in.fail("shape " + std::to_string(rows) + "x" + std::to_string(cols) + " does not match " +
                    std::to_string(values.size()) + " values");
        RowMatrixF w = Eigen::Map<const RowMatrixF>(values.data(), static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
        return std::make_unique<DenseLinear>(std::move(w), std::move(name));
    }

  private:
    static constexpr std::size_t block_rows = 64;
    std::size_t block_count() const noexcept { return (rows() + block_rows - 1) / block_rows; }
    std::pair<Eigen::Index, Eigen::Index> block(std::size_t b) const noexcept {
        const std::size_t begin = b * block_rows;
        return {static_cast<Eigen::Index>(begin), static_cast<Eigen::Index>(std::min(block_rows, rows() - begin))};
    }
    void check(std::size_t nx, std::size_t ny, std::size_t) const {
        if (nx != cols() || ny != rows())
            throw shape_error("fp32 gemv: x has " + std::to_string(nx) + " entries, y " + std::to_string(ny) + ", W is " +
                              std::to_string(rows()) + "x" + std::to_string(cols()));
    }
    RowMatrixF w_;
    std::string name_;
};

}  // namespace qsafe
