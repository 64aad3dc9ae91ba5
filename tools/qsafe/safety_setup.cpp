#include "qsafe/safety_setup.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "qsafe/calib/calibration_data.hpp"
#include "qsafe/calib/collect.hpp"
#include "qsafe/common.hpp"
#include "qsafe/eval/dataset_registry.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/safety/response_kl.hpp"
#include "qsafe/safety/sensitivity.hpp"
#include "qsafe/train/alignment_data.hpp"
#include "qsafe/train/objectives.hpp"

namespace qsafe_cli {

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

qsafe::eval::DataOptions data_options(std::uint64_t seed) {
    qsafe::eval::DataOptions d;
    d.seed = seed;
    d.source_dir = QSAFE_SOURCE_DIR;
    return d;
}
}  // namespace

void SafetyDataOptions::add_to(CLI::App& cmd) {
    cmd.add_option("--safety-data", datasets, "harmful prompts whose fp answers are the safety data (datasets, comma-separated)")
        ->capture_default_str();
    cmd.add_option("--safety-exclude", exclude, "datasets whose prompts are never used as safety data (e.g. the evaluation's)");
    cmd.add_option("--safety-prompts", prompts, "harmful prompts in the safety data")->capture_default_str();
    cmd.add_option("--safety-tokens", max_new_tokens, "tokens of each fp answer")->capture_default_str();
    cmd.add_option("--safety-set", set_file, "cache of the safety data (JSON lines): read if it exists, else written");
}

std::string SafetyDataOptions::describe() const {
    std::string d = datasets + ":" + std::to_string(prompts) + "x" + std::to_string(max_new_tokens) + ":seed=" + std::to_string(seed);
    if (!exclude.empty()) d += ":exclude=" + exclude;
    return d;
}

