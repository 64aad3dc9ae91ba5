#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

#include "common/skip.hpp"
#include "qsafe/eval/dataset_registry.hpp"
#include "qsafe/eval/evaluator.hpp"
#include "qsafe/eval/metrics.hpp"
#include "qsafe/eval/refusal_judge.hpp"
#include "qsafe/eval/report.hpp"

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
