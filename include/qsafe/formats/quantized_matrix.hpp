#pragma once
// QuantizedMatrix<Scheme>: the storage of one weight matrix (rows = outputs, cols = inputs) under a scheme.
// Plain data with documented invariants; quantizers fill it, kernels read it, and nothing here computes
// products. Element (r, c) with c in group g = c / group_size dequantizes to
//     w = scale(r, g) * level(r, g, code(r, c))      (+ the fp16 outlier value if (r, c) is an outlier)
// where level() is the codebook's value of a code: q - zero (asymmetric grid), q - 2^(bits-1) (symmetric
// grid), or a table / learned entry.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/aligned_buffer.hpp"
#include "qsafe/core/error.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/outlier_storage.hpp"
#include "qsafe/formats/packed_codes.hpp"
#include "qsafe/policy/scheme.hpp"

namespace qsafe {

template <QuantScheme S>
struct QuantizedMatrix {
    using scheme_type = S;
    using scale_format = typename S::scale_format;
    using scale_type = typename scale_format::storage_type;
    static constexpr int bits = S::bits;
    static constexpr int levels = S::levels;

    std::size_t rows = 0;
    std::size_t cols = 0;
    std::size_t padded_cols = 0;     // cols rounded up to a multiple of 16
    std::size_t group_size = 0;      // S::group_size, or padded_cols when per channel
    std::size_t groups_per_row = 0;  // ceil(cols / group_size)
    std::size_t row_bytes = 0;       // packed code bytes per row

    aligned_vector<std::uint8_t> codes;  // rows * row_bytes, layout in formats/packed_codes.hpp
    aligned_vector<scale_type> scales;   // rows * groups_per_row
    aligned_vector<std::uint8_t> zeros;  // rows * groups_per_row, asymmetric grids only
    std::vector<fp16_t> codebook;        // learned codebooks: levels entries (per tensor) or one set per group
    OutlierColumnStore outlier_columns;  // OutlierColumns policy only
    SparseOutlierStore sparse_outliers;  // SparseOutliers policy only

    /// Sizes every buffer for a rows x cols matrix; contents zeroed.
    static QuantizedMatrix allocate(std::size_t rows, std::size_t cols) {
        if (rows == 0 || cols == 0) throw shape_error("QuantizedMatrix: empty matrix (" + std::to_string(rows) + "x" + std::to_string(cols) + ")");
        QuantizedMatrix m;
        m.rows = rows;
        m.cols = cols;
        m.padded_cols = round_up(cols, codes_per_unit);
        m.group_size = S::per_channel ? m.padded_cols : S::group_size;
        m.groups_per_row = (cols + m.group_size - 1) / m.group_size;
        m.row_bytes = packed_row_bytes(m.padded_cols, bits);
        m.codes.assign(rows * m.row_bytes, 0);
        m.scales.assign(rows * m.groups_per_row, scale_type{});
        if constexpr (S::asymmetric) m.zeros.assign(rows * m.groups_per_row, 0);
        if constexpr (S::outlier_kind == OutlierKind::sparse) m.sparse_outliers.row_ptr.assign(rows + 1, 0);
        if constexpr (S::learned) {
            const std::size_t sets = codebook_sets(rows, m.groups_per_row);
            m.codebook.assign(sets * static_cast<std::size_t>(levels), fp16_t{});
        }
        return m;
    }

    static constexpr std::size_t codebook_sets(std::size_t rows, std::size_t groups_per_row) noexcept {
        if constexpr (S::learned) {
            if constexpr (detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group)
                return rows * groups_per_row;
            else
                return 1;
        } else {
            return 0;
        }
    }

    const std::uint8_t* row_codes(std::size_t r) const noexcept { return codes.data() + r * row_bytes; }
    std::uint8_t* row_codes(std::size_t r) noexcept { return codes.data() + r * row_bytes; }

