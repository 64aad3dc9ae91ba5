// The journal survives a crash in the middle of a write, refuses damage before its end, refuses to be
// overwritten or resumed with other settings, and a resumed run ends with exactly the file an uninterrupted
// run writes.
#include <doctest/doctest.h>

#include <cstddef>
#include <string>
#include <vector>

#include "eval_report/eval_fixtures.hpp"
#include "qsafe/core/error.hpp"
#include "qsafe/eval/journal.hpp"

using namespace qsafe::eval;
using qsafe::test::eval_scratch_file;
using qsafe::test::judged;
using qsafe::test::read_text;
using qsafe::test::write_text;

namespace {

RunConfig sample_config() {
    RunConfig c;
    c.model = "SmolLM2-135M-Instruct.gguf";
    c.datasets = {"advbench", "xstest"};
    c.judge = "refusal-phrases v1";
    c.decoding = {{"max_new_tokens", 256}, {"temperature", 0.0}, {"seed", 1234}};
    return c;
}

std::vector<ResponseRecord> sample_records() {
    std::vector<ResponseRecord> out;
    for (int i = 0; i < 6; ++i) {
        const bool refused = i % 3 != 0;
        out.push_back(judged(i < 3 ? "fp" : "rtn-q4", "p" + std::to_string(i % 3), Expected::harmful,
                             refused ? Verdict::refusal : Verdict::compliance));
    }
    out[4].response = "ends inside a character \xE2\x82";  // a byte-level tokenizer can cut UTF-8 like this
    return out;
}

const VariantInfo q4_info{"rtn-q4", "rtn", "*=int4-g32-sym", 4.5, 123456, 12.5, {}, {}, {}, {}, {}, {}};

}  // namespace

TEST_CASE("journal resumed after a torn write equals an uninterrupted journal") {
    const auto records = sample_records();

    const auto whole_path = eval_scratch_file("whole.jsonl");
    std::vector<ResponseRecord> whole_records;
    {
        auto journal = Journal::open(whole_path, sample_config(), JournalMode::start_new);
        journal.append(q4_info);
        for (const auto& r : records) journal.append(r);
        whole_records = journal.records();
    }
    REQUIRE(whole_records.size() == records.size());
    CHECK(whole_records[0] == records[0]);
    // Invalid UTF-8 is stored as U+FFFD, and the in-memory record says what the file says.
    CHECK(whole_records[4].response == "ends inside a character \xEF\xBF\xBD");

    const auto torn_path = eval_scratch_file("torn.jsonl");
    const std::size_t done_before_crash = 4;
    {
        auto journal = Journal::open(torn_path, sample_config(), JournalMode::start_new);
        journal.append(q4_info);
        for (std::size_t i = 0; i < done_before_crash; ++i) journal.append(records[i]);
    }
    // The crash: half of the next line reached the file, its newline did not.
    const auto next_line = nlohmann::ordered_json(records[done_before_crash])
                               .dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    write_text(torn_path, read_text(torn_path) + next_line.substr(0, next_line.size() / 2));

    {
        auto journal = Journal::open(torn_path, sample_config(), JournalMode::resume);
        CHECK(journal.discarded_tail_bytes() == next_line.size() / 2);
        CHECK(journal.records().size() == done_before_crash);
        REQUIRE(journal.variants().size() == 1);
        CHECK(journal.variants()[0] == q4_info);
        CHECK(journal.finished("fp", "p0", "advbench"));
        CHECK(journal.finished("rtn-q4", "p0", "advbench"));
        CHECK_FALSE(journal.finished("rtn-q4", "p1", "advbench"));
        CHECK_FALSE(journal.finished("fp", "p0", "xstest"));
        for (const auto& r : records)
            if (!journal.finished(r.variant, r.prompt_id, r.dataset)) journal.append(r);
        CHECK(journal.records() == whole_records);
    }
    CHECK(read_text(torn_path) == read_text(whole_path));
    const auto reread = read_journal(torn_path);
    CHECK(reread.records == whole_records);
    CHECK(reread.config == sample_config());
    CHECK(reread.torn_tail_bytes == 0);
}

TEST_CASE("journal refuses a corrupt line before its end and names it") {
    const auto path = eval_scratch_file("corrupt.jsonl");
    {
        auto journal = Journal::open(path, sample_config(), JournalMode::start_new);
        for (const auto& r : sample_records()) journal.append(r);
    }
    auto text = read_text(path);
    // Damage line 3 (the second record) but keep its newline, as a disk error or a hand edit would.
    std::size_t line_start = 0;
    for (int line = 1; line < 3; ++line) line_start = text.find('\n', line_start) + 1;
    text.replace(line_start, 10, "#garbage!#");
    write_text(path, text);

    const std::string where = path.string() + ":3:";
    CHECK_THROWS_WITH_AS(Journal::open(path, sample_config(), JournalMode::resume), doctest::Contains(where.c_str()),
                         qsafe::format_error);
    CHECK_THROWS_WITH_AS(read_journal(path), doctest::Contains(where.c_str()), qsafe::format_error);
    CHECK(read_text(path) == text);  // a refused journal is left as it was
}

