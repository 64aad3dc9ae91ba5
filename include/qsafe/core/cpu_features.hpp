#pragma once
// What the CPU running the program can do, read once from CPUID (and XGETBV: the operating system must
// save the wider registers too), and the instruction-set level qsafe's dispatched kernels run at.
//
// Levels, each a superset of the one before:
//   portable     any x86-64 (SSE2) or non-x86 CPU: the xsimd kernels of the program's own flags
//   avx2         AVX2 + FMA + F16C (x86-64-v3): the hand-written chunk kernels
//   avx512bw     AVX-512 F/BW/VL/DQ/CD (x86-64-v4)
//   avx512vnni   + AVX-512 VNNI: vpdpbusd / vpdpwssd in the integer-activation kernels
// The active level is the best the CPU has, or the lower one the environment variable QSAFE_ISA names
// (for tests and bug reports: QSAFE_ISA=avx2 runs the AVX2 kernels on an AVX-512 machine). Asking for a
// level the CPU lacks is an error naming the missing features, never a SIGILL.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define QSAFE_X86 1
#else
#define QSAFE_X86 0
#endif

#include "qsafe/core/error.hpp"

namespace qsafe {

struct CpuFeatures {
    std::string vendor;
    std::string brand;  // "Intel(R) Xeon(R) ...", "AMD Ryzen ..."
    bool sse2 = false, avx = false, avx2 = false, fma = false, f16c = false, bmi2 = false;
    bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512cd = false;
    bool avx512vnni = false, avx512bf16 = false, avx_vnni = false;
    bool amx_tile = false, amx_int8 = false, amx_bf16 = false;
    bool os_saves_ymm = false, os_saves_zmm = false, os_saves_amx = false;
};

enum class IsaLevel { portable = 0, avx2 = 1, avx512bw = 2, avx512vnni = 3 };
inline constexpr std::array<IsaLevel, 4> all_isa_levels{IsaLevel::portable, IsaLevel::avx2, IsaLevel::avx512bw,
                                                        IsaLevel::avx512vnni};

constexpr const char* isa_name(IsaLevel level) noexcept {
    switch (level) {
        case IsaLevel::avx2: return "avx2";
        case IsaLevel::avx512bw: return "avx512bw";
        case IsaLevel::avx512vnni: return "avx512vnni";
        default: return "portable";
    }
}

/// "portable", "avx2", "avx512bw", "avx512vnni" (as QSAFE_ISA spells them); config_error otherwise.
inline IsaLevel parse_isa(std::string_view name) {
    for (IsaLevel level : all_isa_levels)
        if (name == isa_name(level)) return level;
    std::string message = "unknown instruction-set level '";
    message += name;
    message += "' (known: portable, avx2, avx512bw, avx512vnni)";
    throw config_error(message);
}

namespace detail {
#if QSAFE_X86
struct CpuidRegs {
    unsigned a = 0, b = 0, c = 0, d = 0;
};
inline CpuidRegs cpuid(unsigned leaf, unsigned subleaf = 0) noexcept {
    CpuidRegs r;
    if (!__get_cpuid_count(leaf, subleaf, &r.a, &r.b, &r.c, &r.d)) return {};
    return r;
}
inline std::uint64_t xgetbv0() noexcept {
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (static_cast<std::uint64_t>(hi) << 32) | lo;
}
inline bool bit(unsigned reg, int n) noexcept { return ((reg >> n) & 1u) != 0; }
#endif
}  // namespace detail

/// Reads CPUID. Features whose registers the OS does not save (XCR0) are reported absent.
inline CpuFeatures detect_cpu_features() noexcept {
    CpuFeatures f;
#if QSAFE_X86
    using detail::bit;
    const auto leaf0 = detail::cpuid(0);
    char vendor[13] = {};
    for (int i = 0; i < 4; ++i) {
        vendor[i] = static_cast<char>(leaf0.b >> (8 * i));
        vendor[4 + i] = static_cast<char>(leaf0.d >> (8 * i));
        vendor[8 + i] = static_cast<char>(leaf0.c >> (8 * i));
    }
    f.vendor = vendor;
    if (detail::cpuid(0x80000000).a >= 0x80000004) {
        char brand[49] = {};
        for (unsigned leaf = 0; leaf < 3; ++leaf) {
            const auto r = detail::cpuid(0x80000002 + leaf);
            const unsigned words[4] = {r.a, r.b, r.c, r.d};
            for (int w = 0; w < 4; ++w)
                for (int i = 0; i < 4; ++i) brand[leaf * 16 + static_cast<unsigned>(w * 4 + i)] = static_cast<char>(words[w] >> (8 * i));
        }
        f.brand = brand;
        const auto first = f.brand.find_first_not_of(' ');
        f.brand = first == std::string::npos ? std::string() : f.brand.substr(first);
    }
    const unsigned max_leaf = leaf0.a;
    const auto leaf1 = detail::cpuid(1);
    f.sse2 = bit(leaf1.d, 26);
    const bool osxsave = bit(leaf1.c, 27);
    const std::uint64_t xcr0 = osxsave ? detail::xgetbv0() : 0;
    f.os_saves_ymm = (xcr0 & 0x6) == 0x6;                      // SSE + AVX state
    f.os_saves_zmm = f.os_saves_ymm && (xcr0 & 0xE0) == 0xE0;  // opmask, ZMM0-15 high halves, ZMM16-31
    f.os_saves_amx = (xcr0 & 0x60000) == 0x60000;             // XTILECFG + XTILEDATA
    f.avx = bit(leaf1.c, 28) && f.os_saves_ymm;
    f.fma = bit(leaf1.c, 12) && f.os_saves_ymm;
    f.f16c = bit(leaf1.c, 29) && f.os_saves_ymm;
    if (max_leaf >= 7) {
        const auto l7 = detail::cpuid(7, 0);
        const auto l7s1 = detail::cpuid(7, 1);
        f.avx2 = bit(l7.b, 5) && f.os_saves_ymm;
        f.bmi2 = bit(l7.b, 8);
        f.avx512f = bit(l7.b, 16) && f.os_saves_zmm;
        f.avx512dq = bit(l7.b, 17) && f.os_saves_zmm;
        f.avx512cd = bit(l7.b, 28) && f.os_saves_zmm;
        f.avx512bw = bit(l7.b, 30) && f.os_saves_zmm;
        f.avx512vl = bit(l7.b, 31) && f.os_saves_zmm;
        f.avx512vnni = bit(l7.c, 11) && f.os_saves_zmm;
        f.avx512bf16 = bit(l7s1.a, 5) && f.os_saves_zmm;
        f.avx_vnni = bit(l7s1.a, 4) && f.os_saves_ymm;
        f.amx_bf16 = bit(l7.d, 22) && f.os_saves_amx;
        f.amx_tile = bit(l7.d, 24) && f.os_saves_amx;
        f.amx_int8 = bit(l7.d, 25) && f.os_saves_amx;
    }
#endif
    return f;
}

/// The CPU's features, read once.
inline const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect_cpu_features();
    return features;
}

