#pragma once
// Evaluation datasets: what the evaluator needs from one (the Dataset concept), the concrete PromptDataset,
// and loaders that turn a CSV or JSONL file into PromptRows through a ColumnMap (which column is the prompt,
// the id, the category, and where the expected behaviour comes from). Every file problem is reported with
// the file and the line; a missing column with the file and the column's name.
#include <algorithm>
#include <concepts>
#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <ranges>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/core/error.hpp"
#include "qsafe/eval/csv.hpp"
#include "qsafe/eval/jsonl.hpp"
#include "qsafe/eval/verdict.hpp"

namespace qsafe::eval {

/// A prompt record as the evaluator reads it: PromptRow, or any type with the same fields.
template <class Row>
concept PromptLike = requires(const Row& row) {
    { row.id } -> std::convertible_to<std::string_view>;
    { row.prompt } -> std::convertible_to<std::string_view>;
    { row.category } -> std::convertible_to<std::string_view>;
    { row.expected } -> std::convertible_to<Expected>;
};

/// A named collection of prompts that can be walked more than once (the evaluator makes one pass to
/// generate and another to report).
template <class D>
concept Dataset = std::ranges::forward_range<const D> && PromptLike<std::ranges::range_value_t<const D>> &&
                  requires(const D& d) {
                      { d.name() } -> std::convertible_to<std::string_view>;
                  };

class PromptDataset {
  public:
    PromptDataset() = default;
    PromptDataset(std::string name, std::vector<PromptRow> rows) : name_(std::move(name)), rows_(std::move(rows)) {}

    const std::string& name() const noexcept { return name_; }
    const std::vector<PromptRow>& rows() const noexcept { return rows_; }
    std::size_t size() const noexcept { return rows_.size(); }
    bool empty() const noexcept { return rows_.empty(); }
    auto begin() const noexcept { return rows_.begin(); }
    auto end() const noexcept { return rows_.end(); }
    const PromptRow& operator[](std::size_t i) const { return rows_[i]; }

  private:
    std::string name_;
    std::vector<PromptRow> rows_;
};

static_assert(Dataset<PromptDataset>);

/// The expected behaviour read from a column: each value maps to harmful/benign; a value not in the map is
/// an error rather than "unspecified", so a typo in a label file cannot silently drop rows from a metric —
/// unless `otherwise` says what every other value means (a file whose harmful rows are marked by a few
/// values, e.g. XSTest's "contrast_*" types). A value ending in '*' in `prefixes` matches by prefix. An empty
/// value is always an error: a blank label is missing data, not a verdict on the prompt.
struct ExpectedFromColumn {
    std::string column;
    std::map<std::string, Expected, std::less<>> values;
    std::vector<std::pair<std::string, Expected>> prefixes = {};  // ("contrast_", harmful) from "contrast_*"
    std::optional<Expected> otherwise = std::nullopt;

    /// The column's values that mean harmful ('prefix*' allowed); every other non-empty value is benign.
    static ExpectedFromColumn harmful_when(std::string column, const std::vector<std::string>& harmful_values) {
        ExpectedFromColumn e{std::move(column), {}};
        for (const auto& v : harmful_values) {
            if (!v.empty() && v.back() == '*') e.prefixes.emplace_back(v.substr(0, v.size() - 1), Expected::harmful);
            else e.values.emplace(v, Expected::harmful);
        }
        e.otherwise = Expected::benign;
        return e;
    }
    std::optional<Expected> lookup(std::string_view value) const {
        if (value.empty()) return std::nullopt;
        if (const auto it = values.find(value); it != values.end()) return it->second;
        for (const auto& [prefix, expected] : prefixes)
            if (value.starts_with(prefix)) return expected;
        return otherwise;
    }
};

/// Keep only the rows whose `column` holds one of `allowed` (e.g. HarmBench's standard behaviours).
struct RowFilter {
    std::string column;
    std::vector<std::string> allowed;
};

/// What goes between a context passage and its request in a row's prompt: HarmBench's own separator.
inline constexpr std::string_view context_separator = "\n\n---\n\n";

/// Which columns hold what. Built with the named steps, e.g.
/// ColumnMap::prompt_column("goal").with_id("BehaviorID").with_category("SemanticCategory").expecting(Expected::harmful).
struct ColumnMap {
    std::string prompt;
    std::string id;        // empty: the 1-based data row number of the file becomes the id
    std::string category;  // empty: no category
    std::string context;   // optional: text placed before the prompt, "context\n\n---\n\nprompt" (HarmBench)
    std::string input;     // optional: text placed after the prompt, "prompt\n\ninput", when not empty (Self-Instruct)
    std::variant<Expected, ExpectedFromColumn> expected = Expected::unspecified;
    std::vector<RowFilter> filters;

