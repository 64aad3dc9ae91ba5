#pragma once
// Byte serialization of QuantizedMatrix<S>: "QSQM", format version, the scheme's description (checked on
// load), the shape, then every stored array length-prefixed. Loading validates every size and index
// against the shape, so a corrupt buffer raises format_error instead of producing garbage.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qsafe/core/byte_buffer.hpp"
#include "qsafe/formats/quantized_matrix.hpp"

namespace qsafe {

inline constexpr std::uint32_t quantized_matrix_magic = 0x4D515351;  // "QSQM" little-endian
inline constexpr std::uint32_t quantized_matrix_version = 1;

template <QuantScheme S>
std::vector<std::byte> serialize(const QuantizedMatrix<S>& m) {
    ByteWriter out;
    out.put(quantized_matrix_magic);
    out.put(quantized_matrix_version);
    out.put_string(describe_scheme<S>());
    out.put(static_cast<std::uint64_t>(m.rows));
    out.put(static_cast<std::uint64_t>(m.cols));
    out.put_array(m.codes);
    out.put_array(m.scales);
    out.put_array(m.zeros);
    out.put_array(m.codebook);
    out.put_array(m.outlier_columns.columns);
    out.put_array(m.outlier_columns.values);
    out.put_array(m.sparse_outliers.row_ptr);
    out.put_array(m.sparse_outliers.col);
    out.put_array(m.sparse_outliers.value);
    return out.take();
}

template <QuantScheme S>
QuantizedMatrix<S> deserialize_quantized_matrix(std::span<const std::byte> bytes, const std::string& context = "quantized matrix") {
    ByteReader in(bytes, context);
    if (in.get<std::uint32_t>("magic") != quantized_matrix_magic) in.fail("bad magic (not a qsafe quantized matrix)");
    if (const auto v = in.get<std::uint32_t>("version"); v != quantized_matrix_version)
        in.fail("unsupported version " + std::to_string(v));
    const std::string name = in.get_string("scheme");
    if (name != describe_scheme<S>()) in.fail("scheme is '" + name + "', expected '" + describe_scheme<S>() + "'");
    const auto rows = in.get<std::uint64_t>("rows");
    const auto cols = in.get<std::uint64_t>("cols");
    if (rows == 0 || cols == 0 || rows > (1ull << 32) || cols > (1ull << 32) || rows * cols > (1ull << 40))
        in.fail("implausible shape " + std::to_string(rows) + "x" + std::to_string(cols));
    // The codes and scales the shape implies must be in the bytes before anything that size is allocated:
    // a few corrupted shape bytes must not make a 3 kB file ask for gigabytes.
    {
        const std::size_t r = static_cast<std::size_t>(rows), c = static_cast<std::size_t>(cols);
        const std::size_t padded = round_up(c, codes_per_unit);
        const std::size_t groups = (c + (S::per_channel ? padded : S::group_size) - 1) / (S::per_channel ? padded : S::group_size);
        const std::size_t implied = r * packed_row_bytes(padded, S::bits) + r * groups * sizeof(typename S::scale_format::storage_type);
        if (implied > in.remaining())
            in.fail("shape " + std::to_string(rows) + "x" + std::to_string(cols) + " needs " + std::to_string(implied) +
                    " bytes of codes and scales, but only " + std::to_string(in.remaining()) + " bytes follow");
    }
    QuantizedMatrix<S> m = QuantizedMatrix<S>::allocate(static_cast<std::size_t>(rows), static_cast<std::size_t>(cols));
    const auto expect = [&](std::size_t got, std::size_t want, const char* what) {
        if (got != want) in.fail(std::string(what) + ": " + std::to_string(got) + " entries, expected " + std::to_string(want));
    };
    const std::size_t n_codes = m.codes.size(), n_scales = m.scales.size(), n_zeros = m.zeros.size(),
                      n_book = m.codebook.size();
    in.get_array(m.codes, "codes");
    expect(m.codes.size(), n_codes, "codes");
    in.get_array(m.scales, "scales");
    expect(m.scales.size(), n_scales, "scales");
    in.get_array(m.zeros, "zero points");
    expect(m.zeros.size(), n_zeros, "zero points");
    for (auto z : m.zeros)
        if (z >= S::levels) in.fail("zero point " + std::to_string(z) + " out of range");
    in.get_array(m.codebook, "codebook");
    expect(m.codebook.size(), n_book, "codebook");
    in.get_array(m.outlier_columns.columns, "outlier columns");
    in.get_array(m.outlier_columns.values, "outlier column values");
    in.get_array(m.sparse_outliers.row_ptr, "sparse row pointers");
    in.get_array(m.sparse_outliers.col, "sparse columns");
    in.get_array(m.sparse_outliers.value, "sparse values");
    if (in.remaining() != 0) in.fail(std::to_string(in.remaining()) + " trailing bytes");

    // Outlier invariants: sorted in-range columns; a well-formed CSR.
    const auto& oc = m.outlier_columns;
    if constexpr (S::outlier_kind != OutlierKind::columns)
        if (!oc.columns.empty()) in.fail("outlier columns present for a scheme without them");
    for (std::size_t i = 0; i < oc.columns.size(); ++i)
        if (oc.columns[i] >= cols || (i > 0 && oc.columns[i] <= oc.columns[i - 1]))
            in.fail("outlier column index " + std::to_string(oc.columns[i]) + " out of range or unsorted");
    expect(oc.values.size(), oc.columns.size() * m.rows, "outlier column values");
    const auto& sp = m.sparse_outliers;
    if constexpr (S::outlier_kind == OutlierKind::sparse) {
        expect(sp.row_ptr.size(), m.rows + 1, "sparse row pointers");
        if (sp.row_ptr.front() != 0 || sp.row_ptr.back() != sp.col.size()) in.fail("sparse row pointers do not cover the entries");
        for (std::size_t r = 0; r < m.rows; ++r)
            if (sp.row_ptr[r] > sp.row_ptr[r + 1]) in.fail("sparse row pointers decrease at row " + std::to_string(r));
    } else if (!sp.row_ptr.empty() || !sp.col.empty()) {
        in.fail("sparse outliers present for a scheme without them");
    }
    expect(sp.value.size(), sp.col.size(), "sparse values");
    for (auto c : sp.col)
        if (c >= cols) in.fail("sparse column index " + std::to_string(c) + " out of range");

    // Every stored real number must be finite: one NaN scale silently turns a layer's outputs into NaN, and
    // the model then answers nothing instead of failing (a corrupted file must be refused at load).
    for (std::size_t i = 0; i < m.scales.size(); ++i)
        if (!std::isfinite(S::scale_format::load(m.scales[i])))
            in.fail("non-finite scale (" + std::to_string(S::scale_format::load(m.scales[i])) + ") at row " +
                    std::to_string(i / m.groups_per_row) + ", group " + std::to_string(i % m.groups_per_row));
    for (std::size_t i = 0; i < m.codebook.size(); ++i)
        if (!std::isfinite(to_float(m.codebook[i]))) in.fail("non-finite codebook entry " + std::to_string(i));
    for (std::size_t i = 0; i < oc.values.size(); ++i)
        if (!std::isfinite(to_float(oc.values[i])))
            in.fail("non-finite outlier column value at row " + std::to_string(i / oc.columns.size()) + ", column " +
                    std::to_string(oc.columns[i % oc.columns.size()]));  // row-major: rows x columns
    for (std::size_t r = 0; r + 1 < sp.row_ptr.size(); ++r)
        for (std::uint32_t e = sp.row_ptr[r]; e < sp.row_ptr[r + 1]; ++e)
            if (!std::isfinite(to_float(sp.value[e])))
                in.fail("non-finite sparse outlier value at row " + std::to_string(r) + ", column " + std::to_string(sp.col[e]));
    return m;
}

}  // namespace qsafe
