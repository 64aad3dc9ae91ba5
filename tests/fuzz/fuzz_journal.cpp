// libFuzzer harness: the evaluation journal (eval/journal.hpp): read_journal (header line, run config,
// variant_info lines, response records, duplicates, torn final line) and, when it reads, resuming it with
// Journal::open in resume mode under the journal's own config (cuts a torn tail, rebuilds the finished set)
// and comparing that config with another one.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "qsafe/eval/journal.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = qsafe_fuzz::write_file("journal.jsonl", data, size);
    try {
        const qsafe::eval::JournalContents contents = qsafe::eval::read_journal(path);
        qsafe::eval::RunConfig other;
        other.model = "other";
        qsafe_fuzz::consume(qsafe::eval::describe_config_differences(contents.config, other));
        auto journal = qsafe::eval::Journal::open(path, contents.config, qsafe::eval::JournalMode::resume);
        qsafe_fuzz::consume(journal);
    } catch (const qsafe::error& e) {
        qsafe_fuzz::rejected(e);
    }
    return 0;
}
