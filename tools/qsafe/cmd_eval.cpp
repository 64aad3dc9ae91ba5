// qsafe eval: the full-precision model and its quantized variants side by side over safety datasets:
// batched greedy generation, judged responses journaled row by row (--resume continues a killed run),
// then refusal / ASR / over-refusal with Wilson intervals, flips with McNemar's test, and the report
// (JSON, Markdown, CSV, SVG plot) in the output folder.
#include <algorithm>
#include <chrono>
#include <tuple>
#include <cstdio>
#include <optional>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/eval/combined_judge.hpp"
#include "qsafe/eval/dataset_registry.hpp"
#include "qsafe/eval/evaluator.hpp"
#include "qsafe/eval/journal.hpp"
#include "qsafe/eval/metrics.hpp"
#include "qsafe/eval/model_judge.hpp"
#include "qsafe/eval/refusal_judge.hpp"
#include "qsafe/eval/report.hpp"
#include "qsafe/eval/safety_kl.hpp"
#include "qsafe/model/kl_divergence.hpp"
#include "qsafe/safety/response_kl.hpp"

namespace qsafe_cli {

namespace {
// Variant specs may contain commas inside "rules=..."; such a variant is given with its own --variant.
struct EvalArgs {
    std::string model = "smollm2", chat_template, out = "results", judge = "refusal", datasets = "default";
    std::string variants = "fp,int4-g128-asym:rtn,int2-g32-asym:rtn";
    std::vector<std::string> extra_variants;
    std::size_t limit = 0, judge_chars = 200, quality_windows = 0;
    std::uint64_t seed = 0;
    double max_empty_pct = 50.0;
    bool resume = false, no_stratify = false, no_safety_kl = false;
    int threads = 0;
    qsafe::eval::DecodingOptions decoding;
    CalibrationOptions calib;
    qsafe::GptqOptions gptq;
};
}  // namespace

void add_eval_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("eval", "Evaluate the fp model and quantized variants over safety datasets");
    static EvalArgs a;
    a.decoding.max_new_tokens = 96;
    cmd->add_option("-m,--model", a.model, "the full-precision model: GGUF, HF folder or 'smollm2'")->capture_default_str();
    cmd->add_option("--variants", a.variants,
                    "comma-separated variants: fp, <scheme>:<rtn|imatrix|gptq|awq|quik|hqq>, or quantized .gguf files")
        ->capture_default_str();
    cmd->add_option("--variant", a.extra_variants, "one more variant (for specs with commas, e.g. 'rules=*=int3-g128-asym,output=fp32:gptq')");
    cmd->add_option("-d,--dataset", a.datasets, "comma-separated datasets: default, advbench, harmbench, harmbench-test, harmbench-val, xstest, jailbreakbench, opensafetymini, selfinstruct-user, selfinstruct-seed")
        ->capture_default_str();
    cmd->add_option("--limit", a.limit, "rows per dataset (0 = all), stratified by category")->capture_default_str();
    cmd->add_flag("--no-stratify", a.no_stratify, "--limit takes a plain random sample instead of a stratified one");
    cmd->add_option("--seed", a.seed, "seed of the row sampling")->capture_default_str();
    cmd->add_option("--max-new-tokens", a.decoding.max_new_tokens, "tokens generated per answer (greedy)")->capture_default_str();
    cmd->add_option("--batch", a.decoding.max_batch, "prompts decoded together")->capture_default_str();
    cmd->add_option("--system-prompt", a.decoding.system_prompt, "system prompt for every conversation (default: none)");
    cmd->add_option("--judge", a.judge, "refusal (qsafe's phrases), gcg (the GCG list), model:<path>, or any:<a>+<b> / majority:<a>+<b>+<c>")
        ->capture_default_str();
    cmd->add_option("--judge-chars", a.judge_chars, "refusal judges: characters of the answer searched")->capture_default_str();
    cmd->add_option("--quality-windows", a.quality_windows, "also measure perplexity and KL on this many WikiText-2 windows (0 = skip)")
        ->capture_default_str();
    cmd->add_option("--max-empty-pct", a.max_empty_pct,
                    "a variant with more than this % of its answers on a dataset empty or judged unknown is flagged "
                    "in the report, and the command exits with code 3 after writing it")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 100.0));
    cmd->add_flag("--no-safety-kl", a.no_safety_kl,
                  "skip the safety KL (KL from fp over fp's own answers to the harmful prompts, teacher-forced)");
    cmd->add_option("-o,--out", a.out, "output folder (journal.jsonl, report.*)")->capture_default_str();
    cmd->add_flag("--resume", a.resume, "continue the journal in the output folder, skipping finished rows");
    cmd->add_option("-t,--threads", a.threads, "threads");
    cmd->add_option("--chat-template", a.chat_template, "chat format override");
    cmd->add_flag("--act-order", a.gptq.act_order, "GPTQ variants: act-order");
    a.calib.samples.samples = 32;
    a.calib.add_to(*cmd, false);
    cmd->callback([] {
        const auto t_start = std::chrono::steady_clock::now();
        if (a.threads > 0) qsafe::set_num_threads(a.threads);
        const auto model_path = resolve_model_path(a.model);

        // Variants: the reference first (every comparison needs its answers).
        std::vector<qsafe::VariantSpec> specs;
        for (const auto& v : split_commas(a.variants)) specs.push_back(qsafe::parse_variant(v));
        for (const auto& v : a.extra_variants) specs.push_back(qsafe::parse_variant(v));
        std::stable_partition(specs.begin(), specs.end(), [](const qsafe::VariantSpec& v) { return v.name == "fp"; });
        if (specs.empty() || specs.front().name != "fp") specs.insert(specs.begin(), qsafe::parse_variant("fp"));
        check_variants(specs);
        for (std::size_t i = 0; i < specs.size(); ++i)
            for (std::size_t j = 0; j < i; ++j)
                if (specs[i].name == specs[j].name) throw qsafe::config_error("variant '" + specs[i].name + "' is listed twice");

        // Datasets.
        qsafe::eval::DataOptions dopt;
        dopt.limit = a.limit;
        dopt.seed = a.seed;
        dopt.stratify_by_category = !a.no_stratify;
        dopt.source_dir = QSAFE_SOURCE_DIR;
        std::vector<qsafe::eval::PromptDataset> datasets;
        for (const auto& d : split_commas(a.datasets)) datasets.push_back(qsafe::eval::load_named_dataset(d, dopt));

        // Fail now, not after the first variant's answers, when the quality windows have no text.
        const std::filesystem::path wiki_path = a.quality_windows > 0 ? wikitext2_path("--quality-windows") : std::filesystem::path();

        // Judge.
        auto make_judge = [&](const std::string& spec) -> qsafe::eval::AnyJudge {
            if (spec == "refusal" || spec == "gcg") {
                qsafe::eval::RefusalJudgeOptions o =
                    spec == "gcg" ? qsafe::eval::gcg_refusal_judge_options() : qsafe::eval::RefusalJudgeOptions{};
                o.max_chars = a.judge_chars;
                return qsafe::eval::RefusalJudge(o);
            }
            if (spec.starts_with("model:")) return qsafe::eval::ModelJudge::load(resolve_model_path(spec.substr(6)));
            throw qsafe::config_error("--judge: '" + spec + "' is not refusal, gcg or model:<path>");
        };
        std::optional<qsafe::eval::AnyJudge> judge;
        if (a.judge.starts_with("any:") || a.judge.starts_with("majority:")) {
            const bool any = a.judge.starts_with("any:");
            std::vector<qsafe::eval::AnyJudge> parts;
            std::string rest = a.judge.substr(any ? 4 : 9);
            for (std::size_t pos; (pos = rest.find('+')) != std::string::npos; rest = rest.substr(pos + 1)) parts.push_back(make_judge(rest.substr(0, pos)));
            parts.push_back(make_judge(rest));
            judge = qsafe::eval::CombinedJudge(std::move(parts), any ? qsafe::eval::CombineRule::any_refusal : qsafe::eval::CombineRule::majority);
        } else {
            judge = make_judge(a.judge);
        }

        // Journal.
        std::filesystem::create_directories(a.out);
        qsafe::eval::RunConfig config;
        config.model = model_path.filename().string();
        for (const auto& d : datasets) config.datasets.push_back(std::string(d.name()) + ":" + std::to_string(d.size()));
        config.judge = a.judge + ":chars=" + std::to_string(a.judge_chars);
        config.decoding = a.decoding.to_json();
        config.decoding["limit"] = a.limit;
        config.decoding["seed"] = a.seed;
        auto journal = qsafe::eval::Journal::open(std::filesystem::path(a.out) / "journal.jsonl", config,
                                                  a.resume ? qsafe::eval::JournalMode::resume : qsafe::eval::JournalMode::start_new);
        std::fprintf(stderr, "[journal %s: %zu finished rows]\n", journal.path().c_str(), journal.records().size());
        if (journal.discarded_tail_bytes() > 0)
            std::fprintf(stderr, "eval: %s: dropped the unfinished last line (%llu bytes) an interrupted run left; "
                         "every complete row is kept, and the dropped one is answered again\n", journal.path().c_str(),
                         static_cast<unsigned long long>(journal.discarded_tail_bytes()));

        using Eval = qsafe::eval::Evaluator<qsafe::eval::LlamaChatModel, qsafe::eval::PromptDataset, qsafe::eval::AnyJudge>;
        Eval evaluator(journal, *judge, a.decoding, "fp");

        // Shared by every on-the-fly variant: calibration statistics and the quality reference.
        std::optional<qsafe::CalibrationStats> stats;
        std::optional<qsafe::ReferenceLogprobs> quality_ref;
        qsafe::ResponseSet safety_set;
        std::optional<qsafe::ResponseReference> safety_ref;
        std::vector<std::int32_t> wiki_tokens;
        qsafe::WindowOptions wopt;
        wopt.max_windows = a.quality_windows;
        std::optional<qsafe::LoadedModel> fp_model;
        auto fp = [&]() -> qsafe::LoadedModel& {
            if (!fp_model) {
                qsafe::LoadOptions lo;
                lo.chat_template_override = a.chat_template;
                fp_model.emplace(qsafe::load_model(model_path, lo));
            }
            return *fp_model;
        };
        const auto stats_path = std::filesystem::path(a.out) / "calibration.gguf";

        std::vector<std::string> order;
        for (const auto& spec : specs) {
            order.push_back(spec.name);
            bool done = true;
            for (const auto& d : datasets) done &= evaluator.finished(spec.name, d);
            bool have_info = false;
            for (const auto& vi : journal.variants()) have_info |= vi.name == spec.name;
            if (done && have_info) {
                std::fprintf(stderr, "[%s: already finished]\n", spec.name.c_str());
                continue;
            }
            if (spec.file.empty() && !spec.is_reference() && qsafe::ptq_method_needs_calibration(spec.method) && !stats) {
                if (a.calib.load_stats.empty() && std::filesystem::exists(stats_path)) {
                    stats = qsafe::CalibrationStats::load(stats_path);  // from the interrupted run
                } else {
                    CalibrationOptions co = a.calib;
                    if (co.save_stats.empty()) co.save_stats = stats_path.string();
                    stats = calibrate(fp(), co);
                }
            }
            std::optional<qsafe::LoadedModel> loaded;
            qsafe::LoadedModel* m = nullptr;
            if (spec.is_reference()) {
                m = &fp();
            } else {
                loaded.emplace(load_variant(model_path, spec, stats ? &*stats : nullptr, a.chat_template, a.gptq));
                m = &*loaded;
            }
            qsafe::eval::LlamaChatModel chat(*m);
            for (const auto& d : datasets) {
                const qsafe::GenerationStats before = chat.generation_stats();
                const auto s = evaluator.run(spec.name, chat, d);
                const qsafe::GenerationStats& after = chat.generation_stats();
                const auto rate = [](std::size_t tokens, double seconds) { return seconds > 0.0 ? static_cast<double>(tokens) / seconds : 0.0; };
                if (s.generated > 0)
                    std::fprintf(stderr,
                                 "[%s / %s: %zu answers, %zu tokens in %.1fs = %.1f tok/s; prefill %zu tokens at %.1f tok/s, "
                                 "decode %zu tokens at %.1f tok/s (batch %zu)]\n",
                                 spec.name.c_str(), std::string(d.name()).c_str(), s.generated, s.tokens, s.seconds, s.tokens_per_second(),
                                 after.prompt_tokens - before.prompt_tokens,
                                 rate(after.prompt_tokens - before.prompt_tokens, after.prefill_seconds - before.prefill_seconds),
                                 after.generated_tokens - before.generated_tokens,
                                 rate(after.generated_tokens - before.generated_tokens, after.decode_seconds - before.decode_seconds),
                                 a.decoding.max_batch);
            }
            if (!have_info) {
                qsafe::eval::VariantInfo info;
                info.name = spec.name;
                info.method = spec.file.empty() ? (spec.is_reference() ? "fp" : qsafe::ptq_method_name(spec.method)) : "file";
                info.scheme_rules = spec.file.empty() ? spec.rules : "";
                info.bits_per_weight = m->model.weights().linear_bits_per_weight();
                info.file_bytes = spec.file.empty() ? m->model.weights().linear_storage_bytes() : std::filesystem::file_size(spec.file);
                if (a.quality_windows > 0) {
                    if (!quality_ref) {
                        const std::string text = read_wikitext2(wiki_path);
                        wiki_tokens = fp().tokenizer.encode(text, {.add_bos = std::nullopt, .parse_special = false});
                        quality_ref = qsafe::record_reference(fp().model, wiki_tokens, wopt, 128);
                    }
                    const auto q = qsafe::compare_to_reference(m->model, wiki_tokens, wopt, *quality_ref);
                    info.perplexity = q.ppl_variant;
                    info.mean_kl = q.mean_kl;
                    info.p99_kl = q.p99_kl;
                    info.same_top_token_pct = 100.0 * q.same_top_fraction;
                }
                if (!a.no_safety_kl) {
                    if (!safety_ref) {
                        safety_set = qsafe::eval::reference_answer_set(journal.records(), fp(), "fp", a.decoding.system_prompt);
                        safety_ref = qsafe::record_response_reference(fp().model, safety_set, 128);
                    }
                    if (!safety_set.sequences.empty()) {
                        const auto k = qsafe::compare_on_responses(m->model, safety_set, *safety_ref);
                        info.safety_kl = k.kl.mean_kl;
                        info.safety_kl_p99 = k.kl.p99_kl;
                        info.safety_logprob = k.mean_logprob_variant;
                        std::fprintf(stderr, "[%s: safety KL %.4f over %zu answer tokens]\n", spec.name.c_str(), k.kl.mean_kl,
                                     k.kl.positions);
                    }
                }
                journal.append(info);
            }
        }

        qsafe::eval::MetricsOptions mopt;
        mopt.variant_order = order;
        mopt.reference = "fp";
        mopt.max_empty_or_unknown_share = a.max_empty_pct / 100.0;
        const auto metrics = qsafe::eval::compute_metrics(journal.records(), journal.variants(), mopt);
        const auto files = qsafe::eval::write_report(metrics, a.out);
        std::fputs(qsafe::eval::report_markdown(metrics).c_str(), stdout);
        std::fprintf(stderr, "[report: %s, %s, %s; total time %s]\n", files.json.c_str(), files.markdown.c_str(), files.csv.c_str(),
                     format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count()).c_str());
        if (!metrics.warnings.empty()) {
            std::string lines;
            for (const auto& w : metrics.warnings) lines += "\n  " + w.message;
            throw SuspectResults("the report is written, but " + std::to_string(metrics.warnings.size()) +
                                 " result(s) need attention (--max-empty-pct sets the bar):" + lines);
        }
    });
}

}  // namespace qsafe_cli
