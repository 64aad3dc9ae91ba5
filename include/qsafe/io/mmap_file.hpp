#pragma once
// Read-only memory map of a whole file plus a bounds-checked reader over any byte span. Model files are
// untrusted input: every read goes through ByteReader, which checks the range before touching memory and
// throws qsafe::format_error naming the file, what was being read and the byte offset.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "qsafe/core/error.hpp"

namespace qsafe::io {

// Every on-disk format qsafe reads (GGUF, safetensors) is little-endian; reads are plain memcpy.
static_assert(std::endian::native == std::endian::little, "qsafe's file readers assume a little-endian host");

/// Owns a read-only, private mapping of a regular file. Move-only; unmaps on destruction.
class MappedFile {
  public:
    /// Throws io_error if the file cannot be opened or mapped or is not a regular file, and format_error if
    /// it is empty (no format qsafe reads has a valid zero-byte file, and mmap rejects length 0).
    static MappedFile open(const std::filesystem::path& path) {
        MappedFile mapped;
        mapped.path_ = path;
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw io_error(system_message(path, "cannot open"));
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            const std::string message = system_message(path, "cannot stat");
            ::close(fd);
            throw io_error(message);
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd);
            throw io_error(path.string() + ": not a regular file");
        }
        if (st.st_size == 0) {
            ::close(fd);
            throw format_error(path.string() + ": file is empty");
        }
        const auto size = static_cast<std::size_t>(st.st_size);
        void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        const int map_errno = errno;
        ::close(fd);  // the mapping keeps its own reference to the file
        if (data == MAP_FAILED) {
            errno = map_errno;
            throw io_error(system_message(path, "cannot mmap"));
        }
        mapped.data_ = data;
        mapped.size_ = size;
        return mapped;
    }

    MappedFile(MappedFile&& other) noexcept
        : path_(std::move(other.path_)),
          data_(std::exchange(other.data_, nullptr)),
          size_(std::exchange(other.size_, 0)) {}
    MappedFile& operator=(MappedFile&& other) noexcept {
        if (this != &other) {
            unmap();
            path_ = std::move(other.path_);
            data_ = std::exchange(other.data_, nullptr);
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile() { unmap(); }

    const std::filesystem::path& path() const noexcept { return path_; }
    std::size_t size() const noexcept { return size_; }
    std::span<const std::byte> bytes() const noexcept { return {static_cast<const std::byte*>(data_), size_}; }

  private:
    MappedFile() = default;

    void unmap() noexcept {
        if (data_ != nullptr) ::munmap(data_, size_);
        data_ = nullptr;
        size_ = 0;
    }

    static std::string system_message(const std::filesystem::path& path, std::string_view action) {
        return path.string() + ": " + std::string(action) + ": " + std::strerror(errno);
    }

    std::filesystem::path path_;
    void* data_ = nullptr;
    std::size_t size_ = 0;
};

/// Bounds-checked random access over a byte span, with the name of its source for error messages.
class ByteReader {
  public:
    ByteReader(std::span<const std::byte> bytes, std::string source) : bytes_(bytes), source_(std::move(source)) {}

    std::uint64_t size() const noexcept { return bytes_.size(); }
    std::span<const std::byte> bytes() const noexcept { return bytes_; }
    const std::string& source() const noexcept { return source_; }

    /// True if [offset, offset + size) lies inside the span (overflow-safe).
    bool contains(std::uint64_t offset, std::uint64_t size) const noexcept {
        return offset <= bytes_.size() && size <= bytes_.size() - offset;
    }

    template <class T>
    requires std::is_trivially_copyable_v<T> T read(std::uint64_t offset, std::string_view what = "value")
    const {
        const auto span = subspan(offset, sizeof(T), what);
        T value;
        std::memcpy(&value, span.data(), sizeof(T));
        return value;
    }

    std::span<const std::byte> subspan(std::uint64_t offset, std::uint64_t size, std::string_view what) const {
        if (!contains(offset, size)) {
            fail(offset, what,
                 "needs " + std::to_string(size) + " bytes but the file has " +
                     std::to_string(offset < bytes_.size() ? bytes_.size() - offset : 0) + " left (size " +
                     std::to_string(bytes_.size()) + ")");
        }
        return bytes_.subspan(static_cast<std::size_t>(offset), static_cast<std::size_t>(size));
    }

    /// Throws format_error "<source>: <what> at byte offset <offset>: <problem>".
    [[noreturn]] void fail(std::uint64_t offset, std::string_view what, std::string_view problem) const {
        throw format_error(source_ + ": " + std::string(what) + " at byte offset " + std::to_string(offset) + ": " +
                           std::string(problem));
    }

  private:
    std::span<const std::byte> bytes_;
    std::string source_;
};

/// Sequential reads over a ByteReader: the position advances only after a successful read.
class ByteCursor {
  public:
    explicit ByteCursor(const ByteReader& reader, std::uint64_t offset = 0) : reader_(&reader), offset_(offset) {}

    std::uint64_t offset() const noexcept { return offset_; }
    std::uint64_t remaining() const noexcept { return offset_ < reader_->size() ? reader_->size() - offset_ : 0; }
    const ByteReader& reader() const noexcept { return *reader_; }

    template <class T>
    requires std::is_trivially_copyable_v<T> T read(std::string_view what = "value") {
        const T value = reader_->read<T>(offset_, what);
        offset_ += sizeof(T);
        return value;
    }

    std::span<const std::byte> take(std::uint64_t size, std::string_view what) {
        const auto span = reader_->subspan(offset_, size, what);
        offset_ += size;
        return span;
    }

    [[noreturn]] void fail(std::string_view what, std::string_view problem) const {
        reader_->fail(offset_, what, problem);
    }

  private:
    const ByteReader* reader_;
    std::uint64_t offset_;
};

}  // namespace qsafe::io
