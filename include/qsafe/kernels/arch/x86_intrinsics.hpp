#pragma once
// qsafe's raw x86 intrinsics (with their 512-bit half, x86_avx512_intrinsics.hpp): decoding of packed code
// chunks into bytes, integer dot products of codes with int8 or int16 activations, table lookups and fp16
// loads for the x86 quantized kernels.
// Everything is compiled only when the translation unit targets AVX2 (or AVX-512BW, whose flags imply it);
// `has_x86_kernels<Arch>` tells the kernels whether this path exists, and they fall back to the portable
// xsimd kernel otherwise. VNNI (`vpdpbusd`, `vpdpwssd`) replaces maddubs + madd (madd + add) when the compiler targets it.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "qsafe/core/simd_headers.hpp"  // first: before Eigen / xsimd (see there)
#include <xsimd/xsimd.hpp>

#include "qsafe/core/half.hpp"
#include "qsafe/formats/packed_codes.hpp"
#include "qsafe/kernels/chunk_layout.hpp"

#if XSIMD_WITH_AVX2
#include <immintrin.h>
#endif

namespace qsafe::kernels {

/// True when Arch gets the hand-written x86 kernels (AVX2 or AVX-512BW, and the TU is compiled for it).
template <class Arch>
inline constexpr bool has_x86_kernels =
#if XSIMD_WITH_AVX2
    std::is_base_of_v<xsimd::avx2, Arch> || std::is_base_of_v<xsimd::avx512bw, Arch>;
#else
    false;
#endif

#if XSIMD_WITH_AVX2
namespace x86 {
// Keyed on the TU's target so that helpers compiled for AVX-512 in one TU and for AVX2 in another are
// distinct symbols (the linker would otherwise keep one copy of each inline function for both).
#if defined(__AVX512BW__)
inline namespace target_avx512bw {
#else
inline namespace target_avx2 {
#endif

/// The 256-bit xsimd arch the x86 kernels do their float math in.
#if XSIMD_WITH_FMA3_AVX2
using vec_arch = xsimd::fma3<xsimd::avx2>;
#else
using vec_arch = xsimd::avx2;
#endif
using f8 = xsimd::batch<float, vec_arch>;

namespace detail {
struct ShuffleTables {
    alignas(32) std::uint8_t bit_byte[32];  // 1-bit high plane: byte of the 4-byte plane holding position p's bit
    alignas(32) std::uint8_t bit_mask[32];  // ... and the bit
};

constexpr ShuffleTables make_bit_tables(ChunkOrder order) {
    ShuffleTables t{};
    for (int p = 0; p < 32; ++p) {
        const int index = chunk_source(order, p);
        const int unit = index / 16, code = index % 16;
        t.bit_byte[p] = static_cast<std::uint8_t>(2 * unit + code / 8);
        t.bit_mask[p] = static_cast<std::uint8_t>(1u << (code % 8));
    }
    return t;
}

// 6-bit: the 2-bit high plane is decoded in crumb order, then moved in-lane to nibble order.
struct CrumbToNibble {
    alignas(32) std::uint8_t index[32];
};
constexpr CrumbToNibble make_crumb_to_nibble() {
    CrumbToNibble t{};
    for (int p = 0; p < 32; ++p) {
        const int from = chunk_position(ChunkOrder::crumb, chunk_source(ChunkOrder::nibble, p));
        t.index[p] = static_cast<std::uint8_t>(from % 16);  // same 128-bit lane (checked below)
    }
    return t;
}
constexpr bool crumb_to_nibble_stays_in_lane() {
    for (int p = 0; p < 32; ++p)
        if (chunk_position(ChunkOrder::crumb, chunk_source(ChunkOrder::nibble, p)) / 16 != p / 16) return false;
    return true;
}
static_assert(crumb_to_nibble_stays_in_lane(), "6-bit high plane shuffle must not cross 128-bit lanes");

inline constexpr ShuffleTables nibble_bits = make_bit_tables(ChunkOrder::nibble);
inline constexpr ShuffleTables crumb_bits = make_bit_tables(ChunkOrder::crumb);
inline constexpr CrumbToNibble crumb_to_nibble = make_crumb_to_nibble();

inline __m256i load_table(const std::uint8_t* t) noexcept {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(t));
}

// Expands the 32 bits of a chunk's 1-bit plane into bytes equal to `value` or 0, in the given order.
inline __m256i expand_bit_plane(const std::uint8_t* plane, const ShuffleTables& t, char value) noexcept {
    std::uint32_t word;
    std::memcpy(&word, plane, 4);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(word)), load_table(t.bit_byte));
    const __m256i mask = load_table(t.bit_mask);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, mask), mask), _mm256_set1_epi8(value));
}

