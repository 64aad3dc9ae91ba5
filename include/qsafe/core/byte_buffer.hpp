#pragma once
// Little-endian append-only writer and bounds-checked reader over byte buffers, for qsafe's own
// serialized objects. Every read names the context and the byte offset when it would run past the end.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "qsafe/core/error.hpp"

namespace qsafe {

class ByteWriter {
  public:
    template <class T>
        requires std::is_trivially_copyable_v<T>
    void put(const T& v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        bytes_.insert(bytes_.end(), p, p + sizeof(T));
    }
    void put_string(const std::string& s) {
        put(static_cast<std::uint32_t>(s.size()));
        const auto* p = reinterpret_cast<const std::byte*>(s.data());
        bytes_.insert(bytes_.end(), p, p + s.size());
    }
    /// A length-prefixed array: u64 byte count, then the elements.
    template <class Container>
    void put_array(const Container& c) {
        using T = typename Container::value_type;
        static_assert(std::is_trivially_copyable_v<T>);
        put(static_cast<std::uint64_t>(c.size() * sizeof(T)));
        const auto* p = reinterpret_cast<const std::byte*>(c.data());
        bytes_.insert(bytes_.end(), p, p + c.size() * sizeof(T));
    }
    std::vector<std::byte> take() { return std::move(bytes_); }
    const std::vector<std::byte>& bytes() const noexcept { return bytes_; }

  private:
    std::vector<std::byte> bytes_;
};

class ByteReader {
  public:
    ByteReader(std::span<const std::byte> bytes, std::string context) : bytes_(bytes), context_(std::move(context)) {}

    template <class T>
        requires std::is_trivially_copyable_v<T>
    T get(const char* what) {
        require(sizeof(T), what);
        T v;
        std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string get_string(const char* what) {
        const auto n = get<std::uint32_t>(what);
        require(n, what);
        std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
        pos_ += n;
        return s;
    }
    /// Reads a length-prefixed array written by ByteWriter::put_array into `out`.
    template <class Container>
    void get_array(Container& out, const char* what) {
        using T = typename Container::value_type;
        const auto n = get<std::uint64_t>(what);
        if (n % sizeof(T) != 0)
            fail(std::string(what) + ": byte count " + std::to_string(n) + " is not a multiple of " + std::to_string(sizeof(T)));
        require(n, what);
        out.resize(static_cast<std::size_t>(n / sizeof(T)));
        if (n) std::memcpy(static_cast<void*>(out.data()), bytes_.data() + pos_, static_cast<std::size_t>(n));
        pos_ += static_cast<std::size_t>(n);
    }
    std::size_t offset() const noexcept { return pos_; }
    std::size_t remaining() const noexcept { return bytes_.size() - pos_; }
    [[noreturn]] void fail(const std::string& message) const {
        throw format_error(context_ + ": " + message + " (at byte offset " + std::to_string(pos_) + ")");
    }

  private:
    void require(std::uint64_t n, const char* what) const {
        if (n > bytes_.size() - pos_)
            fail(std::string(what) + ": needs " + std::to_string(n) + " bytes, only " + std::to_string(bytes_.size() - pos_) +
                 " left");
    }
    std::span<const std::byte> bytes_;
    std::string context_;
    std::size_t pos_ = 0;
};

}  // namespace qsafe
