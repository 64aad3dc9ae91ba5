#pragma once
// Storage of the weights that bypass the low-bit grid. Their positions in the packed codes hold the code
// for 0.0, so a kernel adds these fp16 values on top of the quantized product exactly.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "qsafe/core/aligned_buffer.hpp"
#include "qsafe/core/half.hpp"

namespace qsafe {

/// K whole input columns in fp16: values is rows x K row-major; columns sorted ascending.
struct OutlierColumnStore {
    std::vector<std::uint32_t> columns;
    aligned_vector<fp16_t> values;

    std::size_t count() const noexcept { return columns.size(); }
    std::size_t bytes() const noexcept {
        return columns.size() * sizeof(std::uint32_t) + values.size() * sizeof(fp16_t);
    }
    friend bool operator==(const OutlierColumnStore&, const OutlierColumnStore&) = default;
};

/// Individual weights in CSR form: row r owns entries [row_ptr[r], row_ptr[r+1]); 16-bit column indices.
struct SparseOutlierStore {
    std::vector<std::uint32_t> row_ptr;
    std::vector<std::uint16_t> col;
    std::vector<fp16_t> value;

    std::size_t count() const noexcept { return col.size(); }
    std::size_t bytes() const noexcept {
        return row_ptr.size() * sizeof(std::uint32_t) + col.size() * sizeof(std::uint16_t) +
               value.size() * sizeof(fp16_t);
    }
    friend bool operator==(const SparseOutlierStore&, const SparseOutlierStore&) = default;
};

}  // namespace qsafe
