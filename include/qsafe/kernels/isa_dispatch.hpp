#pragma once
// Run-time choice of the instruction set for the quantized and fp32 products.
//
// A header-only library is compiled with its user's flags, and the kernels follow them (xsimd's
// default_arch). A program that must run well on every x86-64 CPU — qsafe's own tools — compiles the kernels
// once more per instruction-set level, each in a translation unit of its own with that level's flags
// (-march=x86-64, x86-64-v3, x86-64-v4, x86-64-v4 -mavx512vnni), and each such unit exports one function
// returning its IsaKernelSet: plain function pointers to the products of every scheme it instantiated. The
// program registers the sets at start-up; layers look up their scheme's product for active_isa() when they
// are built (core/cpu_features.hpp: the CPU's best level, or the lower one QSAFE_ISA names).
//
// Why one exported function and nothing else: every inline function a unit uses (std::vector, Eigen, qsafe's
// own helpers) is compiled there with that unit's flags. If the linker merged those copies with the
// baseline's — it keeps one copy of each inline function — an AVX-512 copy could end up called on an
// AVX2-only CPU. The build links each unit partially and keeps only the exported function global
// (cmake/qsafe_isa_kernels.cmake), so each unit's copies stay its own. The entry points are therefore
// C-style: function pointers, type keys as strings, no shared state behind them.
//
// Programs that do not register sets (a library user's, by default) run the kernels of their own flags.
#include <array>
#include <cstddef>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "qsafe/core/cpu_features.hpp"
#include "qsafe/core/fp32_blas.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/formats/vq_matrix.hpp"
#include "qsafe/kernels/matmul.hpp"
#include "qsafe/kernels/vq_matmul.hpp"

namespace qsafe {

/// Y = X Wᵀ for one scheme's QuantizedMatrix (passed as const void*), shapes already validated.
using SchemeGemmFn = void (*)(const void* matrix, ConstMatrixView x, MatrixView y, const MatmulOptions& options);
/// The kernel such a product runs for `batch` vectors.
using SchemePathFn = kernels::KernelPath (*)(const MatmulOptions& options, std::size_t batch);
using VqGemmFn = void (*)(const VqMatrix& w, ConstMatrixView x, MatrixView y, VqPath path);

struct SchemeKernel {
    const char* type_key = nullptr;  // scheme_type_key<S>()
    SchemeGemmFn gemm = nullptr;
    SchemePathFn path = nullptr;
};

/// Everything one instruction-set unit compiled.
struct IsaKernelSet {
    IsaLevel level = IsaLevel::portable;
    const char* xsimd_arch = "";  // the xsimd architecture the unit's kernels use ("avx512bw", ...)
    const SchemeKernel* schemes = nullptr;
    std::size_t scheme_count = 0;
    VqGemmFn vq_gemm = nullptr;
    fp32_blas::Fp32Kernels fp32;
};

namespace detail {
template <class S>
struct SchemeTypeKey {
    // The compiler's spelling of this function, which names S: the same text in every translation unit, and
    // a constant (a unit's kernel table is then constant data, built without running any of its code).
    static constexpr const char* get() noexcept { return __PRETTY_FUNCTION__; }
};
}  // namespace detail

/// A key naming scheme S identically in every translation unit.
template <QuantScheme S>
constexpr const char* scheme_type_key() noexcept {
    return detail::SchemeTypeKey<S>::get();
}

class IsaKernelRegistry {
  public:
    void add(const IsaKernelSet& set) {
        std::lock_guard lock(mutex_);
        const auto slot = static_cast<std::size_t>(set.level);
        sets_[slot] = set;
        registered_[slot] = true;
        for (std::size_t i = 0; i < set.scheme_count; ++i) schemes_[set.schemes[i].type_key][slot] = set.schemes[i];
        fp32_blas::register_isa_eigen_kernels(set.level, set.fp32);
    }
    bool has(IsaLevel level) const {
        std::lock_guard lock(mutex_);
        return registered_[static_cast<std::size_t>(level)];
    }
    const IsaKernelSet* set(IsaLevel level) const {
        std::lock_guard lock(mutex_);
        const auto slot = static_cast<std::size_t>(level);
        return registered_[slot] ? &sets_[slot] : nullptr;
    }
    /// The scheme's kernel compiled for exactly `level`, or nullptr.
    const SchemeKernel* exact(const char* type_key, IsaLevel level) const {
        std::lock_guard lock(mutex_);
        const auto it = schemes_.find(type_key);
        if (it == schemes_.end()) return nullptr;
        const SchemeKernel& k = it->second[static_cast<std::size_t>(level)];
        return k.gemm ? &k : nullptr;
    }
    /// The scheme's kernel of the highest registered level <= `level`, or nullptr.
    const SchemeKernel* best(const char* type_key, IsaLevel level) const {
        for (int l = static_cast<int>(level); l >= 0; --l)
            if (const SchemeKernel* k = exact(type_key, static_cast<IsaLevel>(l))) return k;
        return nullptr;
    }
    /// The VQ product of the highest registered level <= `level`, and that level.
    std::pair<VqGemmFn, IsaLevel> best_vq(IsaLevel level) const {
        std::lock_guard lock(mutex_);
        for (int l = static_cast<int>(level); l >= 0; --l)
            if (registered_[static_cast<std::size_t>(l)] && sets_[static_cast<std::size_t>(l)].vq_gemm)
                return {sets_[static_cast<std::size_t>(l)].vq_gemm, static_cast<IsaLevel>(l)};
        return {nullptr, IsaLevel::portable};
    }

  private:
    mutable std::mutex mutex_;
    std::array<IsaKernelSet, all_isa_levels.size()> sets_{};
    std::array<bool, all_isa_levels.size()> registered_{};
    std::map<std::string, std::array<SchemeKernel, all_isa_levels.size()>, std::less<>> schemes_;
};

inline IsaKernelRegistry& isa_kernel_registry() {
    static IsaKernelRegistry registry;
    return registry;
}

/// Registers a unit's kernels (programs call this at start-up for each unit they link).
inline void register_isa_kernels(const IsaKernelSet& set) { isa_kernel_registry().add(set); }

/// The dispatched product of scheme S at the active level, or nullptr (then the caller's own kernels run).
template <QuantScheme S>
const SchemeKernel* dispatched_kernel(IsaLevel level = active_isa()) {
    return isa_kernel_registry().best(scheme_type_key<S>(), level);
}

namespace kernels {
// Building blocks of an instruction-set unit (tools/common/isa_kernels.cpp): its products for scheme S on
// the unit's own xsimd architecture.
template <class Arch, QuantScheme S>
void erased_gemm(const void* matrix, ConstMatrixView x, MatrixView y, const MatmulOptions& options) {
    run_matmul<Arch>(*static_cast<const QuantizedMatrix<S>*>(matrix), x, y, options);
}
template <class Arch, QuantScheme S>
KernelPath erased_path(const MatmulOptions& options, std::size_t batch) {
    return kernel_path_for<Arch, S>(options, batch);
}
template <class Arch>
void erased_vq_gemm(const VqMatrix& w, ConstMatrixView x, MatrixView y, VqPath path) {
    run_vq_product<Arch>(w, x, y, path);
}
template <class Arch, QuantScheme S>
constexpr SchemeKernel scheme_kernel_for() noexcept {
    return {scheme_type_key<S>(), &erased_gemm<Arch, S>, &erased_path<Arch, S>};
}
}  // namespace kernels

}  // namespace qsafe