    float scale(std::size_t r, std::size_t g) const noexcept {
        return scale_format::load(scales[r * groups_per_row + g]);
    }
    int zero_point(std::size_t r, std::size_t g) const noexcept {
        if constexpr (S::asymmetric) return zeros[r * groups_per_row + g];
        else return 0;
    }
    /// The codebook entries used by group (r, g): levels floats (learned codebooks only).
    const fp16_t* codebook_for(std::size_t r, std::size_t g) const noexcept {
        if constexpr (detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group)
            return codebook.data() + (r * groups_per_row + g) * static_cast<std::size_t>(levels);
        else
            return codebook.data();
    }

    /// The value a code stands for in group (r, g), before the group scale.
    float level(std::size_t r, std::size_t g, unsigned code) const noexcept {
        if constexpr (S::uniform) {
            if constexpr (S::asymmetric) return static_cast<float>(static_cast<int>(code) - zero_point(r, g));
            else return static_cast<float>(static_cast<int>(code) - levels / 2);
        } else if constexpr (S::table) {
            return S::codebook::values[code];
        } else {
            return to_float(codebook_for(r, g)[code]);
        }
    }

    /// The code that decodes to exactly 0.0 in group (r, g).
    unsigned zero_code(std::size_t r, std::size_t g) const noexcept {
        if constexpr (S::uniform) {
            if constexpr (S::asymmetric) return static_cast<unsigned>(zero_point(r, g));
            else return static_cast<unsigned>(levels / 2);
        } else if constexpr (S::table) {
            constexpr int z = detail::table_zero_code<typename S::codebook>();
            static_assert(z >= 0 || S::outlier_kind == OutlierKind::none,
                          "qsafe outliers need a codebook that contains 0.0 exactly");
            return z < 0 ? 0u : static_cast<unsigned>(z);
        } else {
            const fp16_t* book = codebook_for(r, g);
            for (unsigned i = 0; i < static_cast<unsigned>(levels); ++i)
                if (to_float(book[i]) == 0.0f) return i;
            return 0;
        }
    }

    /// Bytes of every stored array: packed codes, scales, zero points, codebooks and outliers.
    std::size_t storage_bytes() const noexcept {
        return codes.size() + scales.size() * sizeof(scale_type) + zeros.size() + codebook.size() * sizeof(fp16_t) +
               outlier_columns.bytes() + sparse_outliers.bytes();
    }
    double bits_per_weight() const noexcept {
        return 8.0 * static_cast<double>(storage_bytes()) / static_cast<double>(rows * cols);
    }

    /// Dequantizes row r into out[0, cols).
    void dequantize_row(std::size_t r, std::span<float> out) const noexcept {
        std::uint8_t unit_codes[codes_per_unit];
        for (std::size_t u = 0; u * codes_per_unit < cols; ++u) {
            unpack_unit(row_codes(r), padded_cols, bits, u, unit_codes);
            for (std::size_t j = 0; j < codes_per_unit; ++j) {
                const std::size_t c = u * codes_per_unit + j;
                if (c >= cols) break;
                const std::size_t g = c / group_size;
                out[c] = scale(r, g) * level(r, g, unit_codes[j]);
            }
        }
        if constexpr (S::outlier_kind == OutlierKind::columns) {
            const std::size_t k = outlier_columns.count();
            for (std::size_t i = 0; i < k; ++i)
                out[outlier_columns.columns[i]] += to_float(outlier_columns.values[r * k + i]);
        }
        if constexpr (S::outlier_kind == OutlierKind::sparse) {
            for (std::uint32_t e = sparse_outliers.row_ptr[r]; e < sparse_outliers.row_ptr[r + 1]; ++e)
                out[sparse_outliers.col[e]] += to_float(sparse_outliers.value[e]);
        }
    }

    RowMatrixF dequantize() const {
        RowMatrixF w(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
        for (std::size_t r = 0; r < rows; ++r) dequantize_row(r, {w.data() + r * cols, cols});
        return w;
    }

    friend bool operator==(const QuantizedMatrix&, const QuantizedMatrix&) = default;
};

}  // namespace qsafe
