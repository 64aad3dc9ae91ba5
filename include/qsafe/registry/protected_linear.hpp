#pragma once
// ProtectedLinear: any quantized layer plus a sparse set of weights kept exactly in fp16 (safety-critical
// or outlier weights). It is how weights are protected under schemes that have no sparse-outlier policy of
// their own (vector quantization, uniform schemes without a registered "+sparse" form, "+ocol" schemes).
//
// The base layer is quantized with the protected positions set to 0, so those weights do not stretch its
// scales or codebooks. Products run the base kernel and then add, per protected weight, (fp16 value - base
// reconstruction) x activation: the protected weights contribute their fp16 values, whatever the base
// stored there. dequantize() is exact (the fp16 values are written over the base's reconstruction).
//
// Stored bytes: the base layer's, plus a CSR (u32 row pointers, u16 columns, fp16 values), all counted in
// storage_bytes(). Serialized under the scheme name "<base scheme>+protect<percent>" (e.g.
// "vq2-d4+protect0.2%", SchemeSpec's protected_fraction); deserialize_by_name() loads the base by the rest
// of the name.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qsafe/core/byte_buffer.hpp"
#include "qsafe/core/error.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/core/parallel.hpp"
#include "qsafe/formats/outlier_storage.hpp"
#include "qsafe/registry/quantized_linear.hpp"

namespace qsafe {

class ProtectedLinear final : public QuantizedLinear {
  public:
    /// `base` holds the layer's other weights; `store` the protected ones (CSR over base's shape).
    /// Throws format_error when the CSR is malformed (the context names the layer).
    ProtectedLinear(std::unique_ptr<QuantizedLinear> base, SparseOutlierStore store, std::string scheme_name,
                    const std::string& context = "protected layer")
        : base_(std::move(base)), store_(std::move(store)), name_(std::move(scheme_name)) {
        validate(context);
        const RowMatrixF reconstructed = base_->dequantize();
        delta_.resize(store_.count());
        for (std::size_t r = 0; r < rows(); ++r)
            for (std::uint32_t e = store_.row_ptr[r]; e < store_.row_ptr[r + 1]; ++e)
                delta_[e] = to_float(store_.value[e]) - reconstructed(static_cast<Eigen::Index>(r), store_.col[e]);
    }

    const QuantizedLinear& base() const noexcept { return *base_; }
    /// Hands the base layer over, to wrap it again with more protected weights (safety/safety_patch.hpp);
    /// this layer is unusable afterwards.
    std::unique_ptr<QuantizedLinear> release_base() && noexcept { return std::move(base_); }
    const SparseOutlierStore& protected_store() const noexcept { return store_; }
    std::size_t protected_count() const noexcept { return store_.count(); }

    const std::string& scheme_name() const noexcept override { return name_; }
    std::size_t rows() const noexcept override { return base_->rows(); }
    std::size_t cols() const noexcept override { return base_->cols(); }
    std::size_t storage_bytes() const noexcept override { return base_->storage_bytes() + store_.bytes(); }

    void gemv(std::span<const float> x, std::span<float> y) const override {
        base_->gemv(x, y);
        for (std::size_t r = 0; r < rows(); ++r) y[r] += correction(r, x.data());
    }
    void gemm(ConstMatrixView x, MatrixView y) const override {
        base_->gemm(x, y);
        // Each output gets its whole correction from one thread, in a fixed order: results do not depend on
        // the thread count.
        parallel_for_ranges(rows(), 256, [&](std::size_t begin, std::size_t end) {
            for (std::size_t r = begin; r < end; ++r)
                for (std::size_t n = 0; n < x.rows; ++n) y(n, r) += correction(r, x.row(n));
        });
    }
    RowMatrixF dequantize() const override {
        RowMatrixF w = base_->dequantize();
        for (std::size_t r = 0; r < rows(); ++r)
            for (std::uint32_t e = store_.row_ptr[r]; e < store_.row_ptr[r + 1]; ++e)
                w(static_cast<Eigen::Index>(r), store_.col[e]) = to_float(store_.value[e]);
        return w;
    }
    std::vector<std::byte> serialize() const override {
        ByteWriter out;
        out.put(magic);
        out.put(version);
        out.put_array(base_->serialize());
        out.put_array(store_.row_ptr);
        out.put_array(store_.col);
        out.put_array(store_.value);
        return out.take();
    }

