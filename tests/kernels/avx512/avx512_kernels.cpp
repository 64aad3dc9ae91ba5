// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512cd -mavx512dq (see ../extra.cmake): the kernels for xsimd::avx512bw.
#include "kernels/avx512/avx512_kernels.hpp"

#include "qsafe/kernels/matmul.hpp"

namespace qsafe::test {

template <QuantScheme S>
void gemm_avx512bw(const QuantizedMatrix<S>& w, ConstMatrixView x, MatrixView y, const MatmulOptions& options) {
    gemm(xsimd::avx512bw{}, w, x, y, options);
}

template <QuantScheme S>
const char* avx512bw_path(ActivationPrecision p) {
    return kernels::kernel_path_name(kernels::kernel_path<xsimd::avx512bw, S>(p));
}

#define QSAFE_AVX512_INSTANTIATE(S)                                                                   \
    template void gemm_avx512bw<S>(const QuantizedMatrix<S>&, ConstMatrixView, MatrixView, const MatmulOptions&); \
    template const char* avx512bw_path<S>(ActivationPrecision)

QSAFE_AVX512_INSTANTIATE(Int2G32A);
QSAFE_AVX512_INSTANTIATE(Int3G128ASparse);
QSAFE_AVX512_INSTANTIATE(Int4G128A);
QSAFE_AVX512_INSTANTIATE(Int5G64A);
QSAFE_AVX512_INSTANTIATE(Int6G32S);
QSAFE_AVX512_INSTANTIATE(Int8PcS);
QSAFE_AVX512_INSTANTIATE(Int4G16A);
QSAFE_AVX512_INSTANTIATE(Nf4G64);
QSAFE_AVX512_INSTANTIATE(Cb6G32Pg);
QSAFE_AVX512_INSTANTIATE(Int4G128AOcol);

}  // namespace qsafe::test
