#pragma once
// Shared helpers of qsafe's libFuzzer harnesses (tests/fuzz/). qsafe's readers take file paths (and map
// them), so every harness writes its input into a per-process scratch folder first.
//
// Exception policy of the harnesses: only qsafe::error (core/error.hpp: format_error, io_error, shape_error,
// config_error, numeric_error) is an expected outcome of a malformed input. Anything else escaping from qsafe
// code — std::bad_alloc, std::length_error, std::out_of_range, nlohmann::json exceptions, ... — is a bug: it is
// deliberately not caught, so libFuzzer reports it as a crash (uncaught exception -> abort).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "qsafe/core/error.hpp"

namespace qsafe_fuzz {

/// Tensors with more elements than this are not dequantized / converted: keeps every input fast.
inline constexpr std::uint64_t max_elements = std::uint64_t{1} << 20;

/// /tmp/qsafe_fuzz_<pid>/ (created on first use, removed at exit).
inline const std::filesystem::path& scratch_dir() {
    static const std::filesystem::path dir = [] {
        const char* base = std::getenv("QSAFE_FUZZ_TMP");
        std::filesystem::path d = std::filesystem::path(base && *base ? base : "/tmp") /
                                  ("qsafe_fuzz_" + std::to_string(::getpid()));
        std::filesystem::create_directories(d);
        std::atexit([] {
            std::error_code ignored;
            std::filesystem::remove_all(scratch_dir(), ignored);
        });
        return d;
    }();
    return dir;
}

/// Writes bytes to scratch_dir()/name (replacing it) and returns the path. Aborts on I/O failure: that is a
/// problem of the machine, not of qsafe.
inline std::filesystem::path write_file(const std::string& name, const void* data, std::size_t size) {
    const std::filesystem::path path = scratch_dir() / name;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) {
        std::perror(path.c_str());
        std::abort();
    }
    if (size > 0 && std::fwrite(data, 1, size, f) != size) {
        std::perror(path.c_str());
        std::abort();
    }
    if (std::fclose(f) != 0) std::abort();
    return path;
}

inline std::filesystem::path write_file(const std::string& name, std::string_view text) {
    return write_file(name, text.data(), text.size());
}

inline void remove_file(const std::string& name) {
    std::error_code ignored;
    std::filesystem::remove(scratch_dir() / name, ignored);
}

/// Splits `data` into a part whose length is given by the first 4 bytes (little-endian, clamped to what is
/// there) and the rest: lets one input carry two files.
struct Split {
    std::string_view first, second;
};
inline Split split_input(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return {{}, {reinterpret_cast<const char*>(data), size}};
    std::uint32_t n = 0;
    std::memcpy(&n, data, 4);
    const std::size_t rest = size - 4;
    const std::size_t first = n < rest ? n : rest;
    const char* p = reinterpret_cast<const char*>(data) + 4;
    return {{p, first}, {p + first, rest - first}};
}

/// With QSAFE_FUZZ_VERBOSE=1 in the environment, prints the qsafe error an input ended with (to check that
/// seeds load, e.g. `QSAFE_FUZZ_VERBOSE=1 build/fuzz/tests/fuzz/fuzz_gguf build/fuzz/corpus/gguf/*`).
inline void rejected(const qsafe::error& e) {
    static const bool verbose = [] {
        const char* v = std::getenv("QSAFE_FUZZ_VERBOSE");
        return v != nullptr && *v != '\0' && *v != '0';
    }();
    if (verbose) std::fprintf(stderr, "qsafe error: %s\n", e.what());
}

/// Keeps a computed value alive so the optimiser cannot drop the work that produced it.
template <class T>
inline void consume(const T& value) {
    asm volatile("" : : "r"(&value) : "memory");
}

}  // namespace qsafe_fuzz
