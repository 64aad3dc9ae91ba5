#pragma once
// Byte layouts of ggml's quantized blocks, identical to ggml-common.h so a block can be memcpy'd from a GGUF
// file. Plain data only: the formulas in the comments are implemented in ggml_dequantize.hpp /
// ggml_quantize.hpp. fp16 fields are qsafe::fp16_t (two bytes, alignment 2, like ggml_half).
// Notation: q = stored quant, d = scale, m / dmin = min; "bpw" = bits per weight including scales.
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "qsafe/core/half.hpp"
#include "qsafe/formats/ggml_types.hpp"

namespace qsafe::ggml {

inline constexpr int qk4_0 = 32;
inline constexpr int qk4_1 = 32;
inline constexpr int qk5_0 = 32;
inline constexpr int qk5_1 = 32;
inline constexpr int qk8_0 = 32;
inline constexpr int qk8_1 = 32;
inline constexpr int qk_k = 256;         // K-quant super-block
inline constexpr int k_scale_size = 12;  // packed 6-bit scales/mins of Q4_K/Q5_K

// x = d * (q - 8), q in [0, 15]; qs[j] holds weight j (low nibble) and weight j + 16 (high nibble). 4.5 bpw.
struct BlockQ4_0 {
    fp16_t d;
    std::uint8_t qs[qk4_0 / 2];
};

// x = d * q + m, q in [0, 15]; nibble order as Q4_0. 5.0 bpw.
struct BlockQ4_1 {
    fp16_t d;
    fp16_t m;
    std::uint8_t qs[qk4_1 / 2];
};

// x = d * (q - 16), q in [0, 31]; low 4 bits as Q4_0, bit 4 of weight j is bit j of the LE uint32 qh. 5.5 bpw.
struct BlockQ5_0 {
    fp16_t d;
    std::uint8_t qh[4];
    std::uint8_t qs[qk5_0 / 2];
};

// x = d * q + m, q in [0, 31]; bits as Q5_0. 6.0 bpw.
struct BlockQ5_1 {
    fp16_t d;
    fp16_t m;
    std::uint8_t qh[4];
    std::uint8_t qs[qk5_1 / 2];
};

// x = d * q, q in [-127, 127]. 8.5 bpw.
struct BlockQ8_0 {
    fp16_t d;
    std::int8_t qs[qk8_0];
};

// x = d * q, s = d * sum(q): activation-side format of ggml's dot products, not stored in model files. 9 bpw.
struct BlockQ8_1 {
    fp16_t d;
    fp16_t s;
    std::int8_t qs[qk8_1];
};

// 16 sub-blocks of 16: x = d * (scales[i] & 15) * q - dmin * (scales[i] >> 4), q in [0, 3].
// Weight order: for each 128-half n, 4 shifts (0, 2, 4, 6) x 2 sub-blocks of 16 reading qs[32n + l (+16)]. 2.625 bpw.
struct BlockQ2_K {
    std::uint8_t scales[qk_k / 16];
    std::uint8_t qs[qk_k / 4];
    fp16_t d;
    fp16_t dmin;
};

// 16 sub-blocks of 16: x = d * (s - 32) * (q - (hmask bit set ? 0 : 4)), q = 2 low bits in qs, s a 6-bit scale
// packed into 12 bytes (low 4 bits in bytes 0-7, high 2 bits in bytes 8-11). 3.4375 bpw.
struct BlockQ3_K {
    std::uint8_t hmask[qk_k / 8];
    std::uint8_t qs[qk_k / 4];
    std::uint8_t scales[12];
    fp16_t d;
};

// 8 sub-blocks of 32: x = d * sc * q - dmin * mn, q in [0, 15], (sc, mn) 6-bit pairs packed in 12 bytes.
// Each 64 weights use 32 bytes of qs: low nibbles first, then high nibbles. 4.5 bpw.
struct BlockQ4_K {
    fp16_t d;
    fp16_t dmin;
    std::uint8_t scales[k_scale_size];
    std::uint8_t qs[qk_k / 2];
};

// As Q4_K with a fifth bit per weight from qh (bit 2i / 2i+1 of qh[l] for the i-th 64-weight chunk). 5.5 bpw.
struct BlockQ5_K {
    fp16_t d;
    fp16_t dmin;
    std::uint8_t scales[k_scale_size];
    std::uint8_t qh[qk_k / 8];
    std::uint8_t qs[qk_k / 2];
};

// 16 sub-blocks of 16: x = d * scales[i] * (q - 32), q = 4 bits from ql + 2 bits from qh. 6.5625 bpw.
struct BlockQ6_K {
    std::uint8_t ql[qk_k / 2];
    std::uint8_t qh[qk_k / 4];
    std::int8_t scales[qk_k / 16];
    fp16_t d;
};

// x = d * q with an fp32 d; bsums = sums of groups of 16 q. Intermediate format of K-quant dot products.
struct BlockQ8_K {
    float d;
    std::int8_t qs[qk_k];
    std::int16_t bsums[qk_k / 16];
};

// Layout checks: every field at ggml's offset, sizes equal to the GGUF type table.
#define QSAFE_GGML_BLOCK_CHECK(Block, type)                                                 \
    static_assert(std::is_standard_layout_v<Block> && std::is_trivially_copyable_v<Block>); \
    static_assert(sizeof(Block) == ggml_bytes_per_block(type), #Block " size differs from ggml")
QSAFE_GGML_BLOCK_CHECK(BlockQ4_0, GgmlType::Q4_0);
QSAFE_GGML_BLOCK_CHECK(BlockQ4_1, GgmlType::Q4_1);
QSAFE_GGML_BLOCK_CHECK(BlockQ5_0, GgmlType::Q5_0);
QSAFE_GGML_BLOCK_CHECK(BlockQ5_1, GgmlType::Q5_1);
QSAFE_GGML_BLOCK_CHECK(BlockQ8_0, GgmlType::Q8_0);
QSAFE_GGML_BLOCK_CHECK(BlockQ8_1, GgmlType::Q8_1);
QSAFE_GGML_BLOCK_CHECK(BlockQ2_K, GgmlType::Q2_K);
QSAFE_GGML_BLOCK_CHECK(BlockQ3_K, GgmlType::Q3_K);
QSAFE_GGML_BLOCK_CHECK(BlockQ4_K, GgmlType::Q4_K);
QSAFE_GGML_BLOCK_CHECK(BlockQ5_K, GgmlType::Q5_K);
QSAFE_GGML_BLOCK_CHECK(BlockQ6_K, GgmlType::Q6_K);
QSAFE_GGML_BLOCK_CHECK(BlockQ8_K, GgmlType::Q8_K);
#undef QSAFE_GGML_BLOCK_CHECK

static_assert(offsetof(BlockQ4_0, d) == 0 && offsetof(BlockQ4_0, qs) == 2);
static_assert(offsetof(BlockQ4_1, d) == 0 && offsetof(BlockQ4_1, m) == 2 && offsetof(BlockQ4_1, qs) == 4);
static_assert(offsetof(BlockQ5_0, d) == 0 && offsetof(BlockQ5_0, qh) == 2 && offsetof(BlockQ5_0, qs) == 6);
static_assert(offsetof(BlockQ5_1, d) == 0 && offsetof(BlockQ5_1, m) == 2 && offsetof(BlockQ5_1, qh) == 4 &&
              offsetof(BlockQ5_1, qs) == 8);
static_assert(offsetof(BlockQ8_0, d) == 0 && offsetof(BlockQ8_0, qs) == 2);
static_assert(offsetof(BlockQ8_1, d) == 0 && offsetof(BlockQ8_1, s) == 2 && offsetof(BlockQ8_1, qs) == 4);
static_assert(offsetof(BlockQ2_K, scales) == 0 && offsetof(BlockQ2_K, qs) == 16 && offsetof(BlockQ2_K, d) == 80 &&
              offsetof(BlockQ2_K, dmin) == 82);
static_assert(offsetof(BlockQ3_K, hmask) == 0 && offsetof(BlockQ3_K, qs) == 32 && offsetof(BlockQ3_K, scales) == 96 &&
              offsetof(BlockQ3_K, d) == 108);
static_assert(offsetof(BlockQ4_K, d) == 0 && offsetof(BlockQ4_K, dmin) == 2 && offsetof(BlockQ4_K, scales) == 4 &&
              offsetof(BlockQ4_K, qs) == 16);
static_assert(offsetof(BlockQ5_K, d) == 0 && offsetof(BlockQ5_K, dmin) == 2 && offsetof(BlockQ5_K, scales) == 4 &&
              offsetof(BlockQ5_K, qh) == 16 && offsetof(BlockQ5_K, qs) == 48);
static_assert(offsetof(BlockQ6_K, ql) == 0 && offsetof(BlockQ6_K, qh) == 128 && offsetof(BlockQ6_K, scales) == 192 &&
              offsetof(BlockQ6_K, d) == 208);
static_assert(offsetof(BlockQ8_K, d) == 0 && offsetof(BlockQ8_K, qs) == 4 && offsetof(BlockQ8_K, bsums) == 260);

/// Block struct of a ggml type, for templates that work per block.
template <GgmlType Type>
struct BlockOf;
template <>
struct BlockOf<GgmlType::Q4_0> {
    using type = BlockQ4_0;
};
template <>
struct BlockOf<GgmlType::Q4_1> {
    using type = BlockQ4_1;
};
template <>
struct BlockOf<GgmlType::Q5_0> {
    using type = BlockQ5_0;
};
template <>
struct BlockOf<GgmlType::Q5_1> {
    using type = BlockQ5_1;
};
template <>
struct BlockOf<GgmlType::Q8_0> {
    using type = BlockQ8_0;
};
template <>
struct BlockOf<GgmlType::Q8_1> {
    using type = BlockQ8_1;
};
template <>
struct BlockOf<GgmlType::Q2_K> {
    using type = BlockQ2_K;
};
template <>
struct BlockOf<GgmlType::Q3_K> {
    using type = BlockQ3_K;
};
template <>
struct BlockOf<GgmlType::Q4_K> {
    using type = BlockQ4_K;
};
template <>
struct BlockOf<GgmlType::Q5_K> {
    using type = BlockQ5_K;
};
template <>
struct BlockOf<GgmlType::Q6_K> {
    using type = BlockQ6_K;
};
template <>
struct BlockOf<GgmlType::Q8_K> {
    using type = BlockQ8_K;
};
template <GgmlType Type>
using block_of_t = typename BlockOf<Type>::type;

}  // namespace qsafe::ggml
