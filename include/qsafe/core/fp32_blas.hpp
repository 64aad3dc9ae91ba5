#pragma once
// The two fp32 matrix products of the full-precision path: a layer's outputs for a batch of tokens
// (Y = X·Wᵀ, the reference model's prefill and calibration) and the Gram matrix of calibration inputs
// (H += XᵀX), and the fp32 layers' matrix-vector product. Eigen computes them by default — compiled with
// the program's own flags, or, in a program with dispatched kernels (kernels/isa_dispatch.hpp), for the best
// instruction-set level the CPU runs. When QSAFE_WITH_CBLAS is defined — the qsafe::openblas target defines
// it and links OpenBLAS — the two matrix products go to CBLAS instead: OpenBLAS's kernels run about 1.5×
// Eigen's on an AVX2 machine (docs/calibrated-quantization.md), and calibration is made of little else —
// unless OpenBLAS picked kernels below the CPU's level (choose_blas below). Decided once, at the first product.
//
// Both back ends split a product into fixed tiles (outputs × tokens for a layer, column blocks for the Gram
// matrix) that qsafe's own threads take one at a time; each tile is one single-threaded product (OpenBLAS's
// OpenMP build runs single-threaded inside a parallel region), computed the same way whichever thread
// takes it, so results do not depend on the thread count. (OpenBLAS's own threading would be ~4 % faster
// here, but its results change with the thread count.)
#include <algorithm>
#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <Eigen/Core>

#if defined(QSAFE_WITH_CBLAS)
#include <cblas.h>
#endif

#include "qsafe/core/cpu_features.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/core/parallel.hpp"

namespace qsafe::fp32_blas {

namespace detail {

inline constexpr std::size_t cblas_output_tile = 96;  // OpenBLAS: ~95 % of its own threading's rate (Zen 3)
inline constexpr std::size_t eigen_output_tile = 64;
inline constexpr std::size_t token_tile = 256;
inline constexpr std::size_t gram_column_block = 96;

/// y (tokens × n, row stride ldy) = x (tokens × k, ldx) · wᵀ (w: n × k, ldw), on the calling thread.
inline void eigen_gemm_nt_tile(const float* x, std::size_t ldx, const float* w, std::size_t ldw, float* y, std::size_t ldy,
                               std::size_t tokens, std::size_t n, std::size_t k) {
    using Stride = Eigen::OuterStride<>;
    const Eigen::Map<const RowMatrixF, 0, Stride> xm(x, static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(k),
                                                     Stride(static_cast<Eigen::Index>(ldx)));
    const Eigen::Map<const RowMatrixF, 0, Stride> wm(w, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(k),
                                                     Stride(static_cast<Eigen::Index>(ldw)));
    Eigen::Map<RowMatrixF, 0, Stride> ym(y, static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(n),
                                         Stride(static_cast<Eigen::Index>(ldy)));
    ym.noalias() = xm * wm.transpose();
}

/// y (tokens × n, ldy) = x (tokens × k, ldx) · w (w: k × n, ldw; row-major, not transposed), on the calling
/// thread: the input gradient of a linear layer (dX = dY · W) without a transposed copy of W.
inline void eigen_gemm_nn_tile(const float* x, std::size_t ldx, const float* w, std::size_t ldw, float* y, std::size_t ldy,
                               std::size_t tokens, std::size_t n, std::size_t k) {
    using Stride = Eigen::OuterStride<>;
    const Eigen::Map<const RowMatrixF, 0, Stride> xm(x, static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(k),
                                                     Stride(static_cast<Eigen::Index>(ldx)));
    const Eigen::Map<const RowMatrixF, 0, Stride> wm(w, static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(n),
                                                     Stride(static_cast<Eigen::Index>(ldw)));
    Eigen::Map<RowMatrixF, 0, Stride> ym(y, static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(n),
                                         Stride(static_cast<Eigen::Index>(ldy)));
    ym.noalias() = xm * wm;
}

/// h(c0.., c0..c0+width) += x(:, c0..)ᵀ x(:, c0..c0+width) for column-major h (n × n) and row-major x
/// (tokens × n, row stride ldx): one block column of the lower triangle, its diagonal block in full.
inline void eigen_gram_block_column(const float* x, std::size_t ldx, std::size_t tokens, float* h, std::size_t n, std::size_t c0,
                                    std::size_t width) {
    const std::size_t height = n - c0;
    using Stride = Eigen::OuterStride<>;
    const Eigen::Map<const RowMatrixF, 0, Stride> xm(x, static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(n),
                                                     Stride(static_cast<Eigen::Index>(ldx)));
    Eigen::Map<Eigen::MatrixXf> hm(h, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n));
    const auto c0i = static_cast<Eigen::Index>(c0), hi = static_cast<Eigen::Index>(height), wi = static_cast<Eigen::Index>(width);
    hm.block(c0i, c0i, hi, wi).noalias() += xm.rightCols(hi).transpose() * xm.middleCols(c0i, wi);
}

/// y (n) = w (n × k, row stride ldw) · x (k), on the calling thread.
inline void eigen_gemv_rows(const float* w, std::size_t ldw, std::size_t n, std::size_t k, const float* x, float* y) {
    using Stride = Eigen::OuterStride<>;
    const Eigen::Map<const RowMatrixF, 0, Stride> wm(w, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(k),
                                                     Stride(static_cast<Eigen::Index>(ldw)));
    const Eigen::Map<const VectorF> xv(x, static_cast<Eigen::Index>(k));
    Eigen::Map<VectorF> yv(y, static_cast<Eigen::Index>(n));
    yv.noalias() = wm * xv;
}

#if defined(QSAFE_WITH_CBLAS)
inline void cblas_gemm_nt_tile(const float* x, std::size_t ldx, const float* w, std::size_t ldw, float* y, std::size_t ldy,
                               std::size_t tokens, std::size_t n, std::size_t k) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(tokens), static_cast<int>(n), static_cast<int>(k), 1.0f,
                x, static_cast<int>(ldx), w, static_cast<int>(ldw), 0.0f, y, static_cast<int>(ldy));
}
inline void cblas_gemm_nn_tile(const float* x, std::size_t ldx, const float* w, std::size_t ldw, float* y, std::size_t ldy,
                               std::size_t tokens, std::size_t n, std::size_t k) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(tokens), static_cast<int>(n), static_cast<int>(k), 1.0f,
                x, static_cast<int>(ldx), w, static_cast<int>(ldw), 0.0f, y, static_cast<int>(ldy));
}
inline void cblas_gram_block_column(const float* x, std::size_t ldx, std::size_t tokens, float* h, std::size_t n, std::size_t c0,
                                    std::size_t width) {
    // Row-major tokens × n is column-major n × tokens (= A): the block is A(c0.., :) · A(c0..c0+width, :)ᵀ.
    const std::size_t height = n - c0;
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, static_cast<int>(height), static_cast<int>(width), static_cast<int>(tokens),
                1.0f, x + c0, static_cast<int>(ldx), x + c0, static_cast<int>(ldx), 1.0f, h + c0 * n + c0, static_cast<int>(n));
}
#endif

}  // namespace detail

