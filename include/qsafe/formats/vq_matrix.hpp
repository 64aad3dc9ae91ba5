#pragma once
// Byte layout of a vector-quantized (codebook) weight matrix. Each row is cut into sub-vectors of `dim`
// consecutive input columns (the last one zero-padded); a sub-vector is the sum of one 256-entry codeword
// from each of `books` additive codebooks, shared by the whole matrix, times a per-row and a per-column
// fp16 scale:
//
//   w(r, c) = row_scale[r] * col_scale[c] * sum_m codebook_m[code(r, c / dim, m)][c % dim]  (+ correction)
//
// A small fraction of positions (those the codebooks fit worst, typically the few very large weights that
// drive an LLM's massive activations) carry an fp16 correction added to the codebook value, stored as CSR
// (u32 row pointers, u16 columns, fp16 values).
//
// Codes are stored in tiles of vq_row_tile rows, interleaved so that the codes of one sub-vector position
// for the tile's 8 rows are 8 consecutive bytes: one load feeds a gather of 8 table entries, one per row
// (kernels/vq_matmul.hpp). The last tile is padded with code 0 rows; the padding is stored and counted.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/aligned_buffer.hpp"
#include "qsafe/core/byte_buffer.hpp"
#include "qsafe/core/error.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/core/matrix_view.hpp"

namespace qsafe {

/// Entries per codebook (8-bit codes).
inline constexpr std::size_t vq_codebook_entries = 256;
/// Rows whose codes are interleaved together (one AVX2 float batch).
inline constexpr std::size_t vq_row_tile = 8;

/// The shape of a VQ format: sub-vector length and number of additive codebooks.
struct VqShape {
    std::size_t dim = 4;
    std::size_t books = 1;
    friend bool operator==(const VqShape&, const VqShape&) = default;
};

namespace detail {
inline std::size_t vq_positions(std::size_t cols, std::size_t dim) noexcept { return (cols + dim - 1) / dim; }
inline std::size_t vq_tiles(std::size_t rows) noexcept { return (rows + vq_row_tile - 1) / vq_row_tile; }
}  // namespace detail

/// The number of corrected positions for a fraction of a rows x cols matrix.
inline std::size_t vq_outlier_count(std::size_t rows, std::size_t cols, double fraction) noexcept {
    return static_cast<std::size_t>(fraction * static_cast<double>(rows * cols) + 0.5);
}

/// Bytes of every stored array of a rows x cols matrix in this VQ shape: codes (row tiles padded),
/// fp16 row and column scales, fp16 codebooks, and the corrections of `outlier_fraction` of the weights.
inline std::size_t vq_storage_bytes(std::size_t rows, std::size_t cols, VqShape shape, double outlier_fraction) noexcept {
    const std::size_t codes = detail::vq_tiles(rows) * vq_row_tile * detail::vq_positions(cols, shape.dim) * shape.books;
    const std::size_t scales = (rows + cols) * sizeof(fp16_t);
    const std::size_t books = shape.books * vq_codebook_entries * shape.dim * sizeof(fp16_t);
    const std::size_t outliers = (rows + 1) * sizeof(std::uint32_t) +
                                 vq_outlier_count(rows, cols, outlier_fraction) * (sizeof(std::uint16_t) + sizeof(fp16_t));
    return codes + scales + books + outliers;
}

struct VqMatrix {
    std::size_t rows = 0;
    std::size_t cols = 0;
    VqShape shape;
    std::vector<fp16_t> row_scales;  // rows
    std::vector<fp16_t> col_scales;  // cols
    std::vector<fp16_t> codebooks;   // books x 256 x dim, entry-major
    aligned_vector<std::uint8_t> codes;  // tiles x positions x books x vq_row_tile
    std::vector<std::uint32_t> outlier_row_ptr;  // rows + 1
    std::vector<std::uint16_t> outlier_col;
    std::vector<fp16_t> outlier_value;           // added to the codebook reconstruction

    std::size_t positions() const noexcept { return detail::vq_positions(cols, shape.dim); }
    std::size_t padded_cols() const noexcept { return positions() * shape.dim; }
    std::size_t tiles() const noexcept { return detail::vq_tiles(rows); }

