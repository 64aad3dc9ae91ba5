#pragma once
// Scalar dequantization of ggml blocks to fp32 with the same arithmetic, in the same order, as ggml's
// dequantize_row_* (ggml-quants.c), so values match llama.cpp's reference path exactly. This is the
// clarity-first oracle used by the readers and tests, not a fast kernel.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "qsafe/core/error.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/formats/ggml_blocks.hpp"
#include "qsafe/formats/ggml_types.hpp"

namespace qsafe {

namespace ggml::detail {

// Blocks inside a mmap'd file are only 1- or 2-byte aligned: copy each one out instead of casting.
template <class Block>
Block load_block(const std::byte* src, std::size_t index) noexcept {
    Block block;
    std::memcpy(&block, src + index * sizeof(Block), sizeof(Block));
    return block;
}

inline void dequantize_block(const BlockQ4_0& b, float* y) noexcept {
    const float d = to_float(b.d);
    for (int j = 0; j < qk4_0 / 2; ++j) {
        y[j] = static_cast<float>((b.qs[j] & 0x0F) - 8) * d;
        y[j + qk4_0 / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
}

inline void dequantize_block(const BlockQ4_1& b, float* y) noexcept {
    const float d = to_float(b.d);
    const float m = to_float(b.m);
    for (int j = 0; j < qk4_1 / 2; ++j) {
        y[j] = static_cast<float>(b.qs[j] & 0x0F) * d + m;
        y[j + qk4_1 / 2] = static_cast<float>(b.qs[j] >> 4) * d + m;
    }
}

inline std::uint32_t load_qh(const std::uint8_t (&qh)[4]) noexcept {
    std::uint32_t value;
    std::memcpy(&value, qh, sizeof(value));
    return value;
}

inline void dequantize_block(const BlockQ5_0& b, float* y) noexcept {
    const float d = to_float(b.d);
    const std::uint32_t qh = load_qh(b.qh);
    for (int j = 0; j < qk5_0 / 2; ++j) {
        const int high0 = static_cast<int>(((qh >> j) << 4) & 0x10u);
        const int high1 = static_cast<int>((qh >> (j + 12)) & 0x10u);
        y[j] = static_cast<float>(((b.qs[j] & 0x0F) | high0) - 16) * d;
        y[j + qk5_0 / 2] = static_cast<float>(((b.qs[j] >> 4) | high1) - 16) * d;
    }
}

inline void dequantize_block(const BlockQ5_1& b, float* y) noexcept {
    const float d = to_float(b.d);
    const float m = to_float(b.m);
    const std::uint32_t qh = load_qh(b.qh);
    for (int j = 0; j < qk5_1 / 2; ++j) {
        const int high0 = static_cast<int>(((qh >> j) << 4) & 0x10u);
        const int high1 = static_cast<int>((qh >> (j + 12)) & 0x10u);
        y[j] = static_cast<float>((b.qs[j] & 0x0F) | high0) * d + m;
        y[j + qk5_1 / 2] = static_cast<float>((b.qs[j] >> 4) | high1) * d + m;
    }
}

inline void dequantize_block(const BlockQ8_0& b, float* y) noexcept {
    const float d = to_float(b.d);
    for (int j = 0; j < qk8_0; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}

inline void dequantize_block(const BlockQ8_K& b, float* y) noexcept {
    for (int j = 0; j < qk_k; ++j) y[j] = b.d * static_cast<float>(b.qs[j]);
}

inline void dequantize_block(const BlockQ2_K& b, float* y) noexcept {
    const float d = to_float(b.d);
    const float dmin = to_float(b.dmin);
    const std::uint8_t* q = b.qs;
    int is = 0;
    for (int n = 0; n < qk_k; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; ++half) {  // two sub-blocks of 16 share a shift
                const std::uint8_t sc = b.scales[is++];
                const float dl = d * static_cast<float>(sc & 0x0F);
                const float ml = dmin * static_cast<float>(sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
            }
        }
        q += 32;
    }
}

/// The 16 signed 6-bit scales of a Q3_K block (bias 32 removed), unpacked as ggml does.
inline void unpack_q3_k_scales(const std::uint8_t (&packed)[12], int (&scales)[16]) noexcept {
    for (int i = 0; i < 16; ++i) {
        const int low = i < 8 ? packed[i] & 0x0F : packed[i - 8] >> 4;
        const int high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        scales[i] = (low | (high << 4)) - 32;
    }
}

inline void dequantize_block(const BlockQ3_K& b, float* y) noexcept {
    const float d_all = to_float(b.d);
    int scales[16];
    unpack_q3_k_scales(b.scales, scales);
    const std::uint8_t* q = b.qs;
    std::uint8_t m = 1;  // selects the hmask bit of the current 32-weight group
    int is = 0;
    for (int n = 0; n < qk_k; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; ++half) {
                const float dl = d_all * static_cast<float>(scales[is++]);
                for (int l = 16 * half; l < 16 * half + 16; ++l) {
                    const int low = (q[l] >> shift) & 3;
                    *y++ = dl * static_cast<float>(low - ((b.hmask[l] & m) ? 0 : 4));
                }
            }
            m = static_cast<std::uint8_t>(m << 1);
        }
        q += 32;
    }
}

/// Scale and min j (0..7) of a Q4_K/Q5_K block: 6 bits each, packed in 12 bytes (ggml's get_scale_min_k4).
inline void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& scale, std::uint8_t& min) noexcept {
    if (j < 4) {
        scale = q[j] & 63;
        min = q[j + 4] & 63;
    } else {
        scale = static_cast<std::uint8_t>((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        min = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

inline void dequantize_block(const BlockQ4_K& b, float* y) noexcept {
    const float d = to_float(b.d);
    const float dmin = to_float(b.dmin);
    const std::uint8_t* q = b.qs;
    for (int is = 0; is < 8; is += 2) {
        std::uint8_t sc = 0;
        std::uint8_t mn = 0;
        scale_min_k4(is, b.scales, sc, mn);
        const float d1 = d * static_cast<float>(sc);
        const float m1 = dmin * static_cast<float>(mn);
        scale_min_k4(is + 1, b.scales, sc, mn);
        const float d2 = d * static_cast<float>(sc);
        const float m2 = dmin * static_cast<float>(mn);
        for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0x0F) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
        q += 32;
    }
}

inline void dequantize_block(const BlockQ5_K& b, float* y) noexcept {
    const float d = to_float(b.d);
    const float dmin = to_float(b.dmin);
    const std::uint8_t* ql = b.qs;
    unsigned u1 = 1;
    unsigned u2 = 2;
    for (int is = 0; is < 8; is += 2) {
        std::uint8_t sc = 0;
        std::uint8_t mn = 0;
        scale_min_k4(is, b.scales, sc, mn);
        const float d1 = d * static_cast<float>(sc);
        const float m1 = dmin * static_cast<float>(mn);
        scale_min_k4(is + 1, b.scales, sc, mn);
        const float d2 = d * static_cast<float>(sc);
        const float m2 = dmin * static_cast<float>(mn);
        for (int l = 0; l < 32; ++l) {
            *y++ = d1 * static_cast<float>((ql[l] & 0x0F) + ((b.qh[l] & u1) ? 16 : 0)) - m1;
        }
        for (int l = 0; l < 32; ++l) {
            *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((b.qh[l] & u2) ? 16 : 0)) - m2;
        }
        ql += 32;
        u1 <<= 2;
        u2 <<= 2;
    }
}

inline void dequantize_block(const BlockQ6_K& b, float* y) noexcept {
    const float d = to_float(b.d);
    const std::uint8_t* ql = b.ql;
    const std::uint8_t* qh = b.qh;
    const std::int8_t* sc = b.scales;
    for (int n = 0; n < qk_k; n += 128) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
            y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
            y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
            y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

template <GgmlType Type>
void dequantize_blocks(std::span<const std::byte> src, std::span<float> dst) noexcept {
    using Block = block_of_t<Type>;
    constexpr std::size_t n = ggml_block_size(Type);
    const std::size_t blocks = dst.size() / n;
    for (std::size_t i = 0; i < blocks; ++i) dequantize_block(load_block<Block>(src.data(), i), dst.data() + i * n);
}

template <class Scalar, class Convert>
void convert_elements(std::span<const std::byte> src, std::span<float> dst, Convert convert) noexcept {
    for (std::size_t i = 0; i < dst.size(); ++i) dst[i] = convert(load_block<Scalar>(src.data(), i));
}

}  // namespace ggml::detail

/// True if dequantize_row supports the type.
constexpr bool can_dequantize(GgmlType type) noexcept {
    switch (type) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
        case GgmlType::Q4_0:
        case GgmlType::Q4_1:
        case GgmlType::Q5_0:
        case GgmlType::Q5_1:
        case GgmlType::Q8_0:
        case GgmlType::Q2_K:
        case GgmlType::Q3_K:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K:
        case GgmlType::Q6_K:
        case GgmlType::Q8_K: return true;
        default: return false;
    }
}

/// Number of bytes that hold n_elements of a type; n_elements must be a multiple of the block size.
constexpr std::uint64_t ggml_row_bytes(GgmlType type, std::uint64_t n_elements) noexcept {
    return n_elements / ggml_block_size(type) * ggml_bytes_per_block(type);
}

/// Dequantizes dst.size() weights stored as `type` in src. Throws shape_error if dst.size() is not a
/// multiple of the block size or src has the wrong length, config_error if the type has no dequantizer.
inline void dequantize_row(GgmlType type, std::span<const std::byte> src, std::span<float> dst) {
    using namespace ggml::detail;
    const std::uint32_t block = ggml_block_size(type);
    if (!can_dequantize(type)) {
        throw config_error("dequantize_row: no dequantizer for ggml type " + std::string(ggml_type_name(type)));
    }
    if (dst.size() % block != 0) {
        throw shape_error("dequantize_row: " + std::to_string(dst.size()) + " weights is not a multiple of the " +
                          std::string(ggml_type_name(type)) + " block size " + std::to_string(block));
    }
    if (src.size() != ggml_row_bytes(type, dst.size())) {
        throw shape_error("dequantize_row: " + std::to_string(dst.size()) + " " + std::string(ggml_type_name(type)) +
                          " weights need " + std::to_string(ggml_row_bytes(type, dst.size())) + " bytes, got " +
                          std::to_string(src.size()));
    }
    switch (type) {
        case GgmlType::F32: convert_elements<float>(src, dst, [](float v) { return v; }); break;
        case GgmlType::F16: convert_elements<std::uint16_t>(src, dst, fp16_bits_to_float); break;
        case GgmlType::BF16: convert_elements<std::uint16_t>(src, dst, bf16_bits_to_float); break;
        case GgmlType::Q4_0: dequantize_blocks<GgmlType::Q4_0>(src, dst); break;
        case GgmlType::Q4_1: dequantize_blocks<GgmlType::Q4_1>(src, dst); break;
        case GgmlType::Q5_0: dequantize_blocks<GgmlType::Q5_0>(src, dst); break;
        case GgmlType::Q5_1: dequantize_blocks<GgmlType::Q5_1>(src, dst); break;
        case GgmlType::Q8_0: dequantize_blocks<GgmlType::Q8_0>(src, dst); break;
        case GgmlType::Q2_K: dequantize_blocks<GgmlType::Q2_K>(src, dst); break;
        case GgmlType::Q3_K: dequantize_blocks<GgmlType::Q3_K>(src, dst); break;
        case GgmlType::Q4_K: dequantize_blocks<GgmlType::Q4_K>(src, dst); break;
        case GgmlType::Q5_K: dequantize_blocks<GgmlType::Q5_K>(src, dst); break;
        case GgmlType::Q6_K: dequantize_blocks<GgmlType::Q6_K>(src, dst); break;
        case GgmlType::Q8_K: dequantize_blocks<GgmlType::Q8_K>(src, dst); break;
        default: break;  // unreachable: can_dequantize checked above
    }
}

}  // namespace qsafe