/// One implementation of the three single-threaded fp32 building blocks. The Eigen set of the program's own
/// flags is always there; dispatched programs add Eigen sets compiled for higher instruction-set levels
/// (kernels/isa_dispatch.hpp), and CBLAS replaces the two matrix products when OpenBLAS runs kernels as
/// good as the CPU allows.
struct Fp32Kernels {
    void (*gemm_nt_tile)(const float* x, std::size_t ldx, const float* w, std::size_t ldw, float* y, std::size_t ldy,
                         std::size_t tokens, std::size_t n, std::size_t k) = nullptr;
    void (*gram_block_column)(const float* x, std::size_t ldx, std::size_t tokens, float* h, std::size_t n, std::size_t c0,
                              std::size_t width) = nullptr;
    void (*gemv_rows)(const float* w, std::size_t ldw, std::size_t n, std::size_t k, const float* x, float* y) = nullptr;
    std::size_t output_tile = detail::eigen_output_tile;
    void (*gemm_nn_tile)(const float* x, std::size_t ldx, const float* w, std::size_t ldw, float* y, std::size_t ldy,
                         std::size_t tokens, std::size_t n, std::size_t k) = nullptr;
};

inline Fp32Kernels own_eigen_kernels() noexcept {
    return {&detail::eigen_gemm_nt_tile, &detail::eigen_gram_block_column, &detail::eigen_gemv_rows, detail::eigen_output_tile,
            &detail::eigen_gemm_nn_tile};
}

/// The Eigen sets registered per instruction-set level (empty slots: not compiled into this program).
inline std::array<Fp32Kernels, all_isa_levels.size()>& isa_eigen_kernels() noexcept {
    static std::array<Fp32Kernels, all_isa_levels.size()> sets{};
    return sets;
}
inline void register_isa_eigen_kernels(IsaLevel level, const Fp32Kernels& kernels) noexcept {
    isa_eigen_kernels()[static_cast<std::size_t>(level)] = kernels;
}

