#pragma once
// The 512-bit half of qsafe's raw x86 intrinsics (the 256-bit half: kernels/arch/x86_intrinsics.hpp): two
// 32-code chunks of 4-bit codes per register, in the "pair order" the 512-bit integer kernel and its
// activations share (kernels/chunk_layout.hpp), and their dot products with int8 (vpdpbusd, or maddubs +
// madd without VNNI) and int16 activations (vpdpwssd, or madd + add).
//
// Codes stay unsigned (0..15): vpdpbusd multiplies unsigned bytes by signed ones (maddubs cannot saturate:
// 15 x 127 x 2 < 32767), so no per-chunk zero-point subtraction is needed; the kernel applies the zero point
// through the activations' chunk sums. Compiled only where the translation unit targets AVX-512BW.
#include <cstddef>
#include <cstdint>

#include "qsafe/kernels/arch/x86_intrinsics.hpp"

#if XSIMD_WITH_AVX2 && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#define QSAFE_HAS_X86_PAIR_KERNEL 1
#else
#define QSAFE_HAS_X86_PAIR_KERNEL 0
#endif

namespace qsafe::kernels {

#if QSAFE_HAS_X86_PAIR_KERNEL
namespace x86 {
inline namespace target_avx512bw {
namespace pair {

/// Chunks c and c + 1 of a row (packed codes at `p`), unsigned, in pair order: 16-byte quarters
/// [c bytes 0-15, c+1 bytes 0-15, c bytes 16-31, c+1 bytes 16-31] of the two chunks' 256-bit decodings
/// (x86_intrinsics.hpp's chunk order): one 32-byte broadcast load, the upper half shifted by a nibble.
inline __m512i decode_nibble_pair(const std::uint8_t* p) noexcept {
    const __m512i both = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    const __m512i shifted = _mm512_srlv_epi64(both, _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0));
    return _mm512_and_si512(shifted, _mm512_set1_epi8(0x0F));
}

/// sum of codes x int8 activations (64 bytes, pair order): 16 int32 lanes, 128-bit quarter k holding
/// partial sums of chunk c + (k & 1).
inline __m512i dot_int8(__m512i codes, const std::int8_t* x) noexcept {
    const __m512i xv = _mm512_loadu_si512(x);
#if defined(__AVX512VNNI__)
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, xv);
#else
    return _mm512_madd_epi16(_mm512_maddubs_epi16(codes, xv), _mm512_set1_epi16(1));
#endif
}

/// The pair's codes widened to int16 once per row and pair, shared by every activation vector of a tile:
/// `low` holds quarters 0-1 (bytes 0-15 of chunks c and c + 1), `high` quarters 2-3.
struct WideCodes {
    __m512i low, high;
};
inline WideCodes widen(__m512i codes) noexcept {
    return {_mm512_cvtepu8_epi16(_mm512_castsi512_si256(codes)), _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(codes, 1))};
}

/// sum of codes x int16 activations (128 values, pair order): 16 int32 lanes, lanes 0-7 of chunk c and
/// 8-15 of chunk c + 1. q <= 15 and |x| <= 32767: each pair sum fits int32.
inline __m512i dot_int16(const WideCodes& w, const std::int16_t* x) noexcept {
    const __m512i x_low = _mm512_loadu_si512(x);
    const __m512i x_high = _mm512_loadu_si512(x + 32);
#if defined(__AVX512VNNI__)
    return _mm512_dpwssd_epi32(_mm512_madd_epi16(w.low, x_low), w.high, x_high);
#else
    return _mm512_add_epi32(_mm512_madd_epi16(w.low, x_low), _mm512_madd_epi16(w.high, x_high));
#endif
}

/// Lane k of a dot product belongs to chunk c + chunk_of_lane(k): the int8 and int16 products lay their
/// sums out differently.
template <class Code>
constexpr int chunk_of_lane(int k) noexcept {
    return sizeof(Code) == 1 ? (k / 4) % 2 : k / 8;
}

/// Index vector that spreads factors[2j] and factors[2j + 1] (of eight per-chunk factors) over the lanes
/// of a dot product of pair j.
template <class Code>
inline __m512i factor_spread(int j) noexcept {
    alignas(64) std::int32_t idx[16];
    for (int k = 0; k < 16; ++k) idx[k] = 2 * j + chunk_of_lane<Code>(k);
    return _mm512_load_si512(idx);
}

/// acc + float(sums) * factor, the factor of each lane's chunk taken from the eight per-chunk factors.
inline __m512 scale_add(__m512i sums, __m256 factors, __m512i spread, __m512 acc) noexcept {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(factors)), acc);
}

/// 1.0 in lanes 0 .. count - 1, 0.0 above.
inline __m256 first_lanes(std::size_t count) noexcept {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i below = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), lane);
    return _mm256_and_ps(_mm256_castsi256_ps(below), _mm256_set1_ps(1.0f));
}

/// acc minus the eight lanes of `v` (from lanes 0-7).
inline __m512 subtract8(__m512 acc, __m256 v) noexcept { return _mm512_sub_ps(acc, _mm512_zextps256_ps512(v)); }

inline float reduce(__m512 v) noexcept { return _mm512_reduce_add_ps(v); }

/// The lane sums of four registers, as the four lanes of one: halves added, then three horizontal adds.
inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) noexcept {
    const auto half = [](__m512 v) noexcept {
        return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    };
    const __m256 ab = _mm256_hadd_ps(half(a), half(b));
    const __m256 cd = _mm256_hadd_ps(half(c), half(d));
    const __m256 abcd = _mm256_hadd_ps(ab, cd);  // lanes 0-3: a b c d over lanes 0-3 of the halves, 4-7: the rest
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// One chunk outside the pairs (the last of an odd count, or a half chunk), in the 256-bit chunk order, its
// codes unsigned as above: 8 int32 partial sums.
inline __m256i dot_int8_single(__m256i codes, const std::int8_t* x) noexcept {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
#if defined(__AVX512VNNI__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), codes, xv);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, xv), _mm256_set1_epi16(1));
#endif
}
inline __m256i dot_int16_single(__m256i codes, const std::int16_t* x) noexcept {
    const __m512i wide = _mm512_cvtepu8_epi16(codes);
    const __m512i sums = _mm512_madd_epi16(wide, _mm512_loadu_si512(x));
    return _mm256_add_epi32(_mm512_castsi512_si256(sums), _mm512_extracti64x4_epi64(sums, 1));
}

}  // namespace pair
}  // namespace target_avx512bw
}  // namespace x86
#endif  // QSAFE_HAS_X86_PAIR_KERNEL

}  // namespace qsafe::kernels
