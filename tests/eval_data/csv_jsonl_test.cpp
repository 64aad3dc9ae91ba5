// The CSV and JSONL readers: RFC 4180 quoting, line endings, byte-order mark, and errors that name the file
// and the line for every kind of malformed input.
#include <doctest/doctest.h>

#include "eval_data/temp_file.hpp"
#include "qsafe/eval/csv.hpp"
#include "qsafe/eval/dataset.hpp"
#include "qsafe/eval/jsonl.hpp"

using namespace qsafe::eval;
using eval_data_test::error_message;
using eval_data_test::TempFile;

TEST_CASE("CSV: quoted fields keep commas, doubled quotes and line breaks") {
    const auto t = parse_csv("id,prompt\n1,\"a, b\"\n2,\"she said \"\"hi\"\"\"\n3,\"two\nlines\"\n4,plain\n", "t.csv");
    REQUIRE(t.rows.size() == 4);
    CHECK(t.header == std::vector<std::string>{"id", "prompt"});
    CHECK(t.rows[0][1] == "a, b");
    CHECK(t.rows[1][1] == "she said \"hi\"");
    CHECK(t.rows[2][1] == "two\nlines");
    CHECK(t.rows[3][1] == "plain");
    CHECK(t.row_lines == std::vector<std::size_t>{2, 3, 4, 6});  // the embedded line break moves row 4 down
    CHECK(t.column("prompt") == 1);
    CHECK_FALSE(t.column("missing").has_value());
}

TEST_CASE("CSV: CRLF line endings, a byte-order mark, empty fields and a missing final newline") {
    const auto t = parse_csv("\xEF\xBB\xBFid,prompt,note\r\n1,hello,\r\n2,\"\",x", "t.csv");
    REQUIRE(t.rows.size() == 2);
    CHECK(t.header[0] == "id");  // BOM removed
    CHECK(t.rows[0] == std::vector<std::string>{"1", "hello", ""});
    CHECK(t.rows[1] == std::vector<std::string>{"2", "", "x"});
}

TEST_CASE("CSV: blank lines between records are skipped and UTF-8 text passes through") {
    const auto t = parse_csv("a,b\n\n1,caf\xC3\xA9\n\n", "t.csv");
    REQUIRE(t.rows.size() == 1);
    CHECK(t.rows[0][1] == "caf\xC3\xA9");
}

TEST_CASE("CSV: malformed input names the file and the line") {
    using qsafe::format_error;
    CHECK(error_message<format_error>([] { parse_csv("a,b\n1,2\n3,\"open\n", "bad.csv"); }) ==
          "bad.csv:3: quoted field is never closed (missing closing quote)");
    CHECK(error_message<format_error>([] { parse_csv("a,b\n1,x\"y\"\n", "bad.csv"); }).starts_with("bad.csv:2: a quote inside an unquoted field"));
    CHECK(error_message<format_error>([] { parse_csv("a,b\n1,\"x\"y\n", "bad.csv"); }) ==
          "bad.csv:2: unexpected character after a closing quote");
    CHECK(error_message<format_error>([] { parse_csv("a,b\n1,2\n3,4,5\n", "bad.csv"); }) ==
          "bad.csv:3: row has 3 fields but the header has 2");
    CHECK(error_message<format_error>([] { parse_csv("a,b\n1,\"x\ny\"\n2\n", "bad.csv"); }) ==
          "bad.csv:4: row has 1 fields but the header has 2");
    CHECK(error_message<format_error>([] { parse_csv("", "empty.csv"); }) == "empty.csv:1: empty file (no header row)");
    CHECK(error_message<format_error>([] { parse_csv("\xEF\xBB\xBF\n\n", "empty.csv"); }) == "empty.csv:1: empty file (no header row)");
    CHECK(error_message<format_error>([] { parse_csv("a,b\n1,ok\n2,caf\xE9\n", "latin1.csv"); }) ==
          "latin1.csv:3:6: invalid UTF-8 (byte 0xe9)");
    CHECK(error_message<format_error>([] { parse_csv("a\r1\n", "cr.csv"); }).starts_with("cr.csv:1: a carriage return"));
    // Two columns of one name: refused when that name is asked for (either could be meant), not otherwise.
    const auto twice = parse_csv("prompt,id,prompt\nx,1,y\n", "twice.csv");
    CHECK(twice.column("id") == 1);
    CHECK(error_message<format_error>([&] { (void)twice.column("prompt"); }) ==
          "twice.csv:1: column 'prompt' appears twice in the header (columns 1 and 3); rename one");
}

