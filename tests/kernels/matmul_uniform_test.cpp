// Uniform grids whose groups are whole 32-code chunks: x86 integer and fp32 chunk kernels.
#include "kernels/matmul_suite.hpp"

namespace qsafe::test {
TEST_CASE_TEMPLATE_INVOKE(matmul_conformance, Int2G32A, Int3G128A, Int4G32S, Int4G128A, Int5G64A, Int6G32S);
TEST_CASE_TEMPLATE_INVOKE(matmul_edge_values, Int2G32A, Int3G128A, Int4G32S, Int4G128A, Int5G64A, Int6G32S);
TEST_CASE_TEMPLATE_INVOKE(matmul_threads, Int3G128A, Int4G32S);
TEST_CASE_TEMPLATE_INVOKE(matmul_batch_independence, Int2G32A, Int3G128A, Int4G128A, Int5G64A);
}  // namespace qsafe::test
