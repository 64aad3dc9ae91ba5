// Table and learned codebooks, including user-defined tables (exact fp32 kernels).
#include "kernels/matmul_suite.hpp"

namespace qsafe::test {
TEST_CASE_TEMPLATE_INVOKE(matmul_conformance, Nf4G64, Fp4G64F32, Nf4G16, Cb4G128, Cb4G64Pg, Cb2G32Pg, Cb3G32Pg, Cb5G64,
                          Cb6G32Pg, Cb6Pc, Pow2G32, TernG64, Lin32Pc);
TEST_CASE_TEMPLATE_INVOKE(matmul_edge_values, Nf4G64, Cb4G64Pg, Pow2G32, Lin32Pc);
TEST_CASE_TEMPLATE_INVOKE(matmul_threads, Nf4G64, Cb6G32Pg);
TEST_CASE_TEMPLATE_INVOKE(matmul_batch_independence, Nf4G64, Cb4G64Pg, Lin32Pc);
}  // namespace qsafe::test