    static VqMatrix allocate(std::size_t rows, std::size_t cols, VqShape shape) {
        VqMatrix m;
        m.rows = rows;
        m.cols = cols;
        m.shape = shape;
        m.row_scales.assign(rows, to_fp16(1.0f));
        m.col_scales.assign(cols, to_fp16(1.0f));
        m.codebooks.assign(shape.books * vq_codebook_entries * shape.dim, fp16_t{});
        m.codes.assign(m.tiles() * vq_row_tile * m.positions() * shape.books, 0);
        m.outlier_row_ptr.assign(rows + 1, 0);
        return m;
    }

    std::size_t code_index(std::size_t r, std::size_t position, std::size_t book) const noexcept {
        const std::size_t tile = r / vq_row_tile;
        return ((tile * positions() + position) * shape.books + book) * vq_row_tile + r % vq_row_tile;
    }
    std::uint8_t code(std::size_t r, std::size_t position, std::size_t book) const noexcept {
        return codes[code_index(r, position, book)];
    }
    void set_code(std::size_t r, std::size_t position, std::size_t book, std::uint8_t c) noexcept {
        codes[code_index(r, position, book)] = c;
    }
    const fp16_t* codeword(std::size_t book, std::size_t entry) const noexcept {
        return codebooks.data() + (book * vq_codebook_entries + entry) * shape.dim;
    }

    std::size_t storage_bytes() const noexcept {
        return codes.size() + (row_scales.size() + col_scales.size() + codebooks.size() + outlier_value.size()) * sizeof(fp16_t) +
               outlier_row_ptr.size() * sizeof(std::uint32_t) + outlier_col.size() * sizeof(std::uint16_t);
    }
    double bits_per_weight() const noexcept {
        return 8.0 * static_cast<double>(storage_bytes()) / static_cast<double>(rows * cols);
    }

    /// The weights the kernels multiply with: the codeword sum in fp32 (books in order), times the column
    /// scale, times the row scale, plus the correction where there is one.
    RowMatrixF dequantize() const {
        RowMatrixF w(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
        for (std::size_t r = 0; r < rows; ++r) {
            const float rs = to_float(row_scales[r]);
            for (std::size_t c = 0; c < cols; ++c) {
                const std::size_t j = c / shape.dim, t = c % shape.dim;
                float v = 0.0f;
                for (std::size_t m = 0; m < shape.books; ++m) v += to_float(codeword(m, code(r, j, m))[t]);
                w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) = rs * (to_float(col_scales[c]) * v);
            }
            for (std::uint32_t e = outlier_row_ptr[r]; e < outlier_row_ptr[r + 1]; ++e)
                w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(outlier_col[e])) += to_float(outlier_value[e]);
        }
        return w;
    }
};

inline constexpr std::uint32_t vq_matrix_magic = 0x51565351;  // "QSVQ" little-endian
inline constexpr std::uint32_t vq_matrix_version = 2;

inline std::vector<std::byte> serialize(const VqMatrix& m) {
    ByteWriter out;
    out.put(vq_matrix_magic);
    out.put(vq_matrix_version);
    out.put(static_cast<std::uint64_t>(m.rows));
    out.put(static_cast<std::uint64_t>(m.cols));
    out.put(static_cast<std::uint32_t>(m.shape.dim));
    out.put(static_cast<std::uint32_t>(m.shape.books));
    out.put_array(m.row_scales);
    out.put_array(m.col_scales);
    out.put_array(m.codebooks);
    out.put_array(m.codes);
    out.put_array(m.outlier_row_ptr);
    out.put_array(m.outlier_col);
    out.put_array(m.outlier_value);
    return out.take();
}

