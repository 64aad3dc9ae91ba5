#pragma once
// The instruction-set units linked into qsafe's own programs (tools/common/isa_kernels.cpp, built per level by
// cmake/qsafe_isa_kernels.cmake), and their registration.
#include "qsafe/kernels/isa_dispatch.hpp"

extern "C" {
const qsafe::IsaKernelSet* qsafe_isa_kernels_portable();
const qsafe::IsaKernelSet* qsafe_isa_kernels_avx2();
const qsafe::IsaKernelSet* qsafe_isa_kernels_avx512bw();
const qsafe::IsaKernelSet* qsafe_isa_kernels_avx512vnni();
}

namespace qsafe {

/// Registers every unit (all are linked; the active level decides which runs).
inline void register_builtin_isa_kernels() {
    register_isa_kernels(*qsafe_isa_kernels_portable());
    register_isa_kernels(*qsafe_isa_kernels_avx2());
    register_isa_kernels(*qsafe_isa_kernels_avx512bw());
    register_isa_kernels(*qsafe_isa_kernels_avx512vnni());
}

}  // namespace qsafe
