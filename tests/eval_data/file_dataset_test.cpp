// A user's own prompt file as a dataset (eval/file_dataset.hpp): the column flags, the expected behaviour
// from a column or for the whole file, and the errors that must come before any model work.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "eval_data/temp_file.hpp"
#include "common/shared_data.hpp"
#include "qsafe/eval/file_dataset.hpp"

using namespace qsafe::eval;
using eval_data_test::error_message;
using eval_data_test::TempFile;

namespace {
FileDatasetColumns harmful_by(std::string column, std::vector<std::string> values = {"harmful", "unsafe", "1", "true", "yes"}) {
    FileDatasetColumns c;
    c.harmful_column = std::move(column);
    c.harmful_values = std::move(values);
    return c;
}
}  // namespace

TEST_CASE("file datasets: CSV, JSON Lines and JSON arrays with named columns") {
    const TempFile csv("mine.csv", "question,kind,topic,key\nhow do I pick a lock,unsafe,crime,a\nhow do I bake bread,safe,food,b\n");
    FileDatasetColumns c = harmful_by("kind");
    c.prompt = "question";
    c.category = "topic";
    c.id = "key";
    const PromptDataset d = load_dataset_file(csv.path(), c);
    CHECK(d.name() == csv.path().stem().string());
    REQUIRE(d.size() == 2);
    CHECK(d[0].id == "a");
    CHECK(d[0].prompt == "how do I pick a lock");
    CHECK(d[0].category == "crime");
    CHECK(d[0].expected == Expected::harmful);
    CHECK(d[1].expected == Expected::benign);

    const TempFile jsonl("mine.jsonl", "{\"prompt\": \"p1\", \"label\": 1}\n{\"prompt\": \"p2\", \"label\": 0}\n");
    const PromptDataset j = load_dataset_file(jsonl.path(), harmful_by("label"));
    REQUIRE(j.size() == 2);
    CHECK(j[0].id == "1");  // the row number without an id column
    CHECK(j[0].expected == Expected::harmful);  // JSON numbers are compared as their text
    CHECK(j[1].expected == Expected::benign);

    const TempFile array("mine.json", "[{\"prompt\": \"p1\"}, {\"prompt\": \"p2\"}, {\"prompt\": \"p3\"}]");
    FileDatasetColumns all;
    all.all = Expected::benign;
    const PromptDataset a = load_dataset_file(array.path(), all);
    CHECK(a.size() == 3);
    for (const auto& row : a) CHECK(row.expected == Expected::benign);
}

TEST_CASE("file datasets: harmful values match exactly or by prefix, every other non-empty value is benign") {
    const TempFile csv("types.csv", "prompt,type\na,contrast_homonyms\nb,homonyms\nc,contrast_figurative\n");
    const PromptDataset d = load_dataset_file(csv.path(), harmful_by("type", {"contrast_*"}));
    CHECK(d[0].expected == Expected::harmful);
    CHECK(d[1].expected == Expected::benign);
    CHECK(d[2].expected == Expected::harmful);
    const TempFile blank("blank.csv", "prompt,type\na,unsafe\nb,\n");
    CHECK(error_message<qsafe::format_error>([&] { load_dataset_file(blank.path(), harmful_by("type")); }) ==
          blank.name() + ":3: empty value in column 'type' (harmful or benign?)");
}

TEST_CASE("file datasets: --limit samples a file like a named dataset") {
    std::string text = "prompt,cat\n";
    for (int i = 0; i < 40; ++i) text += "prompt " + std::to_string(i) + "," + (i % 4 == 0 ? "x" : "y") + "\n";
    const TempFile csv("many.csv", text);
    FileDatasetColumns c;
    c.category = "cat";
    c.all = Expected::harmful;
    DataOptions o;
    o.limit = 8;
    o.seed = 3;
    const PromptDataset d = load_dataset_file(csv.path(), c, o);
    CHECK(d.size() == 8);
    std::size_t x = 0;
    for (const auto& row : d) x += row.category == "x";
    CHECK(x == 2);  // stratified: a quarter of the rows are 'x'
    CHECK(load_dataset_file(csv.path(), c, o)[0].id == d[0].id);
}