/// Loads a VqMatrix; every size is checked against the shape (format_error naming the array otherwise).
/// When `expected` is given, the stored shape must match it.
inline VqMatrix deserialize_vq_matrix(std::span<const std::byte> bytes, const std::string& context = "vq matrix",
                                      const VqShape* expected = nullptr) {
    ByteReader in(bytes, context);
    if (in.get<std::uint32_t>("magic") != vq_matrix_magic) in.fail("bad magic (not a qsafe VQ matrix)");
    if (const auto v = in.get<std::uint32_t>("version"); v != vq_matrix_version) in.fail("unsupported version " + std::to_string(v));
    const auto rows = in.get<std::uint64_t>("rows");
    const auto cols = in.get<std::uint64_t>("cols");
    if (rows == 0 || cols == 0 || rows > (1ull << 32) || cols > (1ull << 32) || rows * cols > (1ull << 40))
        in.fail("implausible shape " + std::to_string(rows) + "x" + std::to_string(cols));
    const VqShape shape{in.get<std::uint32_t>("dim"), in.get<std::uint32_t>("books")};
    if (shape.dim == 0 || shape.dim > 64 || shape.books == 0 || shape.books > 8)
        in.fail("implausible sub-vector length " + std::to_string(shape.dim) + " or codebook count " + std::to_string(shape.books));
    if (expected && !(shape == *expected))
        in.fail("stored as d=" + std::to_string(shape.dim) + " with " + std::to_string(shape.books) + " codebooks, expected d=" +
                std::to_string(expected->dim) + " with " + std::to_string(expected->books));
    // The arrays the shape implies must be in the bytes before anything that size is allocated: a few corrupted
    // shape bytes must not make a small file ask for gigabytes (rows * cols <= 2^40: no overflow below).
    {
        const std::size_t r = static_cast<std::size_t>(rows), c = static_cast<std::size_t>(cols);
        const std::size_t implied = detail::vq_tiles(r) * vq_row_tile * detail::vq_positions(c, shape.dim) * shape.books +
                                    (r + c) * sizeof(fp16_t) + shape.books * vq_codebook_entries * shape.dim * sizeof(fp16_t) +
                                    (r + 1) * sizeof(std::uint32_t);
        if (implied > in.remaining())
            in.fail("shape " + std::to_string(rows) + "x" + std::to_string(cols) + " needs " + std::to_string(implied) +
                    " bytes of scales, codebooks, codes and outlier row pointers, but only " +
                    std::to_string(in.remaining()) + " bytes follow");
    }
    VqMatrix m = VqMatrix::allocate(static_cast<std::size_t>(rows), static_cast<std::size_t>(cols), shape);
    const auto load = [&](auto& array, const char* what) {
        const std::size_t want = array.size();
        in.get_array(array, what);
        if (array.size() != want)
            in.fail(std::string(what) + ": " + std::to_string(array.size()) + " entries, expected " + std::to_string(want));
    };
    load(m.row_scales, "row scales");
    load(m.col_scales, "column scales");
    load(m.codebooks, "codebooks");
    load(m.codes, "codes");
    load(m.outlier_row_ptr, "outlier row pointers");
    in.get_array(m.outlier_col, "outlier columns");
    in.get_array(m.outlier_value, "outlier values");
    if (m.outlier_row_ptr.front() != 0 || m.outlier_row_ptr.back() != m.outlier_col.size() ||
        m.outlier_value.size() != m.outlier_col.size())
        in.fail("outlier arrays do not match their row pointers");
    for (std::size_t r = 0; r < m.rows; ++r)
        if (m.outlier_row_ptr[r] > m.outlier_row_ptr[r + 1]) in.fail("outlier row pointers decrease at row " + std::to_string(r));
    for (const std::uint16_t c : m.outlier_col)
        if (c >= m.cols) in.fail("outlier column " + std::to_string(c) + " is outside the matrix");
    if (in.remaining() != 0) in.fail(std::to_string(in.remaining()) + " trailing bytes");
    const auto finite = [&](const std::vector<fp16_t>& a, const char* what) {
        for (fp16_t h : a)
            if (!std::isfinite(to_float(h))) in.fail(std::string(what) + " hold a non-finite value");
    };
    finite(m.row_scales, "row scales");
    finite(m.col_scales, "column scales");
    finite(m.codebooks, "codebooks");
    finite(m.outlier_value, "outlier values");
    return m;
}

}  // namespace qsafe