/// Features a level needs that `f` lacks, space-separated ("" when it can run).
inline std::string missing_features(IsaLevel level, const CpuFeatures& f) {
    std::string missing;
    // Appended piece by piece: `"x" + std::string(...)` trips GCC 12's false -Wrestrict (bug 105329) in
    // users' -Werror builds.
    auto need = [&](bool have, const char* name) {
        if (have) return;
        if (!missing.empty()) missing += ' ';
        missing += name;
    };
    if (level >= IsaLevel::avx2) {
        need(f.avx2, "avx2");
        need(f.fma, "fma");
        need(f.f16c, "f16c");
        need(f.bmi2, "bmi2");
    }
    if (level >= IsaLevel::avx512bw) {
        need(f.avx512f, "avx512f");
        need(f.avx512bw, "avx512bw");
        need(f.avx512vl, "avx512vl");
        need(f.avx512dq, "avx512dq");
        need(f.avx512cd, "avx512cd");
    }
    if (level >= IsaLevel::avx512vnni) need(f.avx512vnni, "avx512vnni");
    return missing;
}

/// The best level `f` can run.
inline IsaLevel best_isa(const CpuFeatures& f) {
    IsaLevel best = IsaLevel::portable;
    for (IsaLevel level : all_isa_levels)
        if (missing_features(level, f).empty()) best = level;
    return best;
}

/// The level QSAFE_ISA asks for (unset or empty: the best the CPU has). A level above the CPU's is a
/// config_error naming the missing features.
inline IsaLevel requested_isa(const CpuFeatures& f, const char* env_value) {
    const IsaLevel best = best_isa(f);
    if (env_value == nullptr || *env_value == '\0') return best;
    IsaLevel asked = IsaLevel::portable;
    try {
        asked = parse_isa(env_value);
    } catch (const config_error& e) {
        std::string message = "QSAFE_ISA=";
        message += env_value;
        message += ": ";
        message += e.what();
        throw config_error(message);
    }
    if (asked > best) {
        std::string message = "QSAFE_ISA=";
        message += env_value;
        message += ": this CPU lacks ";
        message += missing_features(asked, f);
        throw config_error(message);
    }
    return asked;
}

/// The level the including translation unit's own flags compile for (what its Eigen and xsimd code uses).
constexpr IsaLevel own_flags_isa() noexcept {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__AVX512CD__)
    return IsaLevel::avx512bw;
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    return IsaLevel::avx2;
#else
    return IsaLevel::portable;
#endif
}

/// The level dispatched kernels run at in this process: decided once, at the first call.
inline IsaLevel active_isa() {
    static const IsaLevel level = requested_isa(cpu_features(), std::getenv("QSAFE_ISA"));
    return level;
}

/// "avx2 fma f16c avx512f ..." — the features qsafe looks at that the CPU has.
inline std::string feature_list(const CpuFeatures& f) {
    std::string out;
    auto add = [&](bool have, const char* name) {
        if (!have) return;
        if (!out.empty()) out += ' ';
        out += name;
    };
    add(f.sse2, "sse2");
    add(f.avx, "avx");
    add(f.avx2, "avx2");
    add(f.fma, "fma");
    add(f.f16c, "f16c");
    add(f.bmi2, "bmi2");
    add(f.avx512f, "avx512f");
    add(f.avx512bw, "avx512bw");
    add(f.avx512vl, "avx512vl");
    add(f.avx512dq, "avx512dq");
    add(f.avx512cd, "avx512cd");
    add(f.avx512vnni, "avx512vnni");
    add(f.avx512bf16, "avx512bf16");
    add(f.avx_vnni, "avx_vnni");
    add(f.amx_tile, "amx_tile");
    add(f.amx_int8, "amx_int8");
    add(f.amx_bf16, "amx_bf16");
    return out;
}

}  // namespace qsafe