TEST_CASE("UTF-8 check: overlong forms, surrogates and truncated sequences are rejected") {
    CHECK_FALSE(first_invalid_utf8("plain \xE2\x80\x99 \xF0\x9F\x98\x80").has_value());
    CHECK(first_invalid_utf8("\xC0\xAF") == 0);          // overlong '/'
    CHECK(first_invalid_utf8("ab\xED\xA0\x80") == 2);    // surrogate U+D800
    CHECK(first_invalid_utf8("abc\xE2\x80") == 3);       // cut short
    CHECK(first_invalid_utf8("\xF4\x90\x80\x80") == 0);  // above U+10FFFF
}

TEST_CASE("CSV file: read from disk, and a missing file is an io_error naming it") {
    const TempFile f("quoted.csv", "id,prompt\r\n7,\"x,y\"\r\n");
    const auto t = read_csv(f.path());
    CHECK(t.source == f.name());
    CHECK(t.rows.at(0)[1] == "x,y");
    CHECK(error_message<qsafe::io_error>([] { read_csv("/nonexistent/qsafe.csv"); }).starts_with("/nonexistent/qsafe.csv"));
}

TEST_CASE("JSONL: records with their lines, blank lines skipped, errors name file and line") {
    const auto r = parse_jsonl("{\"prompt\": \"a\"}\r\n\n{\"prompt\": \"b\", \"n\": 2}\n", "t.jsonl");
    REQUIRE(r.size() == 2);
    CHECK(r[0].line == 1);
    CHECK(r[1].line == 3);
    CHECK(r[1].value["prompt"] == "b");

    using qsafe::format_error;
    CHECK(error_message<format_error>([] { parse_jsonl("{\"a\": 1}\n{\"a\": \n", "bad.jsonl"); }).starts_with("bad.jsonl:2:"));
    CHECK(error_message<format_error>([] { parse_jsonl("{\"a\": 1}\n[1, 2]\n", "bad.jsonl"); }) ==
          "bad.jsonl:2: expected a JSON object, found array");
    CHECK(error_message<format_error>([] { parse_jsonl("\n  \n", "empty.jsonl"); }) == "empty.jsonl:1: empty file (no JSON records)");
    CHECK(error_message<format_error>([] { parse_jsonl("{\"a\": \"ok\"}\n{\"a\": \"\xFF\"}\n", "bad.jsonl"); }) ==
          "bad.jsonl:2:8: invalid UTF-8 (byte 0xff)");
}

