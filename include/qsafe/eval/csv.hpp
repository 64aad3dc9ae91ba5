#pragma once
// An RFC 4180 CSV reader for the prompt and completion files: a header row, then records of the same
// width. Quoted fields may hold commas, line breaks and doubled quotes; records end with LF or CRLF; a
// leading byte-order mark is dropped. Anything else is an error naming the file and line, not a silent
// repair: a stray quote usually means the file was cut or exported wrongly, and guessing would misalign
// prompts with their labels. Blank lines between records are skipped (spreadsheets leave them at the end).
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/eval/text_file.hpp"

namespace qsafe::eval {

struct CsvTable {
    std::string source;  // file name, for messages
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
    std::vector<std::size_t> row_lines;  // 1-based line on which each row starts

    /// The column with this name; format_error if two columns have it (which one was meant is unknowable).
    std::optional<std::size_t> column(std::string_view name) const {
        std::optional<std::size_t> found;
        for (std::size_t i = 0; i < header.size(); ++i) {
            if (header[i] != name) continue;
            if (found)
                throw format_error(source + ":1: column '" + std::string(name) + "' appears twice in the header (columns " +
                                   std::to_string(*found + 1) + " and " + std::to_string(i + 1) + "); rename one");
            found = i;
        }
        return found;
    }
};

namespace detail {

inline std::string csv_where(const std::string& source, std::size_t line) {
    return source + ":" + std::to_string(line) + ": ";
}

}  // namespace detail

/// Parses CSV text; `source` names it in error messages. Throws format_error.
inline CsvTable parse_csv(std::string_view text, const std::string& source) {
    if (text.starts_with(utf8_bom)) text.remove_prefix(utf8_bom.size());
    require_utf8(text, source);
    CsvTable table;
    table.source = source;

    std::vector<std::vector<std::string>> records;
    std::vector<std::size_t> record_lines;
    std::vector<std::string> record;
    std::string field;
    std::size_t line = 1;
    std::size_t record_line = 1;
    std::size_t i = 0;
    bool record_has_content = false;  // a lone line break is a blank line, not a record with one empty field

    const auto end_record = [&] {
        if (record_has_content || !record.empty()) {
            record.push_back(std::move(field));
            records.push_back(std::move(record));
            record_lines.push_back(record_line);
        }
        record.clear();
        field.clear();
        record_has_content = false;
    };
    // Consumes the line break at i (LF or CRLF); returns false if there is none.
    const auto take_line_break = [&] {
        if (text[i] == '\n') {
            ++i;
        } else if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
            i += 2;
        } else {
            return false;
        }
        ++line;
        return true;
    };

    while (i < text.size()) {
        if (!record_has_content && record.empty() && field.empty()) record_line = line;
        const char c = text[i];
        if (c == '"') {
            if (!field.empty())
                throw format_error(detail::csv_where(source, line) +
                                   "a quote inside an unquoted field (quote the whole field and double the quote)");
            record_has_content = true;
            const std::size_t quote_line = line;
            ++i;
            for (;;) {
                if (i >= text.size())
                    throw format_error(detail::csv_where(source, quote_line) +
                                       "quoted field is never closed (missing closing quote)");
                if (text[i] == '"') {
                    if (i + 1 < text.size() && text[i + 1] == '"') {
                        field += '"';
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                if (text[i] == '\n') ++line;
                field += text[i++];
            }
            // After the closing quote only a separator or the end of the record may follow.
            if (i < text.size() && text[i] != ',' && text[i] != '\n' && !(text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n'))
                throw format_error(detail::csv_where(source, line) + "unexpected character after a closing quote");
            continue;
        }
        if (c == ',') {
            record.push_back(std::move(field));
            field.clear();
            record_has_content = true;
            ++i;
            continue;
        }
        if (c == '\n' || c == '\r') {
            if (!take_line_break())
                throw format_error(detail::csv_where(source, line) + "a carriage return not followed by a line feed");
            end_record();
            continue;
        }
        field += c;
        record_has_content = true;
        ++i;
    }
    end_record();

    if (records.empty()) throw format_error(source + ":1: empty file (no header row)");
    table.header = std::move(records.front());
    for (std::size_t r = 1; r < records.size(); ++r) {
        if (records[r].size() != table.header.size())
            throw format_error(detail::csv_where(source, record_lines[r]) + "row has " + std::to_string(records[r].size()) +
                               " fields but the header has " + std::to_string(table.header.size()));
        table.rows.push_back(std::move(records[r]));
        table.row_lines.push_back(record_lines[r]);
    }
    return table;
}

/// Reads and parses a CSV file. Throws io_error if it cannot be read, format_error if it is malformed.
inline CsvTable read_csv(const std::filesystem::path& path) {
    return parse_csv(read_utf8_file(path), path.string());
}

}  // namespace qsafe::eval
