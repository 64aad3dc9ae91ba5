// One instruction-set unit of qsafe's dispatched programs (kernels/isa_dispatch.hpp): compiled once per level
// by cmake/qsafe_isa_kernels.cmake with that level's flags and QSAFE_ISA_UNIT_<LEVEL> defined; exports
// qsafe_isa_kernels_<level>(), which returns the products of every built-in scheme on this unit's xsimd
// architecture. Nothing else of this unit stays visible to the linker.
#include "qsafe/kernels/isa_dispatch.hpp"
#include "qsafe/registry/builtin_scheme_list.hpp"

#include <array>

// The unit's level, its exported name, and a check that the flags give that level's instructions: a unit
// built with the wrong flags fails here, not with wrong speed or an illegal instruction at run time.
#if defined(QSAFE_ISA_UNIT_PORTABLE)
#define QSAFE_ISA_ENTRY qsafe_isa_kernels_portable
#define QSAFE_ISA_LEVEL portable
#elif defined(QSAFE_ISA_UNIT_AVX2)
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__) || defined(__AVX512F__)
#error "the avx2 unit is compiled with -march=x86-64-v3 (AVX2, FMA, F16C; no AVX-512)"
#endif
#define QSAFE_ISA_ENTRY qsafe_isa_kernels_avx2
#define QSAFE_ISA_LEVEL avx2
#elif defined(QSAFE_ISA_UNIT_AVX512BW)
#if !defined(__AVX512BW__) || !defined(__AVX512VL__) || !defined(__AVX512DQ__) || defined(__AVX512VNNI__)
#error "the avx512bw unit is compiled with -march=x86-64-v4 (AVX-512 F/BW/VL/DQ/CD; no VNNI)"
#endif
#define QSAFE_ISA_ENTRY qsafe_isa_kernels_avx512bw
#define QSAFE_ISA_LEVEL avx512bw
#elif defined(QSAFE_ISA_UNIT_AVX512VNNI)
#if !defined(__AVX512BW__) || !defined(__AVX512VL__) || !defined(__AVX512VNNI__)
#error "the avx512vnni unit is compiled with -march=x86-64-v4 -mavx512vnni"
#endif
#define QSAFE_ISA_ENTRY qsafe_isa_kernels_avx512vnni
#define QSAFE_ISA_LEVEL avx512vnni
#else
#error "define QSAFE_ISA_UNIT_<PORTABLE|AVX2|AVX512BW|AVX512VNNI> (cmake/qsafe_isa_kernels.cmake)"
#endif

namespace {
using Arch = xsimd::default_arch;

template <class... S>
constexpr std::array<qsafe::SchemeKernel, sizeof...(S)> scheme_kernels(qsafe::TypeList<S...>) {
    return {qsafe::kernels::scheme_kernel_for<Arch, S>()...};
}
}  // namespace

// Constant data only: the entry point runs no code compiled with this unit's flags (it is called on every
// CPU, before anything checks what the CPU can do), and the unit has no static initializers.
extern "C" const qsafe::IsaKernelSet* QSAFE_ISA_ENTRY() {
    static constexpr auto schemes = scheme_kernels(qsafe::builtin::SchemeTypes{});
    static constexpr qsafe::IsaKernelSet set{
        qsafe::IsaLevel::QSAFE_ISA_LEVEL,
        Arch::name(),
        schemes.data(),
        schemes.size(),
        &qsafe::kernels::erased_vq_gemm<Arch>,
        {&qsafe::fp32_blas::detail::eigen_gemm_nt_tile, &qsafe::fp32_blas::detail::eigen_gram_block_column,
         &qsafe::fp32_blas::detail::eigen_gemv_rows, qsafe::fp32_blas::detail::eigen_output_tile,
         &qsafe::fp32_blas::detail::eigen_gemm_nn_tile},
    };
    return &set;
}