inline __m256i decode_crumbs(const std::uint8_t* plane) noexcept {
    std::uint64_t word;
    std::memcpy(&word, plane, 8);
    const __m256i shifted =
        _mm256_srlv_epi64(_mm256_set1_epi64x(static_cast<long long>(word)), _mm256_setr_epi64x(0, 2, 4, 6));
    return _mm256_and_si256(shifted, _mm256_set1_epi8(0x03));
}

inline __m256i decode_nibbles(const std::uint8_t* plane) noexcept {
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(plane)));
    const __m256i shifted = _mm256_srlv_epi32(both, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F));
}
}  // namespace detail

/// Bytes of one plane for one 32-code chunk.
constexpr std::size_t chunk_plane_bytes(int plane_bits) noexcept { return 4u * static_cast<std::size_t>(plane_bits); }

/// Decodes the 32 codes of one chunk (low and high plane pointers at the chunk) into bytes in
/// chunk_order(Bits) (kernels/chunk_layout.hpp).
template <int Bits>
inline __m256i decode_chunk(const std::uint8_t* low, [[maybe_unused]] const std::uint8_t* high) noexcept {
    if constexpr (Bits == 8) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(low));
    } else if constexpr (Bits == 4) {
        return detail::decode_nibbles(low);
    } else if constexpr (Bits == 5) {
        return _mm256_or_si256(detail::decode_nibbles(low), detail::expand_bit_plane(high, detail::nibble_bits, 0x10));
    } else if constexpr (Bits == 6) {
        const __m256i hi = _mm256_shuffle_epi8(detail::decode_crumbs(high), detail::load_table(detail::crumb_to_nibble.index));
        return _mm256_or_si256(detail::decode_nibbles(low), _mm256_slli_epi16(hi, 4));  // hi <= 3: no carry
    } else if constexpr (Bits == 2) {
        return detail::decode_crumbs(low);
    } else {
        static_assert(Bits == 3, "x86 decode_chunk: unsupported bit width");
        return _mm256_or_si256(detail::decode_crumbs(low), detail::expand_bit_plane(high, detail::crumb_bits, 0x04));
    }
}

/// The last chunk of a row whose padded width is an odd number of units: only unit 0 exists in memory, so
/// it is copied next to a zero unit first (zero activations make the missing unit contribute nothing).
template <int Bits>
inline __m256i decode_half_chunk(const std::uint8_t* low, const std::uint8_t* high) noexcept {
    constexpr PlaneSplit split = plane_split(Bits);
    alignas(32) std::uint8_t lo[32] = {};
    alignas(32) std::uint8_t hi[32] = {};
    // Unit 0 of a chunk is the first half of the chunk's bytes in every plane.
    std::memcpy(lo, low, chunk_plane_bytes(split.low_bits) / 2);
    if constexpr (split.high_bits != 0) std::memcpy(hi, high, chunk_plane_bytes(split.high_bits) / 2);
    return decode_chunk<Bits>(lo, hi);
}

/// One weight row's packed planes (low plane, then the high plane after padded_cols * low_bits / 8 bytes),
/// decoded one 32-code chunk at a time: the addressing both chunk kernels share.
template <int Bits>
struct RowChunks {
    static constexpr PlaneSplit split = plane_split(Bits);
    const std::uint8_t* low = nullptr;
    const std::uint8_t* high = nullptr;

    RowChunks() = default;
    RowChunks(const std::uint8_t* row_codes, std::size_t padded_cols) noexcept
        : low(row_codes), high(row_codes + padded_cols * static_cast<std::size_t>(split.low_bits) / 8) {}

    /// Chunk c of the row, in chunk_order(Bits).
    __m256i decode(std::size_t c) const noexcept {
        return decode_chunk<Bits>(low + c * chunk_plane_bytes(split.low_bits), high + c * chunk_plane_bytes(split.high_bits));
    }
    /// Chunk c when only its first 16-code unit exists (a row whose padded width is an odd number of units).
    __m256i decode_half(std::size_t c) const noexcept {
        return decode_half_chunk<Bits>(low + c * chunk_plane_bytes(split.low_bits), high + c * chunk_plane_bytes(split.high_bits));
    }
};

/// Offset of 8-bit codes in the integer dot product: they are used as signed q - 128 so that maddubs
/// cannot saturate (|q - 128| <= 128, |x| <= 127); their zero point is applied outside (see signed_codes).
template <int Bits>
inline constexpr int int8_code_offset = Bits == 8 ? 128 : 0;

/// sum over the chunk of w * x for signed weights w (|w| <= 128, so w = -128 works too) and int8 x, as 8
/// int32 partial sums converted to float. maddubs wants one unsigned operand: |w| times x with w's sign.
inline f8 dot_signed_chunk(__m256i w, __m256i x) noexcept {
    const __m256i uw = _mm256_sign_epi8(w, w);  // |w| as unsigned bytes (-128 stays 0x80 = 128)
    const __m256i sx = _mm256_sign_epi8(x, w);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), uw, sx);