    static ColumnMap prompt_column(std::string column) {
        ColumnMap m;
        m.prompt = std::move(column);
        return m;
    }
    ColumnMap with_id(std::string column) const { return changed([&](ColumnMap& m) { m.id = std::move(column); }); }
    ColumnMap with_category(std::string column) const { return changed([&](ColumnMap& m) { m.category = std::move(column); }); }
    ColumnMap with_context(std::string column) const { return changed([&](ColumnMap& m) { m.context = std::move(column); }); }
    ColumnMap with_input(std::string column) const { return changed([&](ColumnMap& m) { m.input = std::move(column); }); }
    ColumnMap expecting(Expected fixed) const { return changed([&](ColumnMap& m) { m.expected = fixed; }); }
    ColumnMap expecting(ExpectedFromColumn from) const { return changed([&](ColumnMap& m) { m.expected = std::move(from); }); }
    ColumnMap keeping(RowFilter filter) const { return changed([&](ColumnMap& m) { m.filters.push_back(std::move(filter)); }); }

  private:
    template <class Change>
    ColumnMap changed(Change change) const {
        ColumnMap m = *this;
        change(m);
        return m;
    }
};

/// A table file's records reduced to named string fields, whatever the format (CSV, JSONL), with the line
/// each starts on; JSON values that are not strings are kept as their JSON text.
struct TableRecords {
    std::string source;
    std::vector<std::string> columns;  // the names present (CSV: header; JSON: union of keys, first-seen order)
    std::vector<std::map<std::string, std::string, std::less<>>> rows;
    std::vector<std::size_t> lines;
};

namespace detail {

inline std::string json_field_text(const nlohmann::json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_null()) return {};
    return v.dump();
}

}  // namespace detail

inline TableRecords records_from_csv(const CsvTable& t) {
    // Records are keyed by column name: of two columns with one name, one would vanish without a word.
    for (const auto& name : t.header) (void)t.column(name);
    TableRecords raw{t.source, t.header, {}, t.row_lines};
    for (const auto& row : t.rows) {
        auto& out = raw.rows.emplace_back();
        for (std::size_t c = 0; c < t.header.size(); ++c) out.emplace(t.header[c], row[c]);
    }
    return raw;
}

inline TableRecords records_from_json(const std::vector<JsonRecord>& records, const std::string& source) {
    TableRecords raw{source, {}, {}, {}};
    std::set<std::string> seen;
    for (const auto& r : records) {
        auto& out = raw.rows.emplace_back();
        // Nested objects and arrays are also reachable by path: "instances.0.input" (Self-Instruct).
        const auto add = [&](const auto& self, const std::string& key, const nlohmann::json& value, int depth) -> void {
            out.emplace(key, detail::json_field_text(value));
            if (seen.insert(key).second) raw.columns.push_back(key);
            if (depth >= 3 || !value.is_structured()) return;
            for (const auto& [sub, inner] : value.items()) self(self, key + "." + sub, inner, depth + 1);
        };
        for (const auto& [key, value] : r.value.items()) add(add, key, value, 0);
        raw.lines.push_back(r.line);
    }
    return raw;
}

/// A CSV or JSON Lines file (by extension: .jsonl / .ndjson are JSON Lines, anything else CSV).
inline TableRecords read_table_records(const std::filesystem::path& path) {
    const std::string ext = path.extension().string();
    if (ext == ".jsonl" || ext == ".ndjson") return records_from_json(read_jsonl(path), path.string());
    return records_from_csv(read_csv(path));
}

/// Throws format_error "<file>: no column '<name>' (wanted as the <role> column; columns: ...)".
inline void require_column(const TableRecords& raw, const std::string& column, std::string_view role) {
    for (const auto& c : raw.columns)
        if (c == column) return;
    std::string known;
    for (const auto& c : raw.columns) known += (known.empty() ? "" : ", ") + c;
    throw format_error(raw.source + ": no column '" + column + "' (wanted as the " + std::string(role) + " column; columns: " + known + ")");
}

