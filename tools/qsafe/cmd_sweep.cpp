// qsafe sweep: a research sweep in one file — models × methods × schemes (plus quantized files) × datasets
// × row-sampling seeds — expanded into one evaluation per (model, seed), each run resumably (or as one shard
// of N), and one combined report: every variant's refusal and over-refusal with their intervals, and per
// dataset a plot of refusal against bits per weight with one series per method.
#include <cstdio>
#include <filesystem>
#include <map>
#include <type_traits>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/eval/journal.hpp"
#include "qsafe/eval/metrics.hpp"
#include "qsafe/eval/report.hpp"
#include "qsafe/eval/sharding.hpp"
#include "qsafe/eval/svg_plot.hpp"
#include "qsafe/eval_run.hpp"
#include "qsafe/io/atomic_write.hpp"

namespace qsafe_cli {

namespace {

/// What a sweep file says (JSON; every key but methods, schemes and datasets has a default).
struct Sweep {
    std::vector<std::string> models{"smollm2"};
    std::vector<std::string> methods, schemes, files, datasets;
    std::vector<std::uint64_t> seeds{0};
    std::size_t limit = 0, max_new_tokens = 96, batch = 64, quality_windows = 0, calib_samples = 32, calib_length = 512;
    std::string judge = "refusal", calib = "wikitext2";

    static Sweep load(const std::filesystem::path& path) {
        const std::string where = path.string();
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(qsafe::eval::detail::read_whole_file(path));
        } catch (const nlohmann::json::exception& e) {
            throw qsafe::format_error(where + ": not JSON (" + e.what() + ")");
        }
        if (!j.is_object()) throw qsafe::format_error(where + ": a sweep is a JSON object");
        static const std::set<std::string> known{"models", "methods", "schemes", "files", "datasets", "seeds", "limit",
                                                 "max_new_tokens", "batch", "quality_windows", "judge", "calibration"};
        for (const auto& [key, value] : j.items())
            if (!known.contains(key)) {
                std::string list;
                for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
                throw qsafe::format_error(where + ": unknown key '" + key + "' (known: " + list + ")");
            }
        Sweep s;
        auto get = [&](const char* key, auto& out) {
            if (!j.contains(key)) return;
            try {
                out = j.at(key).get<std::remove_reference_t<decltype(out)>>();
            } catch (const nlohmann::json::exception&) {
                throw qsafe::format_error(where + ": key '" + key + "' has the wrong type (" + j.at(key).dump() + ")");
            }
        };
        get("models", s.models);
        get("methods", s.methods);
        get("schemes", s.schemes);
        get("files", s.files);
        get("datasets", s.datasets);
        get("seeds", s.seeds);
        get("limit", s.limit);
        get("max_new_tokens", s.max_new_tokens);
        get("batch", s.batch);
        get("quality_windows", s.quality_windows);
        get("judge", s.judge);
        if (j.contains("calibration")) {
            const auto& c = j.at("calibration");
            if (!c.is_object()) throw qsafe::format_error(where + ": key 'calibration' must be an object (source, samples, length)");
            try {
                s.calib = c.value("source", s.calib);
                s.calib_samples = c.value("samples", s.calib_samples);
                s.calib_length = c.value("length", s.calib_length);
            } catch (const nlohmann::json::exception&) {
                throw qsafe::format_error(where + ": key 'calibration' has a value of the wrong type (" + c.dump() + ")");
            }
        }
        const auto require = [&](const std::vector<std::string>& list, const char* key) {
            if (list.empty()) throw qsafe::format_error(where + ": key '" + key + "' must list at least one");
        };
        if (s.files.empty()) {
            require(s.methods, "methods");
            require(s.schemes, "schemes");
        }
        require(s.datasets, "datasets");
        require(s.models, "models");
        if (s.seeds.empty()) throw qsafe::format_error(where + ": key 'seeds' must list at least one");
        return s;
    }

