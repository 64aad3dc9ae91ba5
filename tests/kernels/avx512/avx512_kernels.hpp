#pragma once
// gemm instantiated for xsimd::avx512bw in avx512_kernels.cpp (compiled with AVX-512 flags); callers
// must check xsimd::available_architectures().avx512bw first.
#include "kernels/test_schemes.hpp"
#include "qsafe/core/matrix_view.hpp"
#include "qsafe/formats/quantized_matrix.hpp"
#include "qsafe/kernels/matmul_options.hpp"

namespace qsafe::test {

template <QuantScheme S>
void gemm_avx512bw(const QuantizedMatrix<S>& w, ConstMatrixView x, MatrixView y, const MatmulOptions& options);

/// The kernel path the avx512bw instantiation takes ("int8-chunks", "fp32-chunks", "portable").
template <QuantScheme S>
const char* avx512bw_path(ActivationPrecision p);

}  // namespace qsafe::test
