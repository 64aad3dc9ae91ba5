// qsafe eval: the full-precision model and its quantized variants side by side over safety datasets:
// batched greedy generation, judged responses journaled row by row (--resume continues a killed run),
// then refusal / ASR / over-refusal with Wilson intervals, flips with McNemar's test, and the report
// (JSON, Markdown, CSV, SVG plot) in the output folder.
#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <thread>
#include <tuple>
#include <cstdio>
#include <optional>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/eval/combined_judge.hpp"
#include "qsafe/eval/dataset_registry.hpp"
#include "qsafe/eval/evaluator.hpp"
#include "qsafe/eval/file_dataset.hpp"
#include "qsafe/eval/journal.hpp"
#include "qsafe/eval/metrics.hpp"
#include "qsafe/eval/model_judge.hpp"
#include "qsafe/eval/refusal_judge.hpp"
#include "qsafe/eval/report.hpp"
#include "qsafe/eval/safety_kl.hpp"
#include "qsafe/eval/sharding.hpp"
#include "qsafe/eval_run.hpp"
#include "qsafe/evaluation_report.hpp"
#include "qsafe/mpi_session.hpp"
#include "qsafe/model/kl_divergence.hpp"
#include "qsafe/safety/response_kl.hpp"

namespace qsafe_cli {

namespace {
EvalArgs eval_options;  // the parsed options (CLI11 writes into them before the callback runs)

/// "default, advbench, ..." from the registry, so the help text cannot fall behind it.
std::string dataset_names() {
    std::string names;
    for (const auto& s : qsafe::eval::dataset_schemas()) names += (names.empty() ? "" : ", ") + s.name;
    return names;
}
}  // namespace

void add_eval_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("eval", "Evaluate the fp model and quantized variants over safety datasets");
    EvalArgs& a = eval_options;
    a.decoding.max_new_tokens = 96;
    cmd->add_option("-m,--model", a.model, "the full-precision model: GGUF, HF folder or 'smollm2'")->capture_default_str();
    cmd->add_option("--variants", a.variants,
                    "comma-separated variants: fp, <scheme>:<rtn|imatrix|gptq|awq|quik|hqq>, or quantized .gguf files")
        ->capture_default_str();
    cmd->add_option("--variant", a.extra_variants, "one more variant (for specs with commas, e.g. 'rules=*=int3-g128-asym,output=fp32:gptq')");
    cmd->add_option("-d,--dataset", a.datasets,
                    "comma-separated datasets: " + dataset_names() + ", or a .csv / .jsonl / .json file of your own (see --prompt-column, "
                    "--harmful-column, --all-harmful, --all-benign)")
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
    a.dataset_files.add_to(*cmd);
    cmd->add_option("--shard", a.shard,
                    "run shard I of N (0-based, e.g. 0/4): about 1/N of the chunks of --batch rows of every variant, plus any reference "
                    "chunk no shard has answered yet; each shard writes its own journal in --out (then: qsafe merge)");
    cmd->add_flag("--merge-when-done", a.merge_when_done,
                  "with --shard: the shard that finds every shard finished merges them and writes the report (Slurm arrays)");
    cmd->add_flag("--mpi", a.mpi,
                  "one shard per MPI rank (mpirun -np N qsafe eval --mpi ...); rank 0 merges when every rank is done. Threads per "
                  "rank default to this host's cores divided by its ranks");
    cmd->callback([] {
        if (!eval_options.mpi) return run_evaluation(eval_options, nullptr);
        if (!eval_options.shard.empty()) throw qsafe::config_error("--mpi and --shard both say which shard to run: give one");
        MpiSession mpi;
        try {
            run_evaluation(eval_options, &mpi);
        } catch (const SuspectResults&) {
            throw;  // rank 0, after every rank finished: the report is written
        } catch (const std::exception& e) {
            // Without this the other ranks would wait at the barrier for this one forever.
            std::fprintf(stderr, "qsafe: error (rank %zu of %zu): %s\n", mpi.rank(), mpi.size(), e.what());
            mpi.abort(1);
        }
    });
}