    /// The variants every run evaluates: the reference, each scheme by each method, then the files.
    std::vector<std::string> variants() const {
        std::vector<std::string> out{"fp"};
        for (const auto& m : methods)
            for (const auto& s : schemes) out.push_back(s + ":" + m);
        for (const auto& f : files) out.push_back(f);
        return out;
    }
};

/// One (model, seed) evaluation of the sweep: its folder and label.
struct SweepRun {
    std::string model;
    std::uint64_t seed = 0;
    std::string label;  // "<model stem>/seed-<seed>"
    std::filesystem::path folder;
};

std::vector<SweepRun> expand_runs(const Sweep& s, const std::filesystem::path& out) {
    std::vector<SweepRun> runs;
    std::set<std::string> labels;
    for (const auto& model : s.models) {
        const std::string stem = model == "smollm2" ? "smollm2" : std::filesystem::path(model).stem().string();
        for (const auto seed : s.seeds) {
            SweepRun r{model, seed, stem + "/seed-" + std::to_string(seed), out / stem / ("seed-" + std::to_string(seed))};
            if (!labels.insert(r.label).second)
                throw qsafe::config_error("sweep: two runs would share the folder " + r.folder.string() + " (a model or seed listed twice?)");
            runs.push_back(std::move(r));
        }
    }
    return runs;
}

struct SweepArgs {
    std::string file, out, shard;
    bool dry_run = false;
    int threads = 0;
    double max_empty_pct = 50.0;
};
SweepArgs sweep_options;

void run_sweep(const SweepArgs& o) {
    const Sweep s = Sweep::load(o.file);
    const std::filesystem::path out = o.out.empty() ? std::filesystem::path("results") / std::filesystem::path(o.file).stem() : std::filesystem::path(o.out);
    const auto runs = expand_runs(s, out);
    const auto variants = s.variants();
    // Every variant name is checked now, not when its run reaches it.
    for (const auto& v : variants) (void)qsafe::parse_variant(v);
    std::string variant_list;
    for (const auto& v : variants) variant_list += (variant_list.empty() ? "" : ",") + v;
    std::fprintf(stderr, "[sweep %s: %zu runs (models x seeds) of %zu variants on %zu datasets, into %s]\n", o.file.c_str(), runs.size(),
                 variants.size(), s.datasets.size(), out.c_str());
    if (o.dry_run) {
        for (const auto& r : runs) std::printf("%s\t%s\t--seed %llu\t%s\n", r.label.c_str(), r.model.c_str(),
                                               static_cast<unsigned long long>(r.seed), r.folder.c_str());
        return;
    }
    std::vector<std::string> suspect;
    for (const auto& r : runs) {
        EvalArgs a;
        a.model = r.model;
        a.out = r.folder.string();
        a.judge = s.judge;
        a.variants = variant_list;
        std::string datasets;
        for (const auto& d : s.datasets) datasets += (datasets.empty() ? "" : ",") + d;
        a.datasets = datasets;
        a.limit = s.limit;
        a.seed = r.seed;
        a.quality_windows = s.quality_windows;
        a.decoding.max_new_tokens = s.max_new_tokens;
        a.decoding.max_batch = s.batch;
        a.calib.source = s.calib;
        a.calib.samples.samples = s.calib_samples;
        a.calib.samples.length = s.calib_length;
        a.threads = o.threads;
        a.max_empty_pct = o.max_empty_pct;
        a.resume = true;  // a sweep is re-run to continue it
        a.shard = o.shard;
        std::filesystem::create_directories(r.folder);
        std::fprintf(stderr, "[sweep run %s]\n", r.label.c_str());
        try {
            run_evaluation(a, nullptr);
        } catch (const SuspectResults& e) {
            suspect.push_back(r.label + ": " + e.what());  // its report is written; the others still run
        }
    }
    if (!o.shard.empty()) {
        std::fprintf(stderr, "[sweep shard %s done; when every shard is: qsafe merge on each run folder, then qsafe sweep %s again]\n",
                     o.shard.c_str(), o.file.c_str());
        return;
    }

    // The combined report: every run's metrics, variants labelled by run, one plot per dataset.
    nlohmann::ordered_json combined;
    combined["sweep"] = o.file;
    combined["variants"] = variants;
    combined["runs"] = nlohmann::ordered_json::array();
    std::map<std::string, qsafe::eval::DatasetMetrics> by_dataset;
    std::string md = "# Sweep " + std::filesystem::path(o.file).filename().string() + "\n\n" +
                     "| run | dataset | variant | method | bits/weight | refusal % [95% CI] | over-refusal % [95% CI] |\n"
                     "| --- | --- | --- | --- | ---: | --- | --- |\n";
    const auto pct = [](const qsafe::eval::Proportion& p) {
        if (p.total == 0) return std::string("—");
        const qsafe::eval::Interval ci = p.wilson();
        char text[64];
        std::snprintf(text, sizeof text, "%.1f [%.1f, %.1f]", 100.0 * *p.rate(), 100.0 * ci.low, 100.0 * ci.high);
        return std::string(text);
    };
    for (const auto& r : runs) {
        const auto journal = qsafe::eval::read_journal(r.folder / "journal.jsonl");
        qsafe::eval::MetricsOptions mo;
        mo.variant_order = variants;
        for (auto& v : mo.variant_order) v = qsafe::parse_variant(v).name;
        mo.max_empty_or_unknown_share = o.max_empty_pct / 100.0;
        const auto metrics = qsafe::eval::compute_metrics(journal.records, journal.variants, mo);
        nlohmann::ordered_json run{{"run", r.label}, {"model", r.model}, {"seed", r.seed}, {"folder", r.folder.string()}};
        run["report"] = qsafe::eval::report_json(metrics);
        combined["runs"].push_back(std::move(run));
        for (const auto& d : metrics.datasets) {
            auto& merged = by_dataset[d.dataset];
            merged.dataset = d.dataset;
            for (auto v : d.variants) {
                const auto& g = v.overall();
                md += "| " + r.label + " | " + d.dataset + " | " + v.info.name + " | " + v.info.method + " | " +
                      qsafe::eval::detail::printf_double("%.2f", v.info.bits_per_weight) + " | " + pct(g.refusal) + " | " +
                      pct(g.over_refusal) + " |\n";
                if (runs.size() > 1) v.info.name = r.label + " " + v.info.name;
                merged.variants.push_back(std::move(v));
            }
        }
    }
    std::filesystem::create_directories(out);
    qsafe::io::atomic_write_text(out / "sweep-report.json", combined.dump(2) + "\n");
    for (const auto& [name, d] : by_dataset) {
        md += "\n![" + name + "](sweep-" + name + ".svg)\n";
        qsafe::eval::PlotOptions po;
        po.title = "Sweep: refusal vs bits per weight, " + name;
        qsafe::io::atomic_write_text(out / ("sweep-" + name + ".svg"), qsafe::eval::safety_plot_svg(d, po));
    }
    qsafe::io::atomic_write_text(out / "sweep-report.md", md);
    std::fputs(md.c_str(), stdout);
    std::fprintf(stderr, "[sweep report: %s, %s]\n", (out / "sweep-report.md").c_str(), (out / "sweep-report.json").c_str());
    if (!suspect.empty()) {
        std::string lines;
        for (const auto& w : suspect) lines += "\n  " + w;
        throw SuspectResults("the sweep's reports are written, but " + std::to_string(suspect.size()) + " run(s) need attention:" + lines);
    }
}

}  // namespace

void add_sweep_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("sweep", "Run a sweep (models x methods x schemes x datasets x seeds) from a JSON file, with one combined report");
    SweepArgs& o = sweep_options;
    cmd->add_option("file", o.file, "the sweep (JSON: models, methods, schemes, files, datasets, seeds, limit, max_new_tokens, batch, "
                                    "quality_windows, judge, calibration)")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->add_option("-o,--out", o.out, "output folder (default: results/<file stem>); one folder per run below it");
    cmd->add_option("--shard", o.shard, "run shard I of N of every run (then qsafe merge each run folder, and run the sweep again)");
    cmd->add_option("-t,--threads", o.threads, "threads");
    cmd->add_option("--max-empty-pct", o.max_empty_pct, "as in qsafe eval")->capture_default_str();
    cmd->add_flag("--dry-run", o.dry_run, "list the runs and their folders, run nothing");
    cmd->callback([] { run_sweep(sweep_options); });
}

}  // namespace qsafe_cli
