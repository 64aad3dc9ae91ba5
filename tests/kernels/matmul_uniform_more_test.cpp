// Uniform grids: 8-bit, per channel, fp32 scales, and groups that are not whole chunks (portable kernel).
#include "kernels/matmul_suite.hpp"

namespace qsafe::test {
TEST_CASE_TEMPLATE_INVOKE(matmul_conformance, Int8PcS, Int8G64A, Int4PcAF32, Int2PcS, Int6G96AF32, Int4G16A, Int3G48S,
                          Int5G80S);
TEST_CASE_TEMPLATE_INVOKE(matmul_edge_values, Int8PcS, Int8G64A, Int4PcAF32, Int4G16A);
TEST_CASE_TEMPLATE_INVOKE(matmul_threads, Int8G64A, Int4G16A);
TEST_CASE_TEMPLATE_INVOKE(matmul_batch_independence, Int8PcS, Int8G64A);
}  // namespace qsafe::test