/// The instruction-set level of an OpenBLAS DYNAMIC_ARCH core (openblas_get_corename()): Haswell and Zen
/// run AVX2 kernels, SkylakeX, Cooperlake and SapphireRapids AVX-512 ones; older cores (Prescott, Nehalem,
/// Sandybridge, ...) less than AVX2. Unknown names give nothing (trusted as they are).
inline std::optional<IsaLevel> openblas_core_isa(std::string_view core) noexcept {
    for (std::string_view c : {"Haswell", "Zen", "Excavator", "Steamroller"})
        if (core == c) return IsaLevel::avx2;
    for (std::string_view c : {"SkylakeX", "Cooperlake", "SapphireRapids"})
        if (core == c) return IsaLevel::avx512bw;
    for (std::string_view c : {"Katmai", "Coppermine", "Northwood", "Prescott", "Banias", "Atom", "Core2", "Penryn", "Dunnington",
                               "Nehalem", "Athlon", "Opteron", "Opteron(SSE3)", "Barcelona", "Nano", "Sandybridge", "Bulldozer",
                               "Piledriver", "Bobcat"})
        if (core == c) return IsaLevel::portable;
    return std::nullopt;
}

/// Whether the products go to OpenBLAS, and why.
struct BlasChoice {
    bool use_cblas = false;
    std::string reason;
    std::string suggested_coretype;  // OPENBLAS_CORETYPE that would match the CPU ("" if OpenBLAS is fine)
};

/// The decision, from OpenBLAS's core name and the CPU (testable without either). OpenBLAS 0.3.21 (Debian 12)
/// does not know newer CPUs and falls back to its Prescott (SSE3) kernels on them: every fp32 product then
/// runs at a fraction of the machine's rate. When OpenBLAS's core is below what the CPU runs (AVX-512 counts
/// as AVX-512BW: the products need nothing more), the Eigen products of the best registered level run
/// instead; OPENBLAS_CORETYPE=<suggested_coretype> (read by OpenBLAS when it loads) fixes OpenBLAS itself.
inline BlasChoice choose_blas(std::string_view openblas_core, const CpuFeatures& cpu, IsaLevel active, IsaLevel best_eigen_level) {
    // Messages appended piece by piece: `"x" + std::string(...)` trips GCC 12's false -Wrestrict (bug
    // 105329) in users' -Werror builds.
    BlasChoice c;
    const IsaLevel wanted = std::min(active, IsaLevel::avx512bw);
    c.reason = "OpenBLAS core ";
    c.reason += openblas_core;
    const auto core_level = openblas_core_isa(openblas_core);
    if (!core_level) {
        c.use_cblas = true;
        c.reason += " (not known to qsafe: trusted)";
        return c;
    }
    if (*core_level >= wanted) {
        c.use_cblas = true;
        c.reason += " matches the CPU (";
        c.reason += isa_name(wanted);
        c.reason += ')';
        return c;
    }
    c.suggested_coretype = wanted >= IsaLevel::avx512bw ? (cpu.avx512bf16 ? "Cooperlake" : "SkylakeX")
                                                        : (cpu.vendor == "AuthenticAMD" ? "Zen" : "Haswell");
    c.reason += " is below this CPU's level (";
    c.reason += isa_name(wanted);
    c.use_cblas = best_eigen_level <= *core_level;  // nothing better compiled in: OpenBLAS's SSE kernels still beat portable Eigen
    if (c.use_cblas) {
        c.reason += ") and no better Eigen products are compiled in; OPENBLAS_CORETYPE=";
        c.reason += c.suggested_coretype;
        c.reason += " fixes it";
    } else {
        c.reason += "): Eigen ";
        c.reason += isa_name(best_eigen_level);
        c.reason += " products instead (OPENBLAS_CORETYPE=";
        c.reason += c.suggested_coretype;
        c.reason += " makes OpenBLAS use the CPU)";
    }
    return c;
}

namespace detail {
struct ActiveFp32 {
    Fp32Kernels kernels;
    bool cblas = false;
    std::string description;
};

inline IsaLevel best_registered_eigen_level(IsaLevel at_most) noexcept {
    IsaLevel best = IsaLevel::portable;
    for (IsaLevel level : all_isa_levels)
        if (level <= at_most && isa_eigen_kernels()[static_cast<std::size_t>(level)].gemm_nt_tile) best = level;
    return best;
}

inline ActiveFp32 choose_fp32_kernels() {
    // The registered Eigen set of the highest level the process runs, unless the program's own flags compile
    // for more (a library user's -march=native build).
    const IsaLevel active = active_isa();
    const IsaLevel registered_level = best_registered_eigen_level(active);
    const Fp32Kernels& registered = isa_eigen_kernels()[static_cast<std::size_t>(registered_level)];
    const IsaLevel own_level = std::min(own_flags_isa(), active);
    const bool use_registered = registered.gemm_nt_tile != nullptr && registered_level >= own_level;
    const IsaLevel eigen_level = use_registered ? registered_level : own_level;
    ActiveFp32 out{use_registered ? registered : own_eigen_kernels(), false, "eigen ("};
    out.description += isa_name(eigen_level);
    out.description += use_registered ? ")" : ", the program's own flags)";
#if defined(QSAFE_WITH_CBLAS)
    const BlasChoice choice = choose_blas(openblas_get_corename(), cpu_features(), active, eigen_level);
    if (choice.use_cblas) {
        out.kernels.gemm_nt_tile = &cblas_gemm_nt_tile;
        out.kernels.gemm_nn_tile = &cblas_gemm_nn_tile;
        out.kernels.gram_block_column = &cblas_gram_block_column;
        out.kernels.output_tile = cblas_output_tile;
        out.cblas = true;
        out.description = "cblas: ";
        out.description += choice.reason;
    } else {
        out.description += ": ";
        out.description += choice.reason;
    }
#endif
    return out;
}
}  // namespace detail