TEST_CASE("journal names a record with a bad field") {
    const auto path = eval_scratch_file("bad_field.jsonl");
    {
        auto journal = Journal::open(path, sample_config(), JournalMode::start_new);
        journal.append(sample_records()[0]);
    }
    auto bad = nlohmann::ordered_json(sample_records()[1]);
    bad["verdict"] = "sort of";
    write_text(path, read_text(path) + bad.dump() + "\n");
    CHECK_THROWS_WITH_AS(read_journal(path), doctest::Contains((path.string() + ":3: response record: key 'verdict'").c_str()),
                         qsafe::format_error);
}

TEST_CASE("journal will not overwrite results without resume") {
    const auto path = eval_scratch_file("existing.jsonl");
    {
        auto journal = Journal::open(path, sample_config(), JournalMode::start_new);
        journal.append(sample_records()[0]);
    }
    const auto before = read_text(path);
    CHECK_THROWS_WITH_AS(Journal::open(path, sample_config(), JournalMode::start_new),
                         doctest::Contains("pass --resume"), qsafe::config_error);
    CHECK(read_text(path) == before);

    // An empty file holds nothing to lose.
    const auto empty = eval_scratch_file("empty.jsonl");
    write_text(empty, "");
    CHECK_NOTHROW(Journal::open(empty, sample_config(), JournalMode::start_new));
}

TEST_CASE("journal refuses to resume with different settings") {
    const auto path = eval_scratch_file("settings.jsonl");
    {
        auto journal = Journal::open(path, sample_config(), JournalMode::start_new);
        journal.append(sample_records()[0]);
    }
    auto other = sample_config();
    other.model = "other.gguf";
    other.decoding["temperature"] = 0.7;
    other.decoding["top_p"] = 0.9;
    try {
        Journal::open(path, other, JournalMode::resume);
        FAIL("resume with other settings was accepted");
    } catch (const qsafe::config_error& e) {
        const std::string message = e.what();
        CHECK(message.find("model: journal has \"SmolLM2-135M-Instruct.gguf\", this run has \"other.gguf\"") !=
              std::string::npos);
        CHECK(message.find("decoding.temperature: journal has 0.0, this run has 0.7") != std::string::npos);
        CHECK(message.find("decoding.top_p: journal has nothing, this run has 0.9") != std::string::npos);
        CHECK(message.find("decoding.seed") == std::string::npos);
    }
    // Key order inside the decoding settings does not matter.
    auto reordered = sample_config();
    reordered.decoding = {{"seed", 1234}, {"temperature", 0.0}, {"max_new_tokens", 256}};
    CHECK_NOTHROW(Journal::open(path, reordered, JournalMode::resume));
}

TEST_CASE("journal resume starts a missing or header-less journal") {
    const auto missing = eval_scratch_file("missing.jsonl");
    {
        auto journal = Journal::open(missing, sample_config(), JournalMode::resume);
        CHECK(journal.records().empty());
        journal.append(sample_records()[0]);
    }
    CHECK(read_journal(missing).records.size() == 1);

    const auto torn_header = eval_scratch_file("torn_header.jsonl");
    write_text(torn_header, "{\"qsafe_journal\":1,\"con");
    {
        auto journal = Journal::open(torn_header, sample_config(), JournalMode::resume);
        CHECK(journal.discarded_tail_bytes() == 23);
        CHECK(journal.records().empty());
    }
    CHECK(read_journal(torn_header).config == sample_config());

    const auto not_a_journal = eval_scratch_file("not_a_journal.jsonl");
    write_text(not_a_journal, "{\"hello\":1}\n");
    CHECK_THROWS_WITH_AS(read_journal(not_a_journal), doctest::Contains(":1: the first line is not a qsafe journal"),
                         qsafe::format_error);
}

TEST_CASE("journal cannot be opened twice at once") {
    const auto path = eval_scratch_file("locked.jsonl");
    {
        auto first = Journal::open(path, sample_config(), JournalMode::start_new);
        CHECK_THROWS_WITH_AS(Journal::open(path, sample_config(), JournalMode::resume),
                             doctest::Contains("in use by another run"), qsafe::io_error);
        first.append(sample_records()[0]);
    }
    // Closing the first releases the lock.
    auto again = Journal::open(path, sample_config(), JournalMode::resume);
    CHECK(again.records().size() == 1);
}

TEST_CASE("journal refuses a second result for the same prompt") {
    const auto path = eval_scratch_file("duplicate.jsonl");
    auto journal = Journal::open(path, sample_config(), JournalMode::start_new);
    journal.append(sample_records()[0]);
    CHECK_THROWS_AS(journal.append(sample_records()[0]), qsafe::config_error);
    auto other_dataset = sample_records()[0];
    other_dataset.dataset = "xstest";
    CHECK_NOTHROW(journal.append(other_dataset));
    CHECK(journal.records().size() == 2);
}
