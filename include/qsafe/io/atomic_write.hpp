#pragma once
// Writes a file so that readers only ever see the old content or the complete new one: the bytes go to a
// temporary file in the same folder (same filesystem, so the rename is atomic), which is closed, flushed to
// the disk (fsync) and then renamed over the target; the folder is flushed after the rename. A killed
// process leaves the old file or the new one; so does a power cut, which without the fsync could leave the
// new name pointing at a file whose data never reached the disk. On any error (a full disk included) the
// temporary file is removed, the previous file stays in place and io_error names the file.
#include <fcntl.h>
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

namespace detail {
/// fsync of a file (its data) or a folder (its entries). A folder that cannot be opened or synced is no
/// error (some filesystems refuse it); a file that cannot be synced is (its data may be lost, e.g. on ENOSPC).
inline void sync_to_disk(const std::filesystem::path& path, bool folder) {
    const int fd = ::open(path.c_str(), folder ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) {
        if (folder) return;
        throw io_error(path.string() + ": cannot open to flush: " + std::strerror(errno));
    }
    const int rc = ::fsync(fd);
    const int saved = errno;
    ::close(fd);
    if (rc != 0 && !folder) throw io_error(path.string() + ": flush to disk failed: " + std::strerror(saved));
}
}  // namespace detail

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
        detail::sync_to_disk(temp, false);
        std::error_code ec;
        std::filesystem::rename(temp, path, ec);
        if (ec) throw io_error(path.string() + ": cannot move " + temp.string() + " into place: " + ec.message());
        detail::sync_to_disk(path.has_parent_path() ? path.parent_path() : std::filesystem::path("."), true);
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