/// The fp32 building blocks this process uses, chosen at the first product (after the program registered
/// its dispatched kernels).
inline const detail::ActiveFp32& active_fp32() {
    static const detail::ActiveFp32 active = detail::choose_fp32_kernels();
    return active;
}

/// Which implementation the products use and why ("cblas: OpenBLAS core Haswell matches ...",
/// "eigen (avx512bw): OpenBLAS core Prescott runs ..."), for logs and reports.
inline const std::string& backend_description() { return active_fp32().description; }
/// "cblas" or "eigen".
inline const char* backend_name() { return active_fp32().cblas ? "cblas" : "eigen"; }

/// y = x · wᵀ: x is tokens × k, w is n × k (a layer's weights, rows = outputs), y is tokens × n; all
/// row-major with the given row strides.
inline void gemm_nt(ConstMatrixView x, const float* w, std::size_t n, std::size_t w_stride, MatrixView y) {
    const std::size_t tokens = x.rows, k = x.cols;
    if (tokens == 0 || n == 0) return;
    const Fp32Kernels& kernels = active_fp32().kernels;
    const std::size_t output_tile = kernels.output_tile;
    const std::size_t out_tiles = (n + output_tile - 1) / output_tile;
    const std::size_t token_tiles = (tokens + detail::token_tile - 1) / detail::token_tile;
    parallel_for_dynamic(out_tiles * token_tiles, [&](std::size_t tile) {
        const std::size_t o0 = tile / token_tiles * output_tile, on = std::min(output_tile, n - o0);
        const std::size_t t0 = tile % token_tiles * detail::token_tile, tn = std::min(detail::token_tile, tokens - t0);
        kernels.gemm_nt_tile(x.data + t0 * x.stride, x.stride, w + o0 * w_stride, w_stride, y.data + t0 * y.stride + o0, y.stride,
                             tn, on, k);
    });
}

/// y = x · w: x is tokens × k, w is k × n (row-major, e.g. a layer's weights when y is the input gradient
/// dX = dY · W), y is tokens × n. Same fixed tiles as gemm_nt.
inline void gemm_nn(ConstMatrixView x, const float* w, std::size_t n, std::size_t w_stride, MatrixView y) {
    const std::size_t tokens = x.rows, k = x.cols;
    if (tokens == 0 || n == 0) return;
    const Fp32Kernels& kernels = active_fp32().kernels;
    const auto tile_fn = kernels.gemm_nn_tile ? kernels.gemm_nn_tile : &detail::eigen_gemm_nn_tile;
    const std::size_t output_tile = kernels.output_tile;
    const std::size_t out_tiles = (n + output_tile - 1) / output_tile;
    const std::size_t token_tiles = (tokens + detail::token_tile - 1) / detail::token_tile;
    parallel_for_dynamic(out_tiles * token_tiles, [&](std::size_t tile) {
        const std::size_t o0 = tile / token_tiles * output_tile, on = std::min(output_tile, n - o0);
        const std::size_t t0 = tile % token_tiles * detail::token_tile, tn = std::min(detail::token_tile, tokens - t0);
        tile_fn(x.data + t0 * x.stride, x.stride, w + o0, w_stride, y.data + t0 * y.stride + o0, y.stride, tn, on, k);
    });
}

/// Adds xᵀx to the lower triangle (diagonal included) of the column-major n × n matrix h, where x is
/// tokens × n row-major. The strict upper triangle is scratch: parts of it may be overwritten.
inline void gram_lower_add(ConstMatrixView x, float* h, std::size_t n) {
    if (x.rows == 0 || n == 0) return;
    // Block columns of decreasing height, taken by whichever thread is free (static halves of a triangle are
    // uneven); the tallest come first.
    const Fp32Kernels& kernels = active_fp32().kernels;
    const std::size_t blocks = (n + detail::gram_column_block - 1) / detail::gram_column_block;
    parallel_for_dynamic(blocks, [&](std::size_t b) {
        const std::size_t c0 = b * detail::gram_column_block;
        kernels.gram_block_column(x.data, x.stride, x.rows, h, n, c0, std::min(detail::gram_column_block, n - c0));
    });
}

}  // namespace qsafe::fp32_blas
