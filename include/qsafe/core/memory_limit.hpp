#pragma once
// How much memory this machine has, and a check that a model's unavoidable allocations fit in it before any
// is made: a corrupt or hostile file (or simply too large a model) is refused with the numbers, instead of
// ending in std::bad_alloc, in the kernel's OOM killer or in hours of swapping.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "qsafe/core/error.hpp"

namespace qsafe {

/// Physical memory of the machine (or of the container, when a cgroup limit is lower), in bytes.
inline std::uint64_t physical_memory_bytes() {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    std::uint64_t bytes = pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) : 0;
    // cgroup v2 limit ("max" = none); v1 reports a huge number when unlimited, which min() ignores.
    for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
        if (std::FILE* f = std::fopen(path, "r")) {
            unsigned long long limit = 0;
            if (std::fscanf(f, "%llu", &limit) == 1 && limit > 0 && (bytes == 0 || limit < bytes)) bytes = limit;
            std::fclose(f);
        }
    }
    return bytes;
}

inline std::string gibibytes(std::uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
    return text;
}

/// Throws config_error naming `source`, `what` and both sizes when `needed` bytes exceed the machine's memory.
inline void require_memory(std::uint64_t needed, const std::string& source, const std::string& what) {
    const std::uint64_t have = physical_memory_bytes();
    if (have != 0 && needed > have)
        throw config_error(source + ": " + what + " need " + gibibytes(needed) + " (" + std::to_string(needed) +
                           " bytes), more than this machine's " + gibibytes(have) + " of memory");
}

}  // namespace qsafe
