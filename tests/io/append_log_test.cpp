// io::cut_unfinished_last_line: what a resumed append-only file keeps after a kill during a write.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "io/test_files.hpp"
#include "qsafe/io/append_log.hpp"

namespace {
std::string contents(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

TEST_CASE("append log: an unfinished last line is cut, complete files and missing files are left alone") {
    using qsafe::io::cut_unfinished_last_line;
    CHECK(cut_unfinished_last_line(qsafe::test::scratch_file("missing.jsonl")) == 0);

    const auto complete = qsafe::test::write_text("complete.jsonl", "{\"a\":1}\n{\"a\":2}\n");
    CHECK(cut_unfinished_last_line(complete) == 0);
    CHECK(contents(complete) == "{\"a\":1}\n{\"a\":2}\n");

    const auto torn = qsafe::test::write_text("torn.jsonl", "{\"a\":1}\n{\"a\":2}\n{\"a\":");
    CHECK(cut_unfinished_last_line(torn) == 5);
    CHECK(contents(torn) == "{\"a\":1}\n{\"a\":2}\n");
    // Appending now starts a line of its own.
    std::ofstream(torn, std::ios::app) << "{\"a\":3}\n";
    CHECK(contents(torn) == "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");

    const auto only_torn = qsafe::test::write_text("only_torn.jsonl", "{\"a\"");
    CHECK(cut_unfinished_last_line(only_torn) == 4);
    CHECK(contents(only_torn).empty());
}