    /// Loads bytes written by serialize(); `load_base` turns the base layer's bytes back into a layer.
    static std::unique_ptr<ProtectedLinear> deserialize(
        std::span<const std::byte> bytes, const std::string& scheme_name,
        const std::function<std::unique_ptr<QuantizedLinear>(std::span<const std::byte>)>& load_base) {
        const std::string context = "protected layer (scheme " + scheme_name + ")";
        ByteReader in(bytes, context);
        if (in.get<std::uint32_t>("magic") != magic) in.fail("bad magic (not a qsafe protected layer)");
        if (const auto v = in.get<std::uint32_t>("version"); v != version) in.fail("unsupported version " + std::to_string(v));
        std::vector<std::byte> base_bytes;
        in.get_array(base_bytes, "base layer");
        SparseOutlierStore store;
        in.get_array(store.row_ptr, "protected row pointers");
        in.get_array(store.col, "protected columns");
        in.get_array(store.value, "protected values");
        if (in.remaining() != 0) in.fail(std::to_string(in.remaining()) + " trailing bytes");
        return std::make_unique<ProtectedLinear>(load_base(base_bytes), std::move(store), scheme_name, context);
    }

  private:
    static constexpr std::uint32_t magic = 0x4C505351;  // "QSPL" little-endian
    static constexpr std::uint32_t version = 1;

    float correction(std::size_t r, const float* x) const noexcept {
        float sum = 0.0f;
        for (std::uint32_t e = store_.row_ptr[r]; e < store_.row_ptr[r + 1]; ++e) sum += delta_[e] * x[store_.col[e]];
        return sum;
    }

    void validate(const std::string& context) const {
        auto fail = [&](const std::string& why) { throw format_error(context + ": " + why); };
        if (!base_) fail("no base layer");
        const auto& s = store_;
        if (s.row_ptr.size() != rows() + 1)
            fail(std::to_string(s.row_ptr.size()) + " row pointers for " + std::to_string(rows()) + " rows");
        if (s.row_ptr.front() != 0 || s.row_ptr.back() != s.col.size()) fail("row pointers do not cover the entries");
        if (s.value.size() != s.col.size())
            fail(std::to_string(s.value.size()) + " values for " + std::to_string(s.col.size()) + " columns");
        // All pointers first: a later row's decrease (e.g. [0, 100, 2] over 2 entries) would otherwise let an
        // earlier row's entries run past the arrays.
        for (std::size_t r = 0; r < rows(); ++r)
            if (s.row_ptr[r] > s.row_ptr[r + 1]) fail("row pointers decrease at row " + std::to_string(r));
        for (std::size_t r = 0; r < rows(); ++r) {
            for (std::uint32_t e = s.row_ptr[r]; e < s.row_ptr[r + 1]; ++e) {
                if (s.col[e] >= cols() || (e > s.row_ptr[r] && s.col[e] <= s.col[e - 1]))
                    fail("row " + std::to_string(r) + ": column " + std::to_string(s.col[e]) +
                         " out of range or not increasing");
                if (!std::isfinite(to_float(s.value[e])))
                    fail("row " + std::to_string(r) + ", column " + std::to_string(s.col[e]) + ": value is not finite");
            }
        }
    }

    std::unique_ptr<QuantizedLinear> base_;
    SparseOutlierStore store_;
    std::vector<float> delta_;  // fp16 value - base reconstruction, per entry: the products' correction
    std::string name_;
};

/// The CSR of the weights at `indices` (row-major flat, r * cols + c) of `weights`, rounded to fp16.
/// Throws config_error naming the tensor for an index outside it or a matrix too wide for 16-bit columns.
inline SparseOutlierStore protected_store(ConstMatrixView weights, std::vector<std::size_t> indices, const std::string& tensor) {
    if (weights.cols > 65536)
        throw config_error("protected weights of '" + tensor + "': " + std::to_string(weights.cols) +
                           " columns do not fit 16-bit column indices");
    std::sort(indices.begin(), indices.end());
    indices.erase(std::unique(indices.begin(), indices.end()), indices.end());
    const std::size_t total = weights.rows * weights.cols;
    SparseOutlierStore s;
    s.row_ptr.assign(weights.rows + 1, 0);
    for (const std::size_t i : indices) {
        if (i >= total)
            throw config_error("protected weight index " + std::to_string(i) + " is outside tensor '" + tensor + "' (" +
                               std::to_string(total) + " weights)");
        const std::size_t r = i / weights.cols, c = i % weights.cols;
        s.col.push_back(static_cast<std::uint16_t>(c));
        s.value.push_back(to_fp16(weights(r, c)));
        ++s.row_ptr[r + 1];
    }
    for (std::size_t r = 0; r < weights.rows; ++r) s.row_ptr[r + 1] += s.row_ptr[r];
    return s;
}

}  // namespace qsafe
