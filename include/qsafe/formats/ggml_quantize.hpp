#pragma once
// Reference round-to-nearest quantizers producing ggml blocks, with the arithmetic of ggml's
// quantize_row_*_ref so the bytes of a file qsafe writes match what llama.cpp's reference would write.
// K-quant quantizers (which search scales) are not here yet.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>

#include "qsafe/core/error.hpp"
#include "qsafe/core/half.hpp"
#include "qsafe/formats/ggml_blocks.hpp"
#include "qsafe/formats/ggml_types.hpp"

namespace qsafe {

namespace ggml::detail {

inline BlockQ4_0 quantize_block_q4_0(const float* x) noexcept {
    float amax = 0.0f;  // the value with the largest magnitude, keeping its sign, maps to q = 0
    float max = 0.0f;
    for (int j = 0; j < qk4_0; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_0 b{};
    b.d = to_fp16(d);
    for (int j = 0; j < qk4_0 / 2; ++j) {
        const auto q0 = std::min(15, static_cast<int>(static_cast<std::int8_t>(x[j] * id + 8.5f)));
        const auto q1 = std::min(15, static_cast<int>(static_cast<std::int8_t>(x[j + qk4_0 / 2] * id + 8.5f)));
        b.qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
    }
    return b;
}

inline void min_max(const float* x, int n, float& min, float& max) noexcept {
    min = std::numeric_limits<float>::max();
    max = -std::numeric_limits<float>::max();
    for (int j = 0; j < n; ++j) {
        min = std::min(min, x[j]);
        max = std::max(max, x[j]);
    }
}

inline BlockQ4_1 quantize_block_q4_1(const float* x) noexcept {
    float min = 0.0f;
    float max = 0.0f;
    min_max(x, qk4_1, min, max);
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_1 b{};
    b.d = to_fp16(d);
    b.m = to_fp16(min);
    for (int j = 0; j < qk4_1 / 2; ++j) {
        const auto q0 = std::min(15, static_cast<int>(static_cast<std::int8_t>((x[j] - min) * id + 0.5f)));
        const auto q1 = std::min(15, static_cast<int>(static_cast<std::int8_t>((x[j + 16] - min) * id + 0.5f)));
        b.qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
    }
    return b;
}

inline void store_qh(std::uint8_t (&qh)[4], std::uint32_t value) noexcept {
    std::memcpy(qh, &value, sizeof(value));
}

inline BlockQ5_0 quantize_block_q5_0(const float* x) noexcept {
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < qk5_0; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ5_0 b{};
    b.d = to_fp16(d);
    std::uint32_t qh = 0;
    for (int j = 0; j < qk5_0 / 2; ++j) {
        const auto q0 =
            static_cast<unsigned>(std::min(31, static_cast<int>(static_cast<std::int8_t>(x[j] * id + 16.5f))));
        const auto q1 =
            static_cast<unsigned>(std::min(31, static_cast<int>(static_cast<std::int8_t>(x[j + 16] * id + 16.5f))));
        b.qs[j] = static_cast<std::uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
        qh |= ((q0 & 0x10u) >> 4) << j;
        qh |= ((q1 & 0x10u) >> 4) << (j + 16);
    }
    store_qh(b.qh, qh);
    return b;
}

inline BlockQ5_1 quantize_block_q5_1(const float* x) noexcept {
    float min = 0.0f;
    float max = 0.0f;
    min_max(x, qk5_1, min, max);
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ5_1 b{};
    b.d = to_fp16(d);
    b.m = to_fp16(min);
    std::uint32_t qh = 0;
    for (int j = 0; j < qk5_1 / 2; ++j) {
        const auto q0 = static_cast<unsigned>(static_cast<std::uint8_t>((x[j] - min) * id + 0.5f));
        const auto q1 = static_cast<unsigned>(static_cast<std::uint8_t>((x[j + 16] - min) * id + 0.5f));
        b.qs[j] = static_cast<std::uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
        qh |= ((q0 & 0x10u) >> 4) << j;
        qh |= ((q1 & 0x10u) >> 4) << (j + 16);
    }
    store_qh(b.qh, qh);
    return b;
}

inline BlockQ8_0 quantize_block_q8_0(const float* x) noexcept {
    float amax = 0.0f;
    for (int j = 0; j < qk8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 b{};
    b.d = to_fp16(d);
    for (int j = 0; j < qk8_0; ++j) b.qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
    return b;
}

template <class Block, class Quantize>
void quantize_blocks(std::span<const float> src, std::span<std::byte> dst, Quantize quantize) noexcept {
    constexpr std::size_t n = 32;
    for (std::size_t i = 0; i < src.size() / n; ++i) {
        const Block b = quantize(src.data() + i * n);
        std::memcpy(dst.data() + i * sizeof(Block), &b, sizeof(Block));
    }
}

}  // namespace ggml::detail

/// True if quantize_row can produce the type.
constexpr bool can_quantize(GgmlType type) noexcept {
    switch (type) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
        case GgmlType::Q4_0:
        case GgmlType::Q4_1:
        case GgmlType::Q5_0:
        case GgmlType::Q5_1:
        case GgmlType::Q8_0: return true;
        default: return false;
    }
}

/// Quantizes src into dst (exactly src.size() / block_size * bytes_per_block bytes). Throws shape_error on
/// sizes, config_error for a type without a quantizer and numeric_error on NaN/Inf input (which would make
/// ggml's float-to-int casts undefined).
inline void quantize_row(GgmlType type, std::span<const float> src, std::span<std::byte> dst) {
    using namespace ggml::detail;
    const std::string name(ggml_type_name(type));
    if (!can_quantize(type)) throw config_error("quantize_row: no quantizer for ggml type " + name);
    const std::uint32_t block = ggml_block_size(type);
    if (src.size() % block != 0) {
        throw shape_error("quantize_row: " + std::to_string(src.size()) + " weights is not a multiple of the " + name +
                          " block size " + std::to_string(block));
    }
    const std::uint64_t bytes = src.size() / block * ggml_bytes_per_block(type);
    if (dst.size() != bytes) {
        throw shape_error("quantize_row: " + std::to_string(src.size()) + " " + name + " weights need " +
                          std::to_string(bytes) + " bytes, got " + std::to_string(dst.size()));
    }
    if (type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16) {
        for (std::size_t i = 0; i < src.size(); ++i) {
            if (!std::isfinite(src[i])) {
                throw numeric_error("quantize_row: weight " + std::to_string(i) + " is not finite (" +
                                    std::to_string(src[i]) + ")");
            }
        }
    }
    const auto store16 = [&](std::size_t i, std::uint16_t bits) { std::memcpy(dst.data() + 2 * i, &bits, 2); };
    switch (type) {
        case GgmlType::F32: std::memcpy(dst.data(), src.data(), src.size_bytes()); break;
        case GgmlType::F16:
            for (std::size_t i = 0; i < src.size(); ++i) store16(i, float_to_fp16_bits(src[i]));
            break;
        case GgmlType::BF16:
            for (std::size_t i = 0; i < src.size(); ++i) store16(i, float_to_bf16_bits(src[i]));
            break;
        case GgmlType::Q4_0: quantize_blocks<ggml::BlockQ4_0>(src, dst, quantize_block_q4_0); break;
        case GgmlType::Q4_1: quantize_blocks<ggml::BlockQ4_1>(src, dst, quantize_block_q4_1); break;
        case GgmlType::Q5_0: quantize_blocks<ggml::BlockQ5_0>(src, dst, quantize_block_q5_0); break;
        case GgmlType::Q5_1: quantize_blocks<ggml::BlockQ5_1>(src, dst, quantize_block_q5_1); break;
        case GgmlType::Q8_0: quantize_blocks<ggml::BlockQ8_0>(src, dst, quantize_block_q8_0); break;
        default: break;  // unreachable: can_quantize checked above
    }
}

}  // namespace qsafe
