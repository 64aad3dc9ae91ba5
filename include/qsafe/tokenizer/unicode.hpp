#pragma once
// UTF-8 <-> code points and the Unicode classes the pre-tokenizers need (\p{L}, \p{N}, \s). Text is split into
// "units": one valid UTF-8 sequence each, or a single byte that is not part of one. Invalid bytes are kept as
// units of their own (class `invalid`) so a tokenizer can still encode every input byte faithfully.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <qsafe/tokenizer/unicode_table.hpp>

namespace qsafe::tokenizer {

/// General category class of a code point (first letter of its category; `other` = Cc Cf Cs Co).
enum class CharClass : std::uint8_t {
    unassigned = 0,
    letter,
    mark,
    number,
    punctuation,
    symbol,
    separator,
    other,
    invalid,  ///< a byte that does not start a valid UTF-8 sequence (no code point)
};

/// One unit of text: a code point and where its bytes are.
struct Utf8Unit {
    char32_t code_point = 0;  ///< 0xFFFFFFFF for an invalid byte
    std::uint32_t offset = 0;
    std::uint8_t length = 0;
    bool valid = true;
};

inline constexpr char32_t invalid_code_point = 0xFFFFFFFFu;

/// Decodes the UTF-8 sequence starting at `pos`. Overlong forms, surrogates, values above U+10FFFF and
/// truncated sequences are rejected: the unit is then the single byte at `pos`, marked invalid.
inline Utf8Unit decode_utf8_unit(std::string_view text, std::size_t pos) noexcept {
    const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(text[i]); };
    const std::uint8_t b0 = byte(pos);
    const auto invalid = Utf8Unit{invalid_code_point, static_cast<std::uint32_t>(pos), 1, false};
    if (b0 < 0x80) return {b0, static_cast<std::uint32_t>(pos), 1, true};
    std::size_t length = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if ((b0 & 0xE0) == 0xC0) {
        length = 2, cp = b0 & 0x1Fu, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
        length = 3, cp = b0 & 0x0Fu, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
        length = 4, cp = b0 & 0x07u, min = 0x10000;
    } else {
        return invalid;
    }
    if (pos + length > text.size()) return invalid;
    for (std::size_t i = 1; i < length; ++i) {
        if ((byte(pos + i) & 0xC0) != 0x80) return invalid;
        cp = (cp << 6) | (byte(pos + i) & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return invalid;
    return {cp, static_cast<std::uint32_t>(pos), static_cast<std::uint8_t>(length), true};
}

inline std::vector<Utf8Unit> split_utf8(std::string_view text) {
    std::vector<Utf8Unit> units;
    units.reserve(text.size());
    for (std::size_t pos = 0; pos < text.size();) {
        units.push_back(decode_utf8_unit(text, pos));
        pos += units.back().length;
    }
    return units;
}

inline bool is_valid_utf8(std::string_view text) noexcept {
    for (std::size_t pos = 0; pos < text.size();) {
        const Utf8Unit unit = decode_utf8_unit(text, pos);
        if (!unit.valid) return false;
        pos += unit.length;
    }
    return true;
}

inline void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

/// Class and White_Space flag of a code point, from the generated run table.
struct CharInfo {
    CharClass cls = CharClass::invalid;
    bool whitespace = false;

    constexpr bool is_letter() const noexcept { return cls == CharClass::letter; }
    constexpr bool is_number() const noexcept { return cls == CharClass::number; }
};

inline CharInfo char_info(char32_t cp) noexcept {
    if (cp > 0x10FFFF) return {CharClass::invalid, false};
    const auto& runs = detail::unicode_class_runs;
    const std::uint32_t key = (static_cast<std::uint32_t>(cp) << 4) | 0xFu;
    const auto it = std::upper_bound(runs.begin(), runs.end(), key);  // first run starting after cp
    const std::uint32_t code = *(it - 1) & 0xFu;
    return {static_cast<CharClass>(code & 0x7u), (code & 0x8u) != 0};
}

}  // namespace qsafe::tokenizer
