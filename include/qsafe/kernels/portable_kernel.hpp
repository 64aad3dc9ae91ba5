#pragma once
// Portable kernel for any xsimd Arch, any scheme and any group size: each 16-code unit is unpacked with the
// scalar format code, turned into 16 float levels, and dotted with the activations using batch<float, Arch>
// fma; a row's decoded unit is reused for every activation vector of the batch. Used where the x86 chunk
// kernels do not apply (no AVX2, or groups that are not whole 32-code chunks).
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <xsimd/xsimd.hpp>

#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"

namespace qsafe::kernels {

/// Activations zero-padded to padded_cols, natural order: batch x padded_cols.
struct PaddedActivations {
    std::size_t batch = 0;
    std::size_t padded_cols = 0;
    aligned_vector<float> x;
    const float* row(std::size_t n) const noexcept { return x.data() + n * padded_cols; }
};

template <class Arch>
void pad_activations(ConstMatrixView x, std::size_t padded_cols, PaddedActivations& out) {
    out.batch = x.rows;
    out.padded_cols = padded_cols;
    out.x.assign(out.batch * padded_cols, 0.0f);
    for (std::size_t n = 0; n < x.rows; ++n) std::copy(x.row(n), x.row(n) + x.cols, out.x.data() + n * padded_cols);
}

/// Rows [r_begin, r_end) times every activation vector, without outliers.
template <class Arch, QuantScheme S>
void portable_rows(const QuantizedMatrix<S>& w, std::size_t r_begin, std::size_t r_end, const PaddedActivations& a,
                   MatrixView y) noexcept {
    using fb = xsimd::batch<float, Arch>;
    static_assert(codes_per_unit % fb::size == 0, "portable kernel: batch width must divide 16");
    constexpr std::size_t batch_tile = 16;
    const std::size_t units = w.padded_cols / codes_per_unit;
    const std::size_t units_per_group = S::per_channel ? units : w.group_size / codes_per_unit;
    alignas(64) float values[codes_per_unit];
    alignas(64) float table[S::uniform ? 1 : S::levels];
    std::uint8_t codes[codes_per_unit];
    if constexpr (S::table) std::copy(S::codebook::values.begin(), S::codebook::values.end(), table);
    if constexpr (S::learned && qsafe::detail::codebook_scope<typename S::codebook>() == CodebookScope::per_tensor)
        for (int i = 0; i < S::levels; ++i) table[i] = to_float(w.codebook[static_cast<std::size_t>(i)]);

    for (std::size_t r = r_begin; r < r_end; ++r) {
        for (std::size_t n0 = 0; n0 < a.batch; n0 += batch_tile) {
            const std::size_t nb = std::min(batch_tile, a.batch - n0);
            fb acc[batch_tile], part[batch_tile];
            for (std::size_t n = 0; n < nb; ++n) acc[n] = fb(0.0f);
            for (std::size_t g = 0; g < w.groups_per_row; ++g) {
                const std::size_t u_begin = g * units_per_group;
                const std::size_t u_end = std::min(u_begin + units_per_group, units);
                float offset = 0.0f;
                if constexpr (S::uniform) offset = static_cast<float>(S::asymmetric ? w.zero_point(r, g) : S::levels / 2);
                if constexpr (S::learned && qsafe::detail::codebook_scope<typename S::codebook>() == CodebookScope::per_group) {
                    const fp16_t* book = w.codebook_for(r, g);
                    for (int i = 0; i < S::levels; ++i) table[i] = to_float(book[i]);
                }
                for (std::size_t n = 0; n < nb; ++n) part[n] = fb(0.0f);
                for (std::size_t u = u_begin; u < u_end; ++u) {
                    unpack_unit(w.row_codes(r), w.padded_cols, S::bits, u, codes);
                    for (std::size_t j = 0; j < codes_per_unit; ++j) {
                        if constexpr (S::uniform) values[j] = static_cast<float>(codes[j]) - offset;
                        else values[j] = table[codes[j]];
                    }
                    for (std::size_t n = 0; n < nb; ++n) {
                        const float* x = a.row(n0 + n) + u * codes_per_unit;
                        fb sum = part[n];
                        for (std::size_t k = 0; k < codes_per_unit; k += fb::size)
                            sum = xsimd::fma(fb::load_aligned(values + k), fb::load_unaligned(x + k), sum);
                        part[n] = sum;
                    }
                }
                const fb s(w.scale(r, g));
                for (std::size_t n = 0; n < nb; ++n) acc[n] = xsimd::fma(s, part[n], acc[n]);
            }
            for (std::size_t n = 0; n < nb; ++n) y(n0 + n, r) = xsimd::hadd(acc[n]);
        }
    }
}

}  // namespace qsafe::kernels