SafetyPrompts safety_prompts(const SafetyDataOptions& opt) {
    std::set<std::string> excluded;
    for (const auto& name : split_commas(opt.exclude)) {
        const auto dataset = qsafe::eval::load_named_dataset(name, data_options(opt.seed));
        for (const auto& row : dataset.rows()) excluded.insert(row.prompt);
    }
    std::vector<std::string> ids, prompts;
    for (const auto& name : split_commas(opt.datasets)) {
        const auto dataset = qsafe::eval::load_named_dataset(name, data_options(opt.seed));
        for (const auto& row : dataset.rows())
            if (row.expected != qsafe::eval::Expected::benign && !excluded.contains(row.prompt)) {
                ids.push_back(name + ":" + row.id);
                prompts.push_back(row.prompt);
            }
    }
    if (prompts.empty()) throw qsafe::config_error("safety data: no harmful prompts left in '" + opt.datasets + "'");
    // A seeded sample, kept in dataset order.
    std::vector<std::size_t> order(prompts.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::mt19937_64 rng(opt.seed);
    std::shuffle(order.begin(), order.end(), rng);
    order.resize(std::min(order.size(), opt.prompts));
    std::sort(order.begin(), order.end());
    std::vector<std::string> chosen_ids, chosen;
    for (const auto i : order) {
        chosen_ids.push_back(ids[i]);
        chosen.push_back(prompts[i]);
    }
    return {chosen_ids, chosen};
}

qsafe::ResponseSet safety_response_set(qsafe::LoadedModel& fp, const SafetyDataOptions& opt) {
    const std::string source = opt.describe();
    if (!opt.set_file.empty() && std::filesystem::exists(opt.set_file)) {
        auto set = qsafe::ResponseSet::load(opt.set_file, fp.model.config().vocab_size);
        if (set.source != source)
            throw qsafe::config_error(opt.set_file + " holds safety data '" + set.source + "', these options ask for '" + source +
                                      "'; remove the file or change --safety-set");
        std::fprintf(stderr, "[safety data from %s: %zu answers, %zu scored tokens]\n", opt.set_file.c_str(), set.sequences.size(),
                     set.scored_positions());
        return set;
    }
    const auto [chosen_ids, chosen] = safety_prompts(opt);
    const auto start = std::chrono::steady_clock::now();
    qsafe::ResponseSetOptions ro;
    ro.max_new_tokens = opt.max_new_tokens;
    ro.max_batch = opt.batch;
    std::fprintf(stderr, "[safety data: answering %zu harmful prompts with the fp model...]\n", chosen.size());
    auto set = qsafe::build_response_set(fp, chosen_ids, chosen, ro, source);
    std::fprintf(stderr, "[safety data: %zu answers, %zu scored tokens in %s]\n", set.sequences.size(), set.scored_positions(),
                 format_duration(seconds_since(start)).c_str());
    if (!opt.set_file.empty()) set.save(opt.set_file);
    return set;
}

qsafe::ResponseSet utility_response_set(qsafe::LoadedModel& fp, std::size_t windows, std::size_t length, std::uint64_t seed) {
    // The whole file, trailing newline kept (the sampled windows depend on the token count).
    const std::string text = read_text_file(wikitext2_path("the utility response set"));
    const auto tokens = fp.tokenizer.encode(text, {.add_bos = false, .parse_special = false});
    qsafe::SampleOptions so;
    so.samples = windows;
    so.length = length;
    so.seed = seed;
    return qsafe::text_response_set(qsafe::text_samples(tokens, so),
                                    "wikitext2:" + std::to_string(windows) + "x" + std::to_string(length) + ":seed=" + std::to_string(seed));
}

qsafe::CalibrationStats response_set_stats(qsafe::LoadedModel& fp, const qsafe::ResponseSet& set) {
    std::vector<std::vector<std::int32_t>> samples;
    for (const auto& s : set.sequences) samples.push_back(s.tokens);
    const auto start = std::chrono::steady_clock::now();
    qsafe::CollectOptions co;
    co.output_stride = 1;  // safety data is short: every position
    auto stats = qsafe::collect_calibration_stats(fp.model, samples, co);
    stats.description = set.source;
    std::fprintf(stderr, "[statistics on %s: %zu sequences, %zu tokens in %s]\n", set.source.c_str(), samples.size(), set.total_tokens(),
                 format_duration(seconds_since(start)).c_str());
    return stats;
}

void ProtectCliOptions::add_to(CLI::App& cmd) {
    cmd.add_option("--protect", mode,
                   "keep chosen weights in fp16: none, magnitude (largest |w|), wanda (|w|·||x|| on utility data), "
                   "safety (safety-critical: top Wanda on safety data minus top utility Wanda), "
                   "snip (safety-critical: top SNIP |w·dL/dw| of refusals to the safety data's harmful prompts)")
        ->check(CLI::IsMember({"none", "magnitude", "wanda", "safety", "snip"}))
        ->capture_default_str();
    cmd.add_option("--protect-fraction", fraction, "share of each tensor's weights kept, per-tensor rules ('blk.*=0.5%,output=0')")
        ->capture_default_str();
    cmd.add_option("--utility-exclusion", utility_exclusion,
                   "safety protection: share of top utility-scored weights never counted as safety-critical (rules)")
        ->capture_default_str();
    cmd.add_option("--protect-global", global,
                   "keep this share of all covered weights by one threshold over their scores together (Q-resafe's form, e.g. 0.5%); "
                   "--protect-fraction then only says which tensors take part (magnitude, wanda, snip)");
    cmd.add_option("--snip-group", snip_group, "snip: examples per gradient before |w·g| is taken (1 = per example, as published)")
        ->capture_default_str();
}

qsafe::ProtectOptions ProtectCliOptions::options() const {
    qsafe::ProtectOptions o;
    o.mode = qsafe::parse_protect_mode(mode);
    o.fraction = qsafe::FractionRules::parse(fraction);
    o.utility_exclusion = qsafe::FractionRules::parse(utility_exclusion);
    if (!global.empty()) {
        o.global_fraction = qsafe::FractionRules::parse_fraction(global);
        if (o.global_fraction <= 0.0) throw qsafe::config_error("--protect-global " + global + ": give a share above 0%");
    }
    return o;
}

qsafe::SnipScores snip_scores_for(const qsafe::LoadedModel& m, const SafetyDataOptions& data, std::size_t examples_per_gradient) {
    const auto [ids, prompts] = safety_prompts(data);
    std::vector<qsafe::train::MaskedSequence> examples;
    examples.reserve(prompts.size());
    for (const auto& p : prompts) examples.push_back(qsafe::train::render_example(m.tokenizer, m.chat_template, p, qsafe::train::refusal_for(p)));
    const auto pad = m.tokenizer.pad_id().value_or(qsafe::train::end_of_turn_token(m.tokenizer, m.chat_template));
    const auto start = std::chrono::steady_clock::now();
    qsafe::SnipOptions so;
    so.examples_per_gradient = examples_per_gradient;
    so.progress = [&](std::size_t done, std::size_t total) {
        std::fprintf(stderr, "\r[SNIP scores: %zu/%zu refusals, %s]", done, total, format_duration(seconds_since(start)).c_str());
        if (done == total) std::fprintf(stderr, "\n");
    };
    auto scores = qsafe::snip_scores(m.model.weights(), examples, pad, so);
    std::fprintf(stderr, "[SNIP scores on %s: %zu refusals, %zu refusal tokens in %s]\n", data.describe().c_str(), scores.examples,
                 scores.tokens, format_duration(seconds_since(start)).c_str());
    return scores;
}

void AllocateCliOptions::add_to(CLI::App& cmd) {
    cmd.add_option("--target-bpw", target_bpw,
                   "choose a scheme per layer for this average bits per weight (over the allocated tensors; 0 = off)")
        ->check(CLI::NonNegativeNumber);
    cmd.add_option("--allocate", allocate, "sensitivity that drives the allocation: safety (fp answers to harmful prompts) or utility (WikiText-2)")
        ->check(CLI::IsMember({"safety", "utility"}))
        ->capture_default_str();
    cmd.add_option("--candidates", candidates, "schemes a layer can get")->capture_default_str();
    cmd.add_option("--allocate-tensors", tensors, "tensors the allocation covers (globs); the rules give the rest")->capture_default_str();
    cmd.add_option("--sensitivity-prompts", sensitivity_prompts, "safety answers used to measure sensitivity (the shortest conversations)")
        ->capture_default_str();
    cmd.add_option("--sensitivity-windows", utility_windows, "WikiText-2 windows used to measure utility sensitivity")->capture_default_str();
    cmd.add_option("--sensitivity-cache", cache, "resumable cache of the per-layer measurements (JSON lines)");
    cmd.add_option("--allocation-report", report, "write the allocation and the sensitivity table here (JSON)");
}

qsafe::BitAllocation allocate_schemes(qsafe::LoadedModel& fp, const qsafe::ResponseSet* safety_set, const AllocateCliOptions& opt,
                                      const qsafe::CalibrationStats* importance) {
    qsafe::ResponseSet set;
    if (opt.allocate == "safety") {
        if (!safety_set) throw qsafe::config_error("--allocate safety needs the safety data");
        // The shortest conversations: every measurement re-runs the model over all of them, and the
        // answers (what the KL is taken on) have the same length whatever the prompt's.
        std::vector<std::size_t> order(safety_set->sequences.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
            return safety_set->sequences[x].tokens.size() < safety_set->sequences[y].tokens.size();
        });
        order.resize(std::min(order.size(), opt.sensitivity_prompts));
        std::sort(order.begin(), order.end());
        set.source = safety_set->source + ":shortest=" + std::to_string(opt.sensitivity_prompts);
        for (const std::size_t i : order) set.sequences.push_back(safety_set->sequences[i]);
    } else {
        set = utility_response_set(fp, opt.utility_windows, opt.utility_length, 7);
    }
    auto start = std::chrono::steady_clock::now();
    const auto ref = qsafe::record_response_reference(fp.model, set, 128);
    qsafe::SensitivityOptions so;
    so.candidates = split_commas(opt.candidates);
    so.tensors = opt.tensors;
    so.importance = importance;
    so.cache = opt.cache;
    so.progress = [&](std::size_t done, std::size_t total, const std::string& tensor, const std::string& scheme, double kl) {
        const double el = seconds_since(start);
        std::fprintf(stderr, "\r[sensitivity on %s: %zu/%zu %s %s KL %.4f, %s, ETA %s]        ", set.source.c_str(), done, total,
                     tensor.c_str(), scheme.c_str(), kl, format_duration(el).c_str(),
                     format_duration(el / static_cast<double>(done) * static_cast<double>(total - done)).c_str());
    };
    const auto table = qsafe::measure_sensitivity(fp.model, set, ref, so);
    std::fprintf(stderr, "\n[sensitivity: %zu layers x %zu schemes on %zu scored tokens in %s]\n", table.layers.size(), so.candidates.size(),
                 ref.positions(), format_duration(seconds_since(start)).c_str());
    const auto allocation = qsafe::allocate_bits(table, opt.target_bpw);

    // Which layer kinds got which widths.
    std::map<std::string, std::map<std::string, int>> by_kind;
    for (const auto& [tensor, scheme] : allocation.scheme) {
        std::string kind = tensor;
        if (kind.starts_with("blk.")) kind = kind.substr(kind.find('.', 4) + 1);
        ++by_kind[kind][scheme];
    }
    std::fprintf(stderr, "[allocation (%s sensitivity): %.3f bits per weight over %zu tensors, predicted KL %.4f]\n", opt.allocate.c_str(),
                 allocation.bits_per_weight, allocation.scheme.size(), allocation.predicted_kl);
    for (const auto& [kind, counts] : by_kind) {
        std::string line;
        for (const auto& [scheme, n] : counts) line += " " + std::to_string(n) + "x" + scheme;
        std::fprintf(stderr, "  %-20s%s\n", kind.c_str(), line.c_str());
    }
    if (!opt.report.empty()) {
        nlohmann::ordered_json j;
        j["allocate"] = opt.allocate;
        j["target_bits_per_weight"] = opt.target_bpw;
        j["bits_per_weight"] = allocation.bits_per_weight;
        j["predicted_kl"] = allocation.predicted_kl;
        j["schemes"] = allocation.scheme;
        j["sensitivity"] = table.to_json();
        const std::string text = j.dump(2) + "\n";
        qsafe::io::atomic_write_text(opt.report, text);
    }
    return allocation;
}

}  // namespace qsafe_cli
