#pragma once
// Reading a whole text file for the dataset readers: the bytes must be UTF-8 (a prompt with stray Latin-1
// bytes would be tokenized into garbage without anyone noticing), a leading byte-order mark is dropped, and
// every error names the file and the line (and column) where the problem is.
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "qsafe/core/error.hpp"

namespace qsafe::eval {

/// A place in a text file, 1-based, for messages ("file:12:5").
struct TextPosition {
    std::size_t line = 1;
    std::size_t column = 1;  // in bytes
};

inline TextPosition position_of(std::string_view text, std::size_t offset) {
    TextPosition p;
    for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
        if (text[i] == '\n') {
            ++p.line;
            p.column = 1;
        } else {
            ++p.column;
        }
    }
    return p;
}

/// Offset of the first byte that is not part of well-formed UTF-8 (overlong forms, surrogates and code
/// points above U+10FFFF included), or nullopt when the whole text is valid.
inline std::optional<std::size_t> first_invalid_utf8(std::string_view text) {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
    std::size_t i = 0;
    while (i < text.size()) {
        const unsigned char b = byte(i);
        if (b < 0x80) {
            ++i;
            continue;
        }
        std::size_t length = 0;
        unsigned char low = 0x80, high = 0xBF;  // allowed range of the second byte
        if (b >= 0xC2 && b <= 0xDF) {
            length = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            length = 3;
            if (b == 0xE0) low = 0xA0;   // overlong
            if (b == 0xED) high = 0x9F;  // surrogates
        } else if (b >= 0xF0 && b <= 0xF4) {
            length = 4;
            if (b == 0xF0) low = 0x90;   // overlong
            if (b == 0xF4) high = 0x8F;  // above U+10FFFF
        } else {
            return i;
        }
        if (i + length > text.size()) return i;
        if (byte(i + 1) < low || byte(i + 1) > high) return i;
        for (std::size_t k = 2; k < length; ++k)
            if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return i;
        i += length;
    }
    return std::nullopt;
}

/// Throws format_error "<source>:<line>:<column>: invalid UTF-8 ..." if the text is not UTF-8.
inline void require_utf8(std::string_view text, const std::string& source) {
    if (const auto bad = first_invalid_utf8(text)) {
        const TextPosition p = position_of(text, *bad);
        std::ostringstream msg;
        msg << source << ":" << p.line << ":" << p.column << ": invalid UTF-8 (byte 0x" << std::hex
            << static_cast<unsigned>(static_cast<unsigned char>(text[*bad])) << ")";
        throw format_error(msg.str());
    }
}

inline constexpr std::string_view utf8_bom = "\xEF\xBB\xBF";

/// The file's bytes, without a leading UTF-8 byte-order mark; throws io_error if it cannot be read and
/// format_error if it is not UTF-8.
inline std::string read_utf8_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error(path.string() + ": cannot open for reading");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw io_error(path.string() + ": read failed");
    if (std::string_view(text).starts_with(utf8_bom)) text.erase(0, utf8_bom.size());
    require_utf8(text, path.string());
    return text;
}

}  // namespace qsafe::eval