TEST_CASE("JSON nesting: deeper than 256 levels is refused before anything recurses, with file, line and offset") {
    CHECK(qsafe::json_depth_exceeded_at(R"({"a": [[1]], "b": "[[[[{{{{"})", 3) == std::string_view::npos);  // brackets in strings
    CHECK(qsafe::json_depth_exceeded_at(R"({"a": "\"[[", "b": [[1]]})", 2) == 20);                          // escaped quote
    CHECK(qsafe::json_depth_exceeded_at("[[[]]]", 3) == std::string_view::npos);
    CHECK(qsafe::json_depth_exceeded_at("[[[[]]]]", 3) == 3);
    // A JSONL row with an unused field nested 10^6 deep (it used to crash a recursive dump with SIGSEGV).
    const std::string deep = "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"junk\": " + std::string(1000000, '[') +
                             std::string(1000000, ']') + "}\n";
    CHECK(error_message<qsafe::format_error>([&] { parse_jsonl(deep, "deep.jsonl"); }) ==
          "deep.jsonl:2: JSON nested deeper than 256 levels at byte offset 279");
    const std::string deep_doc = "{\"items\":\n" + std::string(300, '{') + std::string(300, '}') + "}";
    CHECK(error_message<qsafe::format_error>([&] { parse_json_array(deep_doc, "deep.json", "/items"); }) ==
          "deep.json:2:256: JSON nested deeper than 256 levels");
}

TEST_CASE("JSON array: the records under a pointer, with the line each starts on") {
    const std::string doc = "{\n  \"meta\": {\"n\": 2},\n  \"items\": [\n    {\"goal\": \"a\", \"i\": 0},\n    {\"goal\": \"b\",\n     \"i\": 1}\n  ]\n}\n";
    const auto r = parse_json_array(doc, "doc.json", "/items");
    REQUIRE(r.size() == 2);
    CHECK(r[0].line == 4);
    CHECK(r[1].line == 5);
    CHECK(r[1].value["goal"] == "b");
    CHECK(error_message<qsafe::format_error>([&] { parse_json_array(doc, "doc.json", "/missing"); }) ==
          "doc.json: no JSON array at '/missing'");
    CHECK(error_message<qsafe::format_error>([] { parse_json_array("{\n\"a\": [1,\n", "cut.json", "/a"); }).find("invalid JSON") != std::string::npos);
}

TEST_CASE("Loaders: column mapping, ids from row numbers, expected from a column, filters, context") {
    const TempFile f("map.csv",
                     "kind,text,label,topic,ctx\n"
                     "keep,How do I bake bread?,safe,cooking,\n"
                     "drop,ignored,unsafe,x,\n"
                     "keep,Summarise it,unsafe,misc,Some context\n");
    const auto m = ColumnMap::prompt_column("text")
                       .with_category("topic")
                       .with_context("ctx")
                       .expecting(ExpectedFromColumn{"label", {{"safe", Expected::benign}, {"unsafe", Expected::harmful}}})
                       .keeping({"kind", {"keep"}});
    const auto d = load_csv_dataset(f.path(), m, "mapped");
    REQUIRE(d.size() == 2);
    CHECK(d.name() == "mapped");
    CHECK(d[0].id == "1");
    CHECK(d[1].id == "3");  // the file's row number survives filtering
    CHECK(d[0].expected == Expected::benign);
    CHECK(d[0].category == "cooking");
    CHECK(d[0].prompt == "How do I bake bread?");
    CHECK(d[1].prompt == "Some context\n\n---\n\nSummarise it");
}

TEST_CASE("Loaders: missing column, unmapped label, empty prompt and duplicate id are errors naming the file") {
    using qsafe::format_error;
    const TempFile f("cols.csv", "id,prompt,label\na,hello,safe\nb,,safe\n");
    const std::string name = f.name();
    CHECK(error_message<format_error>([&] { load_csv_dataset(f.path(), ColumnMap::prompt_column("goal")); }) ==
          name + ": no column 'goal' (wanted as the prompt column; columns: id, prompt, label)");
    CHECK(error_message<format_error>([&] { load_csv_dataset(f.path(), ColumnMap::prompt_column("prompt").with_id("id")); }) ==
          name + ":3: empty prompt in column 'prompt'");
    const TempFile g("labels.csv", "id,prompt,label\na,hello,safe\nb,bye,maybe\n");
    const auto labelled = ColumnMap::prompt_column("prompt").with_id("id").expecting(ExpectedFromColumn{"label", {{"safe", Expected::benign}}});
    CHECK(error_message<format_error>([&] { load_csv_dataset(g.path(), labelled); }) ==
          g.name() + ":3: value 'maybe' of column 'label' is not mapped to harmful/benign");
    const TempFile h("dups.csv", "id,prompt\na,x\na,y\n");
    CHECK(error_message<format_error>([&] { load_csv_dataset(h.path(), ColumnMap::prompt_column("prompt").with_id("id")); }) ==
          h.name() + ":3: duplicate id 'a'");
}

TEST_CASE("Loaders: JSONL records, numbers as ids, a key missing from one record") {
    const TempFile f("rows.jsonl", "{\"q\": \"first\", \"n\": 10, \"c\": \"x\"}\n{\"q\": \"second\", \"n\": 11}\n");
    const auto d = load_jsonl_dataset(f.path(), ColumnMap::prompt_column("q").with_id("n").expecting(Expected::harmful));
    REQUIRE(d.size() == 2);
    CHECK(d[0].id == "10");
    CHECK(d[1].prompt == "second");
    CHECK(d[1].expected == Expected::harmful);
    CHECK(error_message<qsafe::format_error>([&] { load_jsonl_dataset(f.path(), ColumnMap::prompt_column("q").with_category("c")); }) ==
          f.name() + ":2: record has no 'c' field");
}
