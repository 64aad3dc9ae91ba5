#pragma once
// Owning, 64-byte aligned, zero-initialised storage for packed weights and activations. A vector with an
// aligned allocator: SIMD kernels may use aligned loads on the start of every buffer.
#include <cstddef>
#include <vector>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <xsimd/xsimd.hpp>

namespace qsafe {

inline constexpr std::size_t buffer_alignment = 64;

template <class T>
using aligned_vector = std::vector<T, xsimd::aligned_allocator<T, buffer_alignment>>;

}  // namespace qsafe
