// The pair order of the 512-bit integer kernel (kernels/chunk_layout.hpp, kernels/paired_integer_tile_kernel.hpp):
// the layout its activations are stored in, and which schemes take it. The kernel's products themselves are
// checked against the scalar reference by the conformance suites (the AVX-512 units and, on an AVX-512 host,
// the default arch), whose shapes have odd chunk counts and half chunks beside whole pairs.
#include <set>

#include "kernels/matmul_suite.hpp"
#include "qsafe/kernels/paired_integer_tile_kernel.hpp"
#include "qsafe/registry/builtin_scheme_list.hpp"

namespace qsafe::test {

TEST_CASE("pair order: quarters of the two chunks interleaved, one position each") {
    std::set<int> seen;
    for (int k = 0; k < 2; ++k)
        for (int p = 0; p < 32; ++p) {
            const int at = kernels::pair_position(k, p);
            CHECK(at / 16 == 2 * (p / 16) + k);  // quarter: [c 0-15, c+1 0-15, c 16-31, c+1 16-31]
            CHECK(at % 16 == p % 16);
            seen.insert(at);
        }
    CHECK(seen.size() == 64);
    CHECK(*seen.begin() == 0);
    CHECK(*seen.rbegin() == 63);
}

TEST_CASE_TEMPLATE("activations in pair order: the same values as in chunk order, moved within their pair", Code,
                   std::int8_t, std::int16_t) {
    std::mt19937 rng(5u);
    const std::size_t cols = 150;  // 5 chunks, the last partial: pairs (0, 1), (2, 3), then chunk 4 alone
    const RowMatrixF x = random_activations(3, cols, rng);
    const ConstMatrixView view(x.data(), 3, cols);
    kernels::QuantizedActivations<Code> plain, paired;
    kernels::quantize_activations<xsimd::default_arch>(view, kernels::ChunkOrder::nibble, 1, 5, plain);
    kernels::quantize_activations<xsimd::default_arch>(view, kernels::ChunkOrder::nibble, 1, 5, paired, 5);
    CHECK(plain.paired_chunks == 0);
    CHECK(paired.paired_chunks == 4);  // rounded down to whole pairs
    CHECK(paired.d == plain.d);
    CHECK(paired.group_sums == plain.group_sums);
    CHECK(paired.chunk_sums == plain.chunk_sums);
    for (std::size_t n = 0; n < 3; ++n)
        for (std::size_t c = 0; c < 5; ++c) {
            CAPTURE(n);
            CAPTURE(c);
            const Code* in_chunk_order = plain.chunk(n, c);
            long sum = 0;
            for (int p = 0; p < 32; ++p) {
                const Code expected = in_chunk_order[p];
                sum += expected;
                const Code got = c < 4 ? paired.chunk(n, c - c % 2)[kernels::pair_position(static_cast<int>(c % 2), p)]
                                       : paired.chunk(n, c)[p];
                CHECK(got == expected);
            }
            CHECK(plain.chunk_sums[n * 5 + c] == static_cast<float>(sum));
        }
}

TEST_CASE("pair kernel: whole pairs of whole chunks, and the schemes that take it") {
    std::mt19937 rng(9u);
    CHECK(kernels::paired_chunk_count(random_matrix<builtin::Int4G32Sym>(2, 528, rng)) == 16);  // + a half chunk
    CHECK(kernels::paired_chunk_count(random_matrix<builtin::Int4G32Sym>(2, 160, rng)) == 4);   // + one chunk
    CHECK(kernels::paired_chunk_count(random_matrix<builtin::Int4G32Sym>(2, 48, rng)) == 0);    // one and a half
    // Symmetric 4-bit grids only (docs/benchmarks.md: asymmetric and 8-bit codes measured slower there).
    CHECK_FALSE(kernels::runs_pair_kernel<xsimd::avx2, builtin::Int4G32Sym, std::int8_t>());
    CHECK_FALSE(kernels::runs_pair_kernel<xsimd::avx512bw, builtin::Int4G128, std::int8_t>());
    CHECK_FALSE(kernels::runs_pair_kernel<xsimd::avx512bw, builtin::Int8PcSym, std::int16_t>());
#if XSIMD_WITH_AVX2
    CHECK(kernels::kernel_path<xsimd::avx2, builtin::Int4G32Sym>(ActivationPrecision::int8) == kernels::KernelPath::int8_chunks);
#endif
#if QSAFE_HAS_X86_PAIR_KERNEL
    CHECK(kernels::runs_pair_kernel<xsimd::avx512bw, builtin::Int4G32Sym, std::int8_t>());
    CHECK(kernels::runs_pair_kernel<xsimd::avx512bw, builtin::Int4G128Sym, std::int16_t>());
    CHECK(kernels::kernel_path<xsimd::avx512bw, builtin::Int4G32Sym>(ActivationPrecision::automatic) ==
          kernels::KernelPath::int16_chunk_pairs);
    CHECK(kernels::kernel_path<xsimd::avx512bw, builtin::Int4G32Sym>(ActivationPrecision::int8) ==
          kernels::KernelPath::int8_chunk_pairs);
    MESSAGE("this build's default arch runs the pair kernel for int4 symmetric grids");
#else
    CHECK_FALSE(kernels::runs_pair_kernel<xsimd::avx512bw, builtin::Int4G32Sym, std::int8_t>());
    MESSAGE("this build has no AVX-512BW: the pair kernel is compiled in the avx512 units only");
#endif
}

}  // namespace qsafe::test
