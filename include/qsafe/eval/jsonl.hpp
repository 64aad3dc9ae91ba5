#pragma once
// JSON Lines (one JSON object per line) for prompt and completion files, and the records of a JSON array
// inside one JSON document (JailbreakBench's artifact files). Errors name the file and the line.
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/core/error.hpp"
#include "qsafe/core/json_depth.hpp"
#include "qsafe/eval/text_file.hpp"

namespace qsafe::eval {

struct JsonRecord {
    nlohmann::json value;  // always an object
    std::size_t line = 0;  // 1-based line of the record in its file (for an array: line where it starts)
};

/// Parses JSON Lines text; blank lines are skipped, every other line must be one JSON object.
inline std::vector<JsonRecord> parse_jsonl(std::string_view text, const std::string& source) {
    if (text.starts_with(utf8_bom)) text.remove_prefix(utf8_bom.size());
    require_utf8(text, source);
    std::vector<JsonRecord> records;
    std::size_t line = 0;
    std::size_t start = 0;
    while (start < text.size()) {
        ++line;
        std::size_t end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        std::string_view content = text.substr(start, end - start);
        start = end + 1;
        if (content.ends_with('\r')) content.remove_suffix(1);
        if (content.find_first_not_of(" \t") == std::string_view::npos) continue;
        require_json_depth(content, source + ":" + std::to_string(line));
        nlohmann::json value;
        try {
            value = nlohmann::json::parse(content);
        } catch (const nlohmann::json::parse_error& e) {
            // e.byte is the 1-based offset within the line, i.e. the column.
            throw format_error(source + ":" + std::to_string(line) + ":" + std::to_string(e.byte) + ": invalid JSON (" +
                               e.what() + ")");
        } catch (const nlohmann::json::out_of_range& e) {  // a number too large for a double ("1e999")
            throw format_error(source + ":" + std::to_string(line) + ": invalid JSON (" + e.what() + ")");
        }
        if (!value.is_object())
            throw format_error(source + ":" + std::to_string(line) + ": expected a JSON object, found " + value.type_name());
        records.push_back({std::move(value), line});
    }
    if (records.empty()) throw format_error(source + ":1: empty file (no JSON records)");
    return records;
}

inline std::vector<JsonRecord> read_jsonl(const std::filesystem::path& path) {
    return parse_jsonl(read_utf8_file(path), path.string());
}

/// The objects of the array at `pointer` (a JSON pointer such as "/jailbreaks") in one JSON document. Each
/// record's line is found by counting the lines before it in the text, so messages can still point at it.
inline std::vector<JsonRecord> parse_json_array(std::string_view text, const std::string& source, const std::string& pointer) {
    if (text.starts_with(utf8_bom)) text.remove_prefix(utf8_bom.size());
    require_utf8(text, source);
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) throw format_error(source + ":1: empty file");
    if (const std::size_t at = json_depth_exceeded_at(text); at != std::string_view::npos) {
        const TextPosition p = position_of(text, at);
        throw format_error(source + ":" + std::to_string(p.line) + ":" + std::to_string(p.column) + ": JSON nested deeper than " +
                           std::to_string(max_json_depth) + " levels");
    }
    nlohmann::json doc;
    try {
        doc = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        const TextPosition p = position_of(text, e.byte == 0 ? 0 : e.byte - 1);
        throw format_error(source + ":" + std::to_string(p.line) + ":" + std::to_string(p.column) + ": invalid JSON (" +
                           e.what() + ")");
    } catch (const nlohmann::json::out_of_range& e) {  // a number too large for a double ("1e999")
        throw format_error(source + ": invalid JSON (" + e.what() + ")");
    }
    const nlohmann::json::json_pointer ptr(pointer);
    if (!doc.contains(ptr) || !doc.at(ptr).is_array())
        throw format_error(source + ": no JSON array at '" + pointer + "'");
    const nlohmann::json& array = doc.at(ptr);

    // nlohmann::json keeps no source positions, so the line of element k is found by scanning the text for
    // the k-th '{' directly inside the first array after the pointer's last key (good enough for messages).
    std::vector<std::size_t> object_lines;
    {
        const std::string key = pointer.substr(pointer.rfind('/') + 1);
        std::size_t from = key.empty() ? 0 : text.find("\"" + key + "\"");
        if (from == std::string_view::npos) from = 0;
        std::size_t line = position_of(text, from).line;
        int depth = 0;  // relative to the array's '['
        bool in_string = false, started = false;
        for (std::size_t i = from; i < text.size(); ++i) {
            const char c = text[i];
            if (c == '\n') ++line;
            if (in_string) {
                if (c == '\\') ++i;
                else if (c == '"') in_string = false;
                continue;
            }
            if (c == '"') {
                in_string = true;
            } else if (c == '[' || c == '{') {
                if (!started && c == '[') {
                    started = true;
                    depth = 0;
                    continue;
                }
                if (started && depth == 0 && c == '{') object_lines.push_back(line);
                ++depth;
            } else if (c == ']' || c == '}') {
                if (started && depth == 0) break;
                --depth;
            }
        }
    }

    std::vector<JsonRecord> records;
    for (std::size_t k = 0; k < array.size(); ++k) {
        const std::size_t line = k < object_lines.size() ? object_lines[k] : 0;
        if (!array[k].is_object())
            throw format_error(source + ":" + std::to_string(line) + ": element " + std::to_string(k) + " of '" + pointer +
                               "' is not a JSON object");
        records.push_back({array[k], line});
    }
    if (records.empty()) throw format_error(source + ": the array at '" + pointer + "' is empty");
    return records;
}

inline std::vector<JsonRecord> read_json_array(const std::filesystem::path& path, const std::string& pointer) {
    return parse_json_array(read_utf8_file(path), path.string(), pointer);
}

}  // namespace qsafe::eval
