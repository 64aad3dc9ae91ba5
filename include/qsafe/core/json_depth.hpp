#pragma once
// A nesting limit for JSON read from files. nlohmann::json parses and destroys deep documents without
// recursion, but dump() and the comparison operators recurse once per level: a field nested 10^5 deep
// (in a dataset row, a journal line, a safetensors header) would overflow the stack long after parsing
// succeeded. Every reader of untrusted JSON checks the text first; no real file nests more than a few
// levels.
#include <cstddef>
#include <string>
#include <string_view>

#include "qsafe/core/error.hpp"

namespace qsafe {

inline constexpr std::size_t max_json_depth = 256;

/// The byte offset of the first '[' or '{' (outside strings) that opens a level deeper than `max_depth`, or
/// npos. Brackets are counted, not matched: a malformed document is left to the parser's own message.
inline std::size_t json_depth_exceeded_at(std::string_view text, std::size_t max_depth = max_json_depth) noexcept {
    std::size_t depth = 0;
    bool in_string = false, escaped = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        switch (c) {
            case '"': in_string = true; break;
            case '[':
            case '{':
                if (++depth > max_depth) return i;
                break;
            case ']':
            case '}':
                if (depth > 0) --depth;
                break;
            default: break;
        }
    }
    return std::string_view::npos;
}

/// Throws format_error "<context>: JSON nested deeper than 256 levels at byte offset N" when it is.
inline void require_json_depth(std::string_view text, const std::string& context, std::size_t max_depth = max_json_depth) {
    if (const std::size_t at = json_depth_exceeded_at(text, max_depth); at != std::string_view::npos)
        throw format_error(context + ": JSON nested deeper than " + std::to_string(max_depth) + " levels at byte offset " +
                           std::to_string(at));
}

}  // namespace qsafe
