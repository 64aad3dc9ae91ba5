#pragma once
// Writes a file so that readers only ever see the old content or the complete new one: the bytes go to a
// temporary file in the same folder (same filesystem, so the rename is atomic), which is closed and then
// renamed over the target. On any error the temporary file is removed and io_error names the file.
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

#include "qsafe/core/error.hpp"

namespace qsafe::io {

/// Calls produce(sink) where sink(const void* data, std::size_t size) appends bytes, then moves the result
/// into place at `path`.
template <class Produce>
void atomic_write(const std::filesystem::path& path, Produce&& produce) {
    static std::atomic<unsigned> counter{0};
    std::filesystem::path temp = path;
    temp += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    try {
        {
            std::ofstream out(temp, std::ios::binary | std::ios::trunc);
            if (!out) throw io_error(temp.string() + ": cannot create: " + std::strerror(errno));
            produce([&](const void* data, std::size_t size) {
                out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
                if (!out) throw io_error(temp.string() + ": write failed: " + std::strerror(errno));
            });
            out.close();
            if (!out) throw io_error(temp.string() + ": close failed: " + std::strerror(errno));
        }
        std::error_code ec;
        std::filesystem::rename(temp, path, ec);
        if (ec) throw io_error(path.string() + ": cannot move " + temp.string() + " into place: " + ec.message());
    } catch (...) {
        std::error_code ignored;
        std::filesystem::remove(temp, ignored);
        throw;
    }
}

/// The whole text as the file's new content, atomically.
inline void atomic_write_text(const std::filesystem::path& path, std::string_view text) {
    atomic_write(path, [&](auto&& sink) { sink(text.data(), text.size()); });
}

}  // namespace qsafe::io
