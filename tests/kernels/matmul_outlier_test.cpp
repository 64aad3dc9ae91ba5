// Outlier columns and sparse outliers on top of every kernel path.
#include "kernels/matmul_suite.hpp"

namespace qsafe::test {
TEST_CASE_TEMPLATE_INVOKE(matmul_conformance, Int4G128AOcol, Int3G128ASparse, Int8PcSOcol, Int2G32ASparse, Int4G16ASparse,
                          Nf4G64Sparse, Cb4G128Ocol, Pow2G32Ocol);
TEST_CASE_TEMPLATE_INVOKE(matmul_edge_values, Int4G128AOcol, Int3G128ASparse, Nf4G64Sparse);
TEST_CASE_TEMPLATE_INVOKE(matmul_threads, Int4G128AOcol, Int3G128ASparse);
TEST_CASE_TEMPLATE_INVOKE(matmul_batch_independence, Int4G128AOcol, Int3G128ASparse);
}  // namespace qsafe::test