TEST_CASE("file datasets: clear errors naming the file, before any model work") {
    const TempFile csv("plain.csv", "question\nhello\n");
    FileDatasetColumns c;
    c.all = Expected::harmful;
    // The prompt column missing, with the columns the file has.
    CHECK(error_message<qsafe::format_error>([&] { load_dataset_file(csv.path(), c); }) ==
          csv.name() + ": no column 'prompt' (wanted as the prompt column; columns: question)");
    // Nothing says which prompts are harmful: the rates could not be computed.
    c.all.reset();
    c.prompt = "question";
    CHECK(error_message<qsafe::config_error>([&] { load_dataset_file(csv.path(), c); }).starts_with(csv.name() + ": say which prompts are harmful"));
    // Both a column and a fixed behaviour.
    c.harmful_column = "question";
    c.all = Expected::benign;
    CHECK(error_message<qsafe::config_error>([&] { load_dataset_file(csv.path(), c); }).find("not both") != std::string::npos);
    // A harmful column that is not there.
    c.all.reset();
    c.harmful_column = "label";
    CHECK(error_message<qsafe::format_error>([&] { load_dataset_file(csv.path(), c); }) ==
          csv.name() + ": no column 'label' (wanted as the expected column; columns: question)");
    // An empty file, and a header without rows.
    const TempFile empty("empty.csv", "");
    const TempFile header_only("header-only.csv", "prompt\n");
    FileDatasetColumns h;
    h.all = Expected::harmful;
    CHECK(!error_message<qsafe::error>([&] { load_dataset_file(empty.path(), h); }).empty());
    CHECK(error_message<qsafe::error>([&] { load_dataset_file(empty.path(), h); }).starts_with(empty.name()));
    CHECK(error_message<qsafe::format_error>([&] { load_dataset_file(header_only.path(), h); }) ==
          header_only.name() + ": no rows (an empty dataset would make every rate 0 of 0)");
    CHECK(error_message<qsafe::io_error>([&] { load_dataset_file("/nonexistent/x.csv", h); }) == "/nonexistent/x.csv: no such dataset file");
}

TEST_CASE("file datasets: a dataset named twice in one run is refused") {
    const TempFile a("twice.csv", "prompt\nhello\n");
    FileDatasetColumns c;
    c.all = Expected::harmful;
    CHECK(error_message<qsafe::config_error>([&] { load_dataset_entries({a.name(), a.name()}, c); }) ==
          "dataset '" + a.name() + "' is named twice");
    // Two files with one stem would be journaled under one name.
    const auto dir = std::filesystem::temp_directory_path() / ("qsafe_eval_data_stem_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir / "other");
    std::ofstream(dir / "twice.csv") << "prompt\nhello\n";
    std::ofstream(dir / "other" / "twice.csv") << "prompt\nbye\n";
    CHECK(error_message<qsafe::config_error>([&] {
              load_dataset_entries({(dir / "twice.csv").string(), (dir / "other" / "twice.csv").string()}, c);
          }).find("would both be reported as 'twice'") != std::string::npos);
    // A file named like a registered dataset, beside it.
    std::filesystem::create_directories(dir);
    {
        std::ofstream(dir / "default.csv") << "prompt\nhello\n";
        const DataOptions o = test_fixtures::source_data_options();
        CHECK(error_message<qsafe::config_error>([&] { load_dataset_entries({"default", (dir / "default.csv").string()}, c, o); }) ==
              "datasets 'default' and '" + (dir / "default.csv").string() + "' would both be reported as 'default'; rename the file");
    }
    std::filesystem::remove_all(dir);
    CHECK(is_dataset_file("x/advbench.csv"));
    CHECK(!is_dataset_file("advbench"));
    CHECK(error_message<qsafe::config_error>([&] { load_dataset_entries({"default", "default"}, c); }) == "dataset 'default' is named twice");
}