void run_evaluation(const EvalArgs& a, const MpiSession* mpi) {
        const auto t_start = std::chrono::steady_clock::now();
        if (a.threads > 0) qsafe::set_num_threads(a.threads);
        if (mpi && a.threads <= 0)
            qsafe::set_num_threads(std::max(1, static_cast<int>(std::max(1u, std::thread::hardware_concurrency()) / mpi->local_size())));

        const qsafe::eval::ShardSpec shard = mpi            ? qsafe::eval::ShardSpec{mpi->rank(), mpi->size()}
                                             : a.shard.empty() ? qsafe::eval::ShardSpec{}
                                                               : qsafe::eval::ShardSpec::parse(a.shard);

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
        const std::vector<qsafe::eval::PromptDataset> datasets =
            qsafe::eval::load_dataset_entries(split_commas(a.datasets), a.dataset_files.resolved(), dopt);
        const auto model_path = resolve_model_path(a.model);  // may fetch the default model: after the checks above

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

        // The journal: journal.jsonl for an unsharded run; a shard's own (journal-shard-I-of-N.jsonl) otherwise.
        std::filesystem::create_directories(a.out);
        qsafe::eval::RunConfig config;
        config.model = model_path.filename().string();
        for (const auto& d : datasets) config.datasets.push_back(std::string(d.name()) + ":" + std::to_string(d.size()));
        config.judge = a.judge + ":chars=" + std::to_string(a.judge_chars);
        config.decoding = a.decoding.to_json();
        config.decoding["limit"] = a.limit;
        config.decoding["seed"] = a.seed;
        const qsafe::eval::ShardFiles files{a.out};
        auto open_journal = [&](const std::filesystem::path& path, qsafe::eval::JournalMode mode) {
            auto journal = qsafe::eval::Journal::open(path, config, mode);
            std::fprintf(stderr, "[journal %s: %zu finished rows]\n", journal.path().c_str(), journal.records().size());
            if (journal.discarded_tail_bytes() > 0)
                std::fprintf(stderr, "eval: %s: dropped the unfinished last line (%llu bytes) an interrupted run left; "
                             "every complete row is kept, and the dropped one is answered again\n", journal.path().c_str(),
                             static_cast<unsigned long long>(journal.discarded_tail_bytes()));
            return journal;
        };
        const auto mode = a.resume ? qsafe::eval::JournalMode::resume : qsafe::eval::JournalMode::start_new;

        using Eval = qsafe::eval::Evaluator<qsafe::eval::LlamaChatModel, qsafe::eval::PromptDataset, qsafe::eval::AnyJudge>;

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
        auto ensure_calibration = [&] {
            if (stats) return;
            // Shards share one set of statistics through the output folder: the first computes it under
            // the lock, the others wait and load it.
            std::optional<qsafe::eval::FolderLock> lock;
            if (shard.sharded())
                lock.emplace(files.calibration_lock(), [] { std::fprintf(stderr, "[waiting for another shard's calibration]\n"); });
            if (a.calib.load_stats.empty() && std::filesystem::exists(stats_path)) {
                stats = qsafe::CalibrationStats::load(stats_path);  // from an interrupted run, or another shard
                std::fprintf(stderr, "[calibration statistics from %s (an earlier run or another shard made them)]\n", stats_path.c_str());
            } else {
                CalibrationOptions co = a.calib;
                if (co.save_stats.empty()) co.save_stats = stats_path.string();
                stats = calibrate(fp(), co);
            }
        };

        // Answers `spec` on every dataset (the chunks `take` selects) into `journal`; when `describe`, also
        // measures and records how the variant was made (bits, quality, safety KL). `reference_records` are
        // the reference's answers (for the safety KL).
        using Take = std::function<bool(std::size_t dataset, std::size_t first_row)>;
        auto evaluate = [&](const qsafe::VariantSpec& spec, qsafe::eval::Journal& journal, Eval& evaluator, const Take& take,
                            bool describe, const std::vector<qsafe::eval::ResponseRecord>& reference_records) {
            auto take_in = [&](std::size_t d) -> Eval::ChunkFilter {
                if (!take) return {};
                return [&take, d](std::size_t first) { return take(d, first); };
            };
            bool done = true;
            for (std::size_t d = 0; d < datasets.size(); ++d) done &= evaluator.finished(spec.name, datasets[d], take_in(d));
            bool have_info = false;
            for (const auto& vi : journal.variants()) have_info |= vi.name == spec.name;
            if (done && (have_info || !describe)) {
                std::fprintf(stderr, "[%s: already finished]\n", spec.name.c_str());
                return;
            }
            if (spec.file.empty() && !spec.is_reference() && qsafe::ptq_method_needs_calibration(spec.method)) ensure_calibration();
            std::optional<qsafe::LoadedModel> loaded;
            qsafe::LoadedModel* m = nullptr;
            if (spec.is_reference()) {
                m = &fp();
            } else {
                loaded.emplace(load_variant(model_path, spec, stats ? &*stats : nullptr, a.chat_template, a.gptq));
                m = &*loaded;
            }
            qsafe::eval::LlamaChatModel chat(*m);
            for (std::size_t di = 0; di < datasets.size(); ++di) {
                const auto& d = datasets[di];
                const qsafe::GenerationStats before = chat.generation_stats();
                const auto s = evaluator.run(spec.name, chat, d, true, take_in(di));
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
            if (!describe || have_info) return;
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
                    safety_set = qsafe::eval::reference_answer_set(reference_records, fp(), "fp", a.decoding.system_prompt);
                    safety_ref = qsafe::record_response_reference(fp().model, safety_set, 128);
                }
                if (!safety_set.sequences.empty()) {
                    const auto k = qsafe::compare_on_responses(m->model, safety_set, *safety_ref);
                    info.safety_kl = k.kl.mean_kl;
                    info.safety_kl_p99 = k.kl.p99_kl;
                    info.safety_logprob = k.mean_logprob_variant;
                    std::fprintf(stderr, "[%s: safety KL %.4f over %zu answer tokens]\n", spec.name.c_str(), k.kl.mean_kl, k.kl.positions);
                }
            }
            journal.append(info);
        };

        std::vector<std::string> order;
        for (const auto& spec : specs) order.push_back(spec.name);

        if (!shard.sharded()) {
            auto journal = open_journal(std::filesystem::path(a.out) / "journal.jsonl", mode);
            Eval evaluator(journal, *judge, a.decoding, "fp");
            // The reference's answers are this journal's: read at each use, as they are being added.
            for (const auto& spec : specs) evaluate(spec, journal, evaluator, {}, true, journal.records());
            write_evaluation_report({journal.records(), journal.variants(), order, a.out, a.max_empty_pct, t_start});
            return;
        }

        // A shard. First the reference's answers, which every shard needs (agreement, safety KL): its own
        // share of their chunks, then any chunk still missing — one whose owner is slow, dead or not started
        // yet — under that chunk's lock, so no chunk is answered twice and no shard waits for one that
        // never comes. Then the chunks of the other variants this shard owns.
        auto journal = open_journal(files.journal(shard), mode);
        Eval evaluator(journal, *judge, a.decoding, "fp");
        std::vector<std::size_t> rows;
        for (const auto& d : datasets) rows.push_back(d.size());
        const auto reference_chunks = qsafe::eval::work_chunks(1, rows, a.decoding.max_batch);
        const auto reference_owner = qsafe::eval::assign_shards(reference_chunks, shard.count);
        // The reference's answers in every shard's journal, this one's included (others' are read as they
        // stand: complete lines only).
        auto reference_answers = [&] {
            std::vector<qsafe::eval::ResponseRecord> out;
            for (std::size_t i = 0; i < shard.count; ++i) {
                const auto path = files.journal({i, shard.count});
                const std::vector<qsafe::eval::ResponseRecord>* records = &journal.records();
                qsafe::eval::JournalContents other;
                if (i != shard.index) {
                    if (!std::filesystem::exists(path)) continue;
                    other = qsafe::eval::read_journal(path);
                    records = &other.records;
                }
                for (const auto& r : *records)
                    if (r.variant == "fp") out.push_back(r);
            }
            return out;
        };
        auto chunk_answered = [&](const qsafe::eval::WorkChunk& c, const std::vector<qsafe::eval::ResponseRecord>& answers) {
            std::set<std::string, std::less<>> ids;
            for (const auto& r : answers)
                if (r.dataset == datasets[c.dataset].name()) ids.insert(r.prompt_id);
            for (std::size_t i = c.first_row; i < c.first_row + c.rows; ++i)
                if (!ids.contains(datasets[c.dataset][i].id)) return false;
            return true;
        };
        std::optional<qsafe::eval::LlamaChatModel> fp_chat;
        auto answer_reference_chunk = [&](const qsafe::eval::WorkChunk& c, bool waited) {
            const qsafe::eval::FolderLock lock(files.reference_chunk_lock(c.dataset, c.first_row), [&] {
                std::fprintf(stderr, "[waiting for another shard answering reference chunk %s rows %zu-%zu]\n",
                             datasets[c.dataset].name().c_str(), c.first_row, c.first_row + c.rows - 1);
            });
            if (chunk_answered(c, reference_answers())) return;
            if (!fp_chat) fp_chat.emplace(fp());
            if (waited) std::fprintf(stderr, "[answering reference chunk %s rows %zu-%zu of another shard]\n",
                                     datasets[c.dataset].name().c_str(), c.first_row, c.first_row + c.rows - 1);
            evaluator.run("fp", *fp_chat, datasets[c.dataset], true, [&](std::size_t first) { return first == c.first_row; });
        };
        for (std::size_t c = 0; c < reference_chunks.size(); ++c)
            if (reference_owner[c] == shard.index) answer_reference_chunk(reference_chunks[c], false);
        {
            const auto answers = reference_answers();
            for (std::size_t c = 0; c < reference_chunks.size(); ++c)
                if (!chunk_answered(reference_chunks[c], answers)) answer_reference_chunk(reference_chunks[c], true);
        }
        const std::vector<qsafe::eval::ResponseRecord> reference_records = reference_answers();
        evaluator.take_reference_answers_from(&reference_records);
        // Shard 0 describes the reference (its quality and safety KL need every reference answer).
        if (shard.index == 0) evaluate(specs.front(), journal, evaluator, [](std::size_t, std::size_t) { return false; }, true, reference_records);

        const auto chunks = qsafe::eval::work_chunks(specs.size() - 1, rows, a.decoding.max_batch);
        const auto owners = qsafe::eval::assign_shards(chunks, shard.count);
        std::map<std::tuple<std::size_t, std::size_t, std::size_t>, std::size_t> owner_of;
        for (std::size_t c = 0; c < chunks.size(); ++c) owner_of[{chunks[c].variant, chunks[c].dataset, chunks[c].first_row}] = owners[c];
        std::size_t owned = 0;
        for (const std::size_t o : owners) owned += o == shard.index;
        std::fprintf(stderr, "[shard %s: %zu of the %zu chunks of %zu rows of the variants]\n", shard.to_string().c_str(), owned,
                     chunks.size(), a.decoding.max_batch);
        for (std::size_t v = 1; v < specs.size(); ++v) {
            const Take take = [&, v](std::size_t d, std::size_t first) { return owner_of.at({v - 1, d, first}) == shard.index; };
            bool any = false;
            for (std::size_t c = 0; c < chunks.size(); ++c) any |= chunks[c].variant == v - 1 && owners[c] == shard.index;
            if (!any) continue;
            // The shard that owns a variant's first chunk describes it (once, for the merged report).
            const auto first = std::find_if(chunks.begin(), chunks.end(), [&](const auto& c) { return c.variant == v - 1; });
            const bool describe = owners[static_cast<std::size_t>(first - chunks.begin())] == shard.index;
            evaluate(specs[v], journal, evaluator, take, describe, reference_records);
        }
        qsafe::eval::ShardDone{shard, "fp", order, journal.records().size()}.write(files);
        std::fprintf(stderr, "[shard %s finished: %zu answers in %s]\n", shard.to_string().c_str(), journal.records().size(),
                     journal.path().c_str());
        if (mpi) {
            mpi->barrier();
            if (mpi->rank() == 0) merge_and_report(a.out, a.max_empty_pct, t_start);
        } else if (a.merge_when_done) {
            if (qsafe::eval::all_shards_done(a.out)) merge_and_report(a.out, a.max_empty_pct, t_start);
        } else {
            std::fprintf(stderr, "[when every shard has finished: qsafe merge %s]\n", a.out.c_str());
        }
}
}  // namespace qsafe_cli