namespace detail {

inline PromptDataset map_rows(std::string name, const TableRecords& raw, const ColumnMap& map) {
    require_column(raw, map.prompt, "prompt");
    if (!map.id.empty()) require_column(raw, map.id, "id");
    if (!map.category.empty()) require_column(raw, map.category, "category");
    if (!map.context.empty()) require_column(raw, map.context, "context");
    if (const auto* from = std::get_if<ExpectedFromColumn>(&map.expected)) require_column(raw, from->column, "expected");
    for (const auto& f : map.filters) require_column(raw, f.column, "filter");

    const auto where = [&](std::size_t r) { return raw.source + ":" + std::to_string(raw.lines[r]) + ": "; };
    // JSON records may lack a key that others have; a CSV row always has every column.
    const auto field = [&](std::size_t r, const std::string& column) -> const std::string& {
        const auto it = raw.rows[r].find(column);
        if (it == raw.rows[r].end()) throw format_error(where(r) + "record has no '" + column + "' field");
        return it->second;
    };

    std::vector<PromptRow> rows;
    std::set<std::string, std::less<>> ids;
    for (std::size_t r = 0; r < raw.rows.size(); ++r) {
        bool keep = true;
        for (const auto& f : map.filters) {
            const std::string& v = field(r, f.column);
            keep = keep && std::ranges::find(f.allowed, v) != f.allowed.end();
        }
        if (!keep) continue;
        PromptRow row;
        row.prompt = field(r, map.prompt);
        if (row.prompt.find_first_not_of(" \t\r\n") == std::string::npos)
            throw format_error(where(r) + "empty prompt in column '" + map.prompt + "'");
        if (!map.context.empty()) {
            const std::string& context = field(r, map.context);
            if (context.find_first_not_of(" \t\r\n") != std::string::npos) row.prompt = context + std::string(context_separator) + row.prompt;
        }
        if (!map.input.empty()) {
            const auto it = raw.rows[r].find(map.input);  // absent or empty: the instruction stands alone
            if (it != raw.rows[r].end() && it->second.find_first_not_of(" \t\r\n") != std::string::npos) row.prompt += "\n\n" + it->second;
        }
        row.id = map.id.empty() ? std::to_string(r + 1) : field(r, map.id);
        if (row.id.empty()) throw format_error(where(r) + "empty id in column '" + map.id + "'");
        if (!ids.insert(row.id).second) throw format_error(where(r) + "duplicate id '" + row.id + "'");
        if (!map.category.empty()) row.category = field(r, map.category);
        if (const auto* fixed = std::get_if<Expected>(&map.expected)) {
            row.expected = *fixed;
        } else {
            const auto& from = std::get<ExpectedFromColumn>(map.expected);
            const std::string& v = field(r, from.column);
            const auto expected = from.lookup(v);
            if (!expected)
                throw format_error(where(r) + (v.empty() ? "empty value in column '" + from.column + "' (harmful or benign?)"
                                                         : "value '" + v + "' of column '" + from.column + "' is not mapped to harmful/benign"));
            row.expected = *expected;
        }
        rows.push_back(std::move(row));
    }
    return PromptDataset(std::move(name), std::move(rows));
}

}  // namespace detail

inline PromptDataset load_csv_dataset(const std::filesystem::path& path, const ColumnMap& columns, std::string name = {}) {
    if (name.empty()) name = path.stem().string();
    return detail::map_rows(std::move(name), records_from_csv(read_csv(path)), columns);
}

inline PromptDataset load_jsonl_dataset(const std::filesystem::path& path, const ColumnMap& columns, std::string name = {}) {
    if (name.empty()) name = path.stem().string();
    return detail::map_rows(std::move(name), records_from_json(read_jsonl(path), path.string()), columns);
}

/// The records of the JSON array at `pointer` inside one JSON document (e.g. "/jailbreaks").
inline PromptDataset load_json_array_dataset(const std::filesystem::path& path, const std::string& pointer,
                                             const ColumnMap& columns, std::string name = {}) {
    if (name.empty()) name = path.stem().string();
    return detail::map_rows(std::move(name), records_from_json(read_json_array(path, pointer), path.string()), columns);
}

}  // namespace qsafe::eval
