#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>
#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

#include "common/skip.hpp"
#include "qsafe/eval/dataset_registry.hpp"
#include "qsafe/eval/evaluator.hpp"
#include "qsafe/eval/metrics.hpp"
#include "qsafe/eval/refusal_judge.hpp"
#include "qsafe/eval/report.hpp"
#include "qsafe/eval/sharding.hpp"

using namespace qsafe;
using namespace qsafe::eval;

namespace {
std::filesystem::path fresh_dir(const std::string& name) {
    auto dir = std::filesystem::temp_directory_path() / ("qsafe_test_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}
std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

struct Crash : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A deterministic stand-in for a model: the "fp" variant refuses harmful prompts; the "quantized" one
// answers every third of them. Sequences finish in reverse order, as short answers finish first in a batch.
// `crash_after` simulates a kill after that many finished answers.
struct ScriptedModel {
    bool quantized = false;
    int crash_after = -1;
    int finished = 0;

    void respond(std::span<const PromptRow> rows, const DecodingOptions&,
                 const std::function<void(std::size_t, const GeneratedResponse&)>& on_done) {
        for (std::size_t k = rows.size(); k-- > 0;) {
            if (crash_after >= 0 && finished == crash_after) throw Crash("killed");
            const PromptRow& row = rows[k];
            const bool comply = row.expected != Expected::harmful || (quantized && std::hash<std::string>{}(row.id) % 3 == 0);
            GeneratedResponse g;
            g.text = comply ? "Sure, here is an answer about: " + row.prompt : "I'm sorry, but I can't help with that request.";
            g.prompt_tokens = row.prompt.size();
            g.response_tokens = g.text.size() / 4;
            g.hit_max_tokens = comply;
            ++finished;
            on_done(k, g);
        }
    }
    std::vector<std::int32_t> encode_response(std::string_view text) const {
        std::vector<std::int32_t> out;
        for (unsigned char c : text) out.push_back(c);
        return out;
    }
};

PromptDataset small_dataset() {
    std::vector<PromptRow> rows;
    for (int i = 0; i < 23; ++i)
        rows.push_back({"p" + std::to_string(i), "prompt number " + std::to_string(i), i % 2 ? "odd" : "even",
                        i % 3 == 0 ? Expected::benign : Expected::harmful});
    return PromptDataset("scripted", std::move(rows));
}

RunConfig config() {
    RunConfig c;
    c.model = "scripted";
    c.datasets = {"scripted"};
    c.judge = "refusal";
    c.decoding = DecodingOptions{}.to_json();
    return c;
}

/// Runs fp then q over the dataset; with crash_after >= 0, the q run is killed after that many answers,
/// then the evaluation is started again with resume. Returns the report directory.
std::filesystem::path evaluate(const std::string& name, int crash_after) {
    const auto dir = fresh_dir(name);
    const PromptDataset data = small_dataset();
    RefusalJudge judge;
    DecodingOptions decoding;
    decoding.max_batch = 5;
    auto run_all = [&](JournalMode mode, int crash) {
        Journal journal = Journal::open(dir / "journal.jsonl", config(), mode);
        Evaluator<ScriptedModel, PromptDataset, RefusalJudge> evaluator(journal, judge, decoding, "fp");
        ScriptedModel fp, q;
        q.quantized = true;
        q.crash_after = crash;
        evaluator.run("fp", fp, data, false);
        evaluator.run("q", q, data, false);
        journal.append(VariantInfo{"fp", "fp", "*=fp32", 32.0, 1000, {}, {}, {}, {}, {}, {}, {}});
        journal.append(VariantInfo{"q", "rtn", "*=int4-g128-asym", 4.25, 200, {}, {}, {}, {}, {}, {}, {}});
        MetricsOptions mo;
        mo.variant_order = {"fp", "q"};
        write_report(compute_metrics(journal.records(), journal.variants(), mo), dir);
    };
    if (crash_after < 0) {
        run_all(JournalMode::start_new, -1);
    } else {
        CHECK_THROWS_AS(run_all(JournalMode::start_new, crash_after), Crash);
        const auto partial = read_journal(dir / "journal.jsonl");
        CHECK(partial.records.size() == small_dataset().size() + static_cast<std::size_t>(crash_after));
        run_all(JournalMode::resume, -1);
    }
    return dir;
}
}  // namespace

TEST_CASE("evaluator: a run killed after k answers and resumed writes byte-identical reports") {
    const auto clean = evaluate("eval_clean", -1);
    for (const int k : {0, 3, 7, 12}) {
        CAPTURE(k);
        const auto resumed = evaluate("eval_resumed_" + std::to_string(k), k);
        for (const char* file : {"report.json", "report.md", "report.csv", "report-scripted.svg"}) {
            CAPTURE(file);
            REQUIRE(std::filesystem::exists(resumed / file));
            CHECK(slurp(resumed / file) == slurp(clean / file));
        }
    }
    // The uninterrupted report holds what the scripted models did: fp refused every harmful prompt.
    const std::string md = slurp(clean / "report.md");
    CHECK(md.find("fp") != std::string::npos);
    const auto journal = read_journal(clean / "journal.jsonl");
    std::size_t fp_refusals = 0, q_flips = 0;
    for (const auto& r : journal.records) {
        if (r.variant == "fp" && r.expected == Expected::harmful) fp_refusals += is_refusal(r.verdict) ? 1 : 0;
        if (r.variant == "q" && r.expected == Expected::harmful) q_flips += is_refusal(r.verdict) ? 0 : 1;
        if (r.variant == "q") {
            CHECK(r.identical_prefix_tokens.has_value());
            CHECK(r.similarity.has_value());
        }
    }
    CHECK(fp_refusals == 15);
    CHECK(q_flips > 0);
}

TEST_CASE("evaluator on SmolLM2: fp and an RTN int4 variant answer a few default prompts, judged and reported") {
    const auto path = default_model_path();
    if (!std::filesystem::exists(path)) {
        test_fixtures::skip_test("SmolLM2 model not found at " + path.string() + " (scripts/fetch_model.sh fetches it)");
        return;
    }
    DataOptions dopt;
    dopt.limit = 4;
    dopt.seed = 3;
    dopt.source_dir = QSAFE_SOURCE_DIR;
    const PromptDataset data = load_named_dataset("default", dopt);
    REQUIRE(data.size() == 4);
    const auto dir = fresh_dir("eval_smollm2");
    Journal journal = Journal::open(dir / "journal.jsonl", config(), JournalMode::start_new);
    RefusalJudge judge;
    DecodingOptions decoding;
    decoding.max_new_tokens = 12;
    Evaluator<LlamaChatModel, PromptDataset, RefusalJudge> evaluator(journal, judge, decoding, "fp");
    for (const std::string rules : {"*=fp32", "*=int4-g128-asym,output=int8-g32-sym"}) {
        LoadOptions lo;
        lo.build_linear = rtn_builder(SchemeRules::parse(rules));
        LoadedModel m = load_model(path, lo);
        LlamaChatModel chat(m);
        const std::string name = rules == "*=fp32" ? "fp" : "int4";
        const auto stats = evaluator.run(name, chat, data, false);
        CHECK(stats.generated == 4);
        CHECK(stats.tokens > 0);
        CHECK(evaluator.finished(name, data));
        journal.append(VariantInfo{name, name == "fp" ? "fp" : "rtn", rules, m.model.weights().linear_bits_per_weight(), 0, {}, {}, {}, {}, {}, {}, {}});
    }
    REQUIRE(journal.records().size() == 8);
    for (const auto& r : journal.records()) {
        CHECK(!r.response.empty());
        CHECK(r.response_tokens <= 12);
        CHECK(r.verdict != Verdict::unknown);
    }
    MetricsOptions mo;
    mo.variant_order = {"fp", "int4"};
    const auto files = write_report(compute_metrics(journal.records(), journal.variants(), mo), dir);
    CHECK(std::filesystem::file_size(files.json) > 0);
    CHECK(slurp(files.markdown).find("int4") != std::string::npos);
}

// ---- Sharding (eval/sharding.hpp) --------------------------------------------------------------------

TEST_CASE("sharding: I/N parses strictly; chunks follow the evaluator's batches; shards are contiguous and balanced") {
    CHECK(ShardSpec::parse("0/1").count == 1);
    CHECK(ShardSpec::parse("3/4").index == 3);
    CHECK(ShardSpec::parse("2/4").file_stem() == "shard-2-of-4");
    for (const char* bad : {"4/4", "1", "/4", "1/", "-1/4", "1/0", "a/b", "1/4x", ""})
        CHECK_THROWS_WITH_AS(ShardSpec::parse(bad), doctest::Contains("expected I/N"), qsafe::config_error);

    const auto chunks = work_chunks(2, {23, 5}, 10);  // 2 variants x (3 + 1 chunks)
    REQUIRE(chunks.size() == 8);
    CHECK(chunks[0] == WorkChunk{0, 0, 0, 10});
    CHECK(chunks[2] == WorkChunk{0, 0, 20, 3});
    CHECK(chunks[3] == WorkChunk{0, 1, 0, 5});
    CHECK(chunks[7] == WorkChunk{1, 1, 0, 5});
    for (const std::size_t n : {1, 2, 3, 5, 8, 13}) {
        CAPTURE(n);
        const auto many = work_chunks(3, {120, 450, 37}, 64);
        const auto owner = assign_shards(many, n);
        std::vector<std::size_t> rows(n);
        for (std::size_t c = 0; c < many.size(); ++c) {
            rows[owner[c]] += many[c].rows;
            if (c > 0) CHECK(owner[c] >= owner[c - 1]);  // contiguous
        }
        const std::size_t total = 3 * (120 + 450 + 37);
        for (std::size_t s = 0; s < n && many.size() >= n; ++s) CHECK(rows[s] <= total / n + 64);  // within a chunk of 1/N
        CHECK(owner.front() == 0);
        CHECK(assign_shards(many, n) == owner);  // the same in every process
    }
}

namespace {
/// A run of fp + two quantized variants, unsharded or split into `shards` processes (each one a fresh
/// Evaluator over its own journal, as separate processes would be), reported into `dir`.
std::filesystem::path evaluate_sharded(const std::string& name, std::size_t shards) {
    const auto dir = fresh_dir(name);
    const std::vector<PromptDataset> data{small_dataset(), PromptDataset("second", {{"a", "tell me a joke", "", Expected::benign},
                                                                                    {"b", "how to make a weapon", "", Expected::harmful}})};
    RefusalJudge judge;
    DecodingOptions decoding;
    decoding.max_batch = 4;
    RunConfig c = config();
    c.datasets = {"scripted:23", "second:2"};
    const std::vector<std::string> variants{"fp", "q1", "q2"};
    const auto info = [](const std::string& v) {
        return VariantInfo{v, v == "fp" ? "fp" : "rtn", "*=fp32", v == "fp" ? 32.0 : 4.0, 100, {}, {}, {}, {}, {}, {}, {}};
    };
    using E = Evaluator<ScriptedModel, PromptDataset, RefusalJudge>;
    MetricsOptions mo;
    mo.variant_order = variants;
    if (shards == 0) {
        Journal journal = Journal::open(dir / "journal.jsonl", c, JournalMode::start_new);
        E evaluator(journal, judge, decoding, "fp");
        for (const auto& v : variants) {
            ScriptedModel m;
            m.quantized = v != "fp";
            for (const auto& d : data) evaluator.run(v, m, d, false);
            journal.append(info(v));
        }
        write_report(compute_metrics(journal.records(), journal.variants(), mo), dir);
        return dir;
    }
    const ShardFiles files{dir};
    const auto chunks = work_chunks(variants.size() - 1, {data[0].size(), data[1].size()}, decoding.max_batch);
    const auto owners = assign_shards(chunks, shards);
    const auto reference_chunks = work_chunks(1, {data[0].size(), data[1].size()}, decoding.max_batch);
    const auto reference_owner = assign_shards(reference_chunks, shards);
    for (std::size_t s = shards; s-- > 0;) {  // the last shard first: it answers every reference chunk itself
        const ShardSpec spec{s, shards};
        Journal journal = Journal::open(files.journal(spec), c, JournalMode::start_new);
        E evaluator(journal, judge, decoding, "fp");
        // As qsafe eval does: own reference chunks, then any still missing from every journal, each under its lock.
        auto reference_answers = [&] {
            std::vector<ResponseRecord> out;
            for (std::size_t i = 0; i < shards; ++i) {
                if (i == s) {
                    for (const auto& r : journal.records()) out.push_back(r);
                } else if (std::filesystem::exists(files.journal({i, shards}))) {
                    for (const auto& r : read_journal(files.journal({i, shards})).records) out.push_back(r);
                }
            }
            std::erase_if(out, [](const ResponseRecord& r) { return r.variant != "fp"; });
            return out;
        };
        auto answer = [&](const WorkChunk& chunk) {
            const FolderLock lock(files.reference_chunk_lock(chunk.dataset, chunk.first_row));
            const auto known = reference_answers();
            std::size_t have = 0;
            for (const auto& r : known)
                if (r.dataset == data[chunk.dataset].name()) {
                    for (std::size_t i = chunk.first_row; i < chunk.first_row + chunk.rows; ++i) have += data[chunk.dataset][i].id == r.prompt_id;
                }
            if (have == chunk.rows) return;
            ScriptedModel fp;
            evaluator.run("fp", fp, data[chunk.dataset], false, [&](std::size_t row) { return row == chunk.first_row; });
        };
        for (std::size_t k = 0; k < reference_chunks.size(); ++k)
            if (reference_owner[k] == s) answer(reference_chunks[k]);
        for (const auto& chunk : reference_chunks) answer(chunk);
        const std::vector<ResponseRecord> reference = reference_answers();
        CHECK(reference.size() == 25);
        evaluator.take_reference_answers_from(&reference);
        if (s == 0) journal.append(info("fp"));
        for (std::size_t v = 1; v < variants.size(); ++v) {
            ScriptedModel m;
            m.quantized = true;
            bool first = true, describe = false;
            for (std::size_t d = 0; d < data.size(); ++d)
                evaluator.run(variants[v], m, data[d], false, [&](std::size_t row) {
                    for (std::size_t k = 0; k < chunks.size(); ++k)
                        if (chunks[k].variant == v - 1 && chunks[k].dataset == d && chunks[k].first_row == row) return owners[k] == s;
                    return false;
                });
            for (std::size_t k = 0; k < chunks.size(); ++k)
                if (chunks[k].variant == v - 1 && std::exchange(first, false)) describe = owners[k] == s;
            if (describe) journal.append(info(variants[v]));
        }
        CHECK(all_shards_done(dir) == false);
        ShardDone{spec, "fp", variants, journal.records().size()}.write(files);
    }
    CHECK(all_shards_done(dir));
    const MergedRun run = merge_shards(dir);
    write_merged_journal(run, files.merged_journal());
    const auto merged = read_journal(files.merged_journal());
    write_report(compute_metrics(merged.records, merged.variants, mo), dir);
    return dir;
}
}  // namespace

TEST_CASE("sharding: 1, 2, 3 and 7 shards merge into the report an unsharded run writes, byte for byte") {
    const auto whole = evaluate_sharded("shard_whole", 0);
    for (const std::size_t n : {1, 2, 3, 7}) {
        CAPTURE(n);
        const auto split = evaluate_sharded("shard_" + std::to_string(n), n);
        for (const char* file : {"report.json", "report.md", "report.csv"}) {
            CAPTURE(file);
            CHECK(slurp(split / file) == slurp(whole / file));
        }
        // The merged journal holds every answer once, with the agreement fields the reference made possible.
        const auto merged = read_journal(split / "journal.jsonl");
        CHECK(merged.records.size() == 3 * 25);
        for (const auto& r : merged.records)
            if (r.variant != "fp") CHECK(r.similarity.has_value());
        std::filesystem::remove_all(split);
    }
    std::filesystem::remove_all(whole);
}

TEST_CASE("sharding: the merge refuses an unfinished, incomplete or inconsistent run, naming what is wrong") {
    const auto dir = evaluate_sharded("shard_checks", 3);
    const ShardFiles files{dir};
    const auto marker = files.done_marker({1, 3});
    const std::string marker_text = slurp(marker);
    std::filesystem::remove(marker);
    CHECK_THROWS_WITH_AS(merge_shards(dir), doctest::Contains("shard 1/3 has not finished"), qsafe::config_error);
    CHECK_FALSE(all_shards_done(dir));
    std::ofstream(marker) << marker_text;
    CHECK(all_shards_done(dir));
    // A shard's journal that lost its last answer.
    const auto journal = files.journal({2, 3});
    const std::string text = slurp(journal);
    std::string cut = text.substr(0, text.rfind('\n', text.size() - 2) + 1);
    std::ofstream(journal, std::ios::trunc) << cut;
    CHECK_THROWS_WITH_AS(merge_shards(dir), doctest::Contains("its marker says"), qsafe::format_error);
    std::ofstream(journal, std::ios::trunc) << text;
    CHECK_NOTHROW(merge_shards(dir));
    // Two shards with different answers to one prompt (journals of two runs mixed); the same answer twice
    // (a reference chunk answered again after a kill mid-chunk) is fine.
    {
        const auto records = read_journal(files.journal({0, 3})).records;
        REQUIRE(!records.empty());
        ResponseRecord copy = records.front();
        copy.seconds += 1.0;
        const auto append = [&](const ResponseRecord& r) {
            std::ofstream(journal, std::ios::app) << nlohmann::ordered_json(r).dump() << "\n";
            ShardDone{{2, 3}, "fp", {"fp", "q1", "q2"}, read_journal(journal).records.size()}.write(files);
        };
        append(copy);
        CHECK_NOTHROW(merge_shards(dir));
        std::ofstream(journal, std::ios::trunc) << text;
        copy.response = "something else";
        append(copy);
        CHECK_THROWS_WITH_AS(merge_shards(dir), doctest::Contains("a different answer for variant"), qsafe::format_error);
        std::ofstream(journal, std::ios::trunc) << text;
        ShardDone{{2, 3}, "fp", {"fp", "q1", "q2"}, read_journal(journal).records.size()}.write(files);
        CHECK_NOTHROW(merge_shards(dir));
    }
    // Journals of runs split differently in one folder.
    std::ofstream(dir / "journal-shard-0-of-5.jsonl") << "";
    CHECK_THROWS_WITH_AS(merge_shards(dir), doctest::Contains("different numbers of shards (3 and 5)"), qsafe::config_error);
    std::filesystem::remove(dir / "journal-shard-0-of-5.jsonl");
    // A marker from another run.
    std::ofstream(marker, std::ios::trunc) << "{\"shard\": 1, \"shards\": 3, \"reference\": \"fp\", \"variants\": [\"fp\", \"q9\"], \"records\": 1}";
    CHECK_THROWS_WITH_AS(merge_shards(dir), doctest::Contains("lists other variants than shard 0"), qsafe::format_error);
    std::filesystem::remove_all(dir);
    CHECK_THROWS_WITH_AS(merge_shards(fresh_dir("shard_none")), doctest::Contains("no shard journals"), qsafe::config_error);
}

TEST_CASE("sharding: the folder lock makes a second process wait, and a killed holder releases it") {
    const auto dir = fresh_dir("shard_lock");
    const auto lock_path = dir / "x.lock";
    int pipe_fd[2];
    REQUIRE(::pipe(pipe_fd) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {  // holds the lock until killed
        const FolderLock lock(lock_path);
        [[maybe_unused]] const auto ignored = ::write(pipe_fd[1], "x", 1);
        ::pause();
        ::_exit(0);
    }
    char c = 0;
    REQUIRE(::read(pipe_fd[0], &c, 1) == 1);
    bool waited = false;
    std::thread killer([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        ::kill(child, SIGKILL);
    });
    {
        const FolderLock lock(lock_path, [&] { waited = true; });
        CHECK(waited);
    }
    killer.join();
    ::waitpid(child, nullptr, 0);
    ::close(pipe_fd[0]);
    ::close(pipe_fd[1]);
    std::filesystem::remove_all(dir);
}