#else
    const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(uw, sx), _mm256_set1_epi16(1));
#endif
    return _mm256_cvtepi32_ps(sums);
}

/// The chunk's codes as signed bytes for dot_signed_chunk. With fewer than 8 bits, q - z (|q - z| < 128):
/// the zero point is applied exactly inside the integer product. 8-bit codes cannot carry their zero point
/// (q - z spans -255..255); they are used as q - 128 and the kernel subtracts the rest per group.
template <int Bits>
inline __m256i signed_codes(__m256i q, [[maybe_unused]] std::uint8_t zero) noexcept {
    if constexpr (Bits == 8)
        return _mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80)));
    else
        return _mm256_sub_epi8(q, _mm256_set1_epi8(static_cast<char>(zero)));
}

inline __m256i load_bytes(const std::int8_t* p) noexcept { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }

/// A chunk's 32 signed codes (from signed_codes) widened to int16: register bytes 0-15 in `low`, 16-31 in
/// `high`. Done once per row and chunk, shared by every activation vector of a tile.
struct WideSignedCodes {
    __m256i low, high;
};
inline WideSignedCodes widen_signed_codes(__m256i w) noexcept {
    return {_mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1))};
}

/// sum over the chunk of w * x for int16 activations x (32 values in the chunk's register order, 32-byte
/// aligned), as 8 int32 partial sums converted to float. |w| <= 128 and |x| <= 32767: no overflow.
inline f8 dot_wide_chunk(const WideSignedCodes& w, const std::int16_t* x) noexcept {
    const __m256i x_low = _mm256_load_si256(reinterpret_cast<const __m256i*>(x));
    const __m256i x_high = _mm256_load_si256(reinterpret_cast<const __m256i*>(x + 16));
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    const __m256i sums = _mm256_dpwssd_epi32(_mm256_madd_epi16(w.low, x_low), w.high, x_high);
#else
    const __m256i sums = _mm256_add_epi32(_mm256_madd_epi16(w.low, x_low), _mm256_madd_epi16(w.high, x_high));
#endif
    return _mm256_cvtepi32_ps(sums);
}

/// The 32 codes of a chunk register widened to int32, eight at a time (register bytes 8k..8k+7).
struct WideCodes {
    __m256i part[4];
};
inline WideCodes widen_codes(__m256i q) noexcept {
    const __m128i lo = _mm256_castsi256_si128(q);
    const __m128i hi = _mm256_extracti128_si256(q, 1);
    return {{_mm256_cvtepu8_epi32(lo), _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)), _mm256_cvtepu8_epi32(hi),
             _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))}};
}
inline f8 to_float(__m256i v) noexcept { return _mm256_cvtepi32_ps(v); }

/// Transposes the 8 x 8 floats held in r[0..7] (row j in r[j]) in place: unpacks, 4 x 4 shuffles, lane swaps.
inline void transpose8x8(__m256 r[8]) noexcept {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/// Table lookups of int32 indices: up to 8 entries (one permute), 16 entries (two permutes + blend on
/// bit 3), any size (gather).
inline f8 lookup8(f8 table, __m256i index) noexcept { return _mm256_permutevar8x32_ps(table, index); }
inline f8 lookup16(f8 low, f8 high, __m256i index) noexcept {
    const __m256 a = _mm256_permutevar8x32_ps(low, index);
    const __m256 b = _mm256_permutevar8x32_ps(high, index);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(index, 28)));
}
inline f8 lookup_gather(const float* table, __m256i index) noexcept { return _mm256_i32gather_ps(table, index, 4); }

/// Eight fp16 values as floats.
inline f8 load_fp16x8(const fp16_t* p) noexcept {
#if defined(__F16C__)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
    alignas(32) float f[8];
    for (int i = 0; i < 8; ++i) f[i] = to_float(p[i]);
    return f8::load_aligned(f);
#endif
}
inline float fp16_to_float(fp16_t h) noexcept {
#if defined(__F16C__)
    return _cvtsh_ss(h.bits);
#else
    return to_float(h);
#endif
}
inline f8 load_scales8(const fp16_t* p) noexcept { return load_fp16x8(p); }
inline f8 load_scales8(const float* p) noexcept { return f8::load_unaligned(p); }
inline float load_scale(fp16_t s) noexcept { return fp16_to_float(s); }
inline float load_scale(float s) noexcept { return s; }

/// Eight uint8 values as floats.
inline f8 load_u8x8(const std::uint8_t* p) noexcept {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(word))));
}

}  // namespace target_*
}  // namespace x86
#endif  // XSIMD_WITH_AVX2

}  // namespace qsafe::kernels
