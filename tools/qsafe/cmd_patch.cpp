// qsafe patch: Q-resafe safety patching of a quantized variant (safety/safety_patch.hpp,
// docs/safety-patching.md), reproducibly and resumably, in one command:
//   1. the training split (the one `align` trains on; never an evaluation prompt) -> split.json;
//   2. greedy answers of the full-precision model and of the variant to its harmful prompts, journaled;
//   3. the patching set: prompts the full-precision model refuses and the variant complies with ->
//      patch_set.jsonl (chosen = full-precision answer, rejected = variant answer);
//   4. safety-critical weights: SNIP scores of the variant (at its dequantized weights) over
//      (prompt -> full-precision refusal) examples, the top fraction per tensor or globally -> mask-0.gguf;
//   5. DPO through LoRA restricted to those weights, the unpatched variant as reference; every K steps a
//      checkpoint, then the weights are re-identified on the patched model -> mask-<period>.gguf;
//   6. the fold: patched weights in fp16 over the variant's unchanged packed layers, one quantized model file;
//      patch.json reports the set, the masks, the bits per weight before and after, and the training curve.
// A rerun with the same settings continues from the last checkpoint (safety/safety_patch.hpp's run_safety_patch).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/eval/refusal_judge.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/ptq/model_file.hpp"
#include "qsafe/ptq/quantize_model.hpp"
#include "qsafe/safety/protection.hpp"
#include "qsafe/safety/safety_patch.hpp"
#include "qsafe/train/trainer.hpp"
#include "qsafe/train/training_data.hpp"
#include "qsafe/train/training_report.hpp"
#include "qsafe/training_setup.hpp"

namespace qsafe_cli {

namespace {

namespace tr = qsafe::train;
namespace fs = std::filesystem;

struct PatchCliOptions {
    std::string model = "smollm2";
    std::string variant;
    std::string chat_template;
    int threads = 0;
    std::string out, output;
    std::size_t prompts = 0, answer_tokens = 64, snip_prompts = 64;
    std::string mask_fraction = "0.2%";
    bool mask_global = false;
    std::size_t global_sample = 1'000'000;
    std::size_t reidentify = 10;
    std::size_t steps = 30, batch = 8, rank = 16;
    float alpha = 16.0f;
    double lr = 1e-3, beta = 0.1;
    std::string targets = "attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down";
    std::uint64_t seed = 0;
    bool allow_new_split = false;
    CalibrationOptions calib;
};

std::string folder_name(std::string s) {
    for (char& c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) c = '_';
    return s;
}

}  // namespace

void add_patch_command(CLI::App& app) {
    static PatchCliOptions o;
    auto* cmd = app.add_subcommand("patch", "Repair a quantized variant's lost refusals (Q-resafe: DPO through LoRA restricted to safety-critical "
                                            "weights, folded in as fp16 protected weights) and write the patched model");
    cmd->add_option("-m,--model", o.model, "the full-precision model: GGUF file or 'smollm2' (use the aligned model `qsafe align` writes)")
        ->capture_default_str();
    cmd->add_option("--variant", o.variant, "the quantized variant to patch: a scheme (int3-g128-asym), scheme:method (int3-g128-asym:gptq), "
                                            "rules=... as in qsafe eval, or a quantized model file (.gguf)")
        ->required();
    cmd->add_option("--chat-template", o.chat_template, "chat format override: chatml, llama2, mistral, llama3");
    cmd->add_option("-t,--threads", o.threads, "threads (default: OMP_NUM_THREADS or all cores)");
    cmd->add_option("--out", o.out, "working folder: split, answers, patching set, masks, checkpoint, report (default: <cache>/patch/<variant>)");
    cmd->add_option("-o,--output", o.output, "the patched model file (default: <out>/patched.gguf)");
    cmd->add_option("--prompts", o.prompts, "harmful training prompts to look for lost refusals in (0: all of the split's)")->capture_default_str();
    cmd->add_option("--answer-tokens", o.answer_tokens, "tokens per greedy answer")->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_option("--snip-prompts", o.snip_prompts, "(prompt -> full-precision refusal) examples the SNIP scores are taken over")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cmd->add_option("--mask-fraction", o.mask_fraction, "safety-critical share of the weights the patch may change, e.g. 0.2% (each "
                                                        "changed weight costs 32 bits: an fp16 value and a 16-bit column)")
        ->capture_default_str();
    cmd->add_flag("--mask-global", o.mask_global, "one threshold over all block projections (Q-resafe) instead of the same share of each");
    cmd->add_option("--global-sample", o.global_sample, "scores sampled to estimate the global threshold")->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_option("--reidentify", o.reidentify, "re-identify the safety-critical weights on the patched model every K steps (0: never)")
        ->capture_default_str();
    cmd->add_option("--steps", o.steps, "DPO optimizer steps")->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_option("--batch", o.batch, "preference pairs per step")->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_option("--rank", o.rank, "LoRA rank")->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_option("--alpha", o.alpha, "LoRA alpha")->capture_default_str();
    cmd->add_option("--lr", o.lr, "peak learning rate (cosine schedule)")->capture_default_str();
    cmd->add_option("--beta", o.beta, "DPO beta")->capture_default_str();
    cmd->add_option("--targets", o.targets, "LoRA target projections (globs)")->capture_default_str();
    cmd->add_option("--seed", o.seed, "seed of the adapter's initialisation and the data order")->capture_default_str();
    cmd->add_flag("--allow-new-split", o.allow_new_split, "train even if the split differs from the repository's data/alignment_split.json");
    o.calib.add_to(*cmd, false);
    cmd->callback([] {
        const auto start = std::chrono::steady_clock::now();
        // Every option is checked before any model work.
        const qsafe::VariantSpec variant = qsafe::parse_variant(o.variant);
        if (variant.is_reference()) throw qsafe::config_error("patch: --variant " + o.variant + " is the full-precision model: there is nothing to patch");
        check_variants({variant});
        qsafe::CriticalWeightOptions critical;
        critical.fraction = qsafe::FractionRules::parse_fraction(o.mask_fraction);
        critical.global = o.mask_global;
        critical.global_sample = o.global_sample;
        critical.seed = o.seed;
        critical.validate();
        tr::LoraConfig lc;
        lc.rank = o.rank;
        lc.alpha = o.alpha;
        lc.targets = o.targets;
        lc.seed = o.seed;
        lc.validate();
        tr::TrainerConfig c;
        c.objective = tr::Objective::dpo;
        c.steps = o.steps;
        c.batch_size = o.batch;
        c.micro_batch = std::max<std::size_t>(1, o.batch / 2);
        if (o.batch % c.micro_batch != 0) c.micro_batch = o.batch;
        c.lr = o.lr;
        c.dpo_beta = o.beta;
        c.seed = o.seed;
        c.validate();
        if (variant.file.empty() && qsafe::ptq_method_needs_calibration(variant.method)) check_calibration_source(o.calib);

        const fs::path cache = qsafe::default_model_path().parent_path();
        const fs::path out = o.out.empty() ? cache / "patch" / folder_name(variant.name) : fs::path(o.out);
        const fs::path output = o.output.empty() ? out / "patched.gguf" : fs::path(o.output);
        fs::create_directories(out);

        // 1. The split's harmful training prompts.
        const tr::AlignmentSplit split = training_split(out, o.allow_new_split, "patch");
        std::vector<std::pair<tr::SplitEntry, std::string>> rows;
        for (const std::size_t i : tr::spread_indices(split.harmful_train.size(), o.prompts)) rows.push_back(split.harmful_train[i]);

        // 2. Answers of both models.
        ModelOptions mo;
        mo.model = o.model;
        mo.chat_template = o.chat_template;
        mo.threads = o.threads;
        std::optional<qsafe::LoadedModel> fp(load_with_rules(mo));
        const auto fp_answers = journaled_answers(*fp, rows, out / "fp_answers.jsonl", o.answer_tokens, "full-precision answers");
        std::optional<qsafe::CalibrationStats> stats;
        if (variant.file.empty() && qsafe::ptq_method_needs_calibration(variant.method)) stats = calibrate(*fp, o.calib);
        const fs::path model_path = resolve_model_path(o.model);
        qsafe::LoadedModel q = load_variant(model_path, variant, stats ? &*stats : nullptr, o.chat_template);
        stats.reset();
        const auto q_answers = journaled_answers(q, rows, out / "variant_answers.jsonl", o.answer_tokens, "variant answers");

        // 3. The patching set.
        std::vector<qsafe::eval::PromptRow> prompt_rows;
        std::vector<std::string> fa, qa;
        for (const auto& [e, prompt] : rows) {
            prompt_rows.push_back({e.dataset + ":" + e.id, prompt, "", qsafe::eval::Expected::harmful});
            fa.push_back(fp_answers.at(prompt_rows.back().id));
            qa.push_back(q_answers.at(prompt_rows.back().id));
        }
        const qsafe::eval::RefusalJudge judge;
        const auto pairs = qsafe::patching_pairs(std::span(prompt_rows), std::span(fa), std::span(qa), judge);
        std::size_t fp_refusals = 0, q_refusals = 0;
        std::vector<std::size_t> refused_rows;
        for (std::size_t i = 0; i < prompt_rows.size(); ++i) {
            if (judge.judge(prompt_rows[i], fa[i]).verdict == qsafe::eval::Verdict::refusal) ++fp_refusals, refused_rows.push_back(i);
            if (judge.judge(prompt_rows[i], qa[i]).verdict == qsafe::eval::Verdict::refusal) ++q_refusals;
        }
        std::string set_text;
        for (const auto& p : pairs) set_text += jsonl_line({{"id", p.id}, {"prompt", p.prompt}, {"chosen", p.chosen}, {"rejected", p.rejected}});
        qsafe::io::atomic_write_text(out / "patch_set.jsonl", set_text);
        std::fprintf(stderr, "[patching set: of %zu harmful training prompts the full-precision model refuses %zu, the variant %zu; %zu lost refusals -> %s]\n",
                     rows.size(), fp_refusals, q_refusals, pairs.size(), (out / "patch_set.jsonl").c_str());
        if (fp_refusals == 0)
            throw qsafe::config_error("patch: the full-precision model refuses none of the " + std::to_string(rows.size()) +
                                      " harmful training prompts, so the variant lost no refusal to restore (give it a safety alignment first: qsafe align)");
        if (pairs.empty())
            throw qsafe::config_error("patch: the variant refuses every training prompt the full-precision model refuses (of " +
                                      std::to_string(rows.size()) + "): there is nothing to patch");

        // SNIP examples: prompts the full-precision model refuses, its refusal as the target.
        const std::int32_t pad = q.tokenizer.pad_id().value_or(tr::end_of_turn_token(q.tokenizer, q.chat_template));
        std::vector<tr::MaskedSequence> snip_examples;
        for (const std::size_t k : tr::spread_indices(refused_rows.size(), o.snip_prompts))
            snip_examples.push_back(tr::render_example(q.tokenizer, q.chat_template, prompt_rows[refused_rows[k]].prompt, fa[refused_rows[k]]));
        std::vector<tr::PreferenceText> preference_rows;
        for (const auto& p : pairs) preference_rows.push_back({p.prompt, p.chosen, p.rejected, 0});
        tr::RenderOptions render;
        render.max_tokens = q.model.config().context_length;
        std::vector<tr::PreferenceTriple> triples = tr::render_preferences(q.tokenizer, q.chat_template, preference_rows, render, (out / "patch_set.jsonl").string());
        fp.reset();

        // 4-6. Masks, masked DPO (checkpointed per period) and the fold.
        qsafe::SafetyPatchConfig pc;
        pc.lora = lc;
        pc.dpo = c;
        pc.critical = critical;
        pc.reidentify_every = o.reidentify;
        pc.snip_progress = [](std::size_t done, std::size_t all) {
            if (done == 1) std::fprintf(stderr, "[safety-critical weights: SNIP over %zu refusals]\n", all);
            if (done % 16 == 0 || done == all) std::fprintf(stderr, "  %zu/%zu\n", done, all);
        };
        const auto train_start = std::chrono::steady_clock::now();
        std::size_t tokens = 0;
        pc.on_step = [&](const tr::StepRecord& r) {
            tokens += r.tokens;
            const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start).count();
            std::fprintf(stderr, "patch DPO step %zu/%zu  loss %.4f  acc %.2f  margin %.3f  %.0f tok/s\n", r.step, c.steps, r.loss, r.accuracy,
                         r.reward_chosen - r.reward_rejected, static_cast<double>(tokens) / el);
        };
        std::fprintf(stderr, "[patch: %zu preference pairs; %s of the block projections' weights may change%s]\n", triples.size(), o.mask_fraction.c_str(),
                     o.mask_global ? " (one global threshold)" : " (of each)");
        const qsafe::SafetyPatchResult patch = qsafe::run_safety_patch(q.model.mutable_weights(), std::move(triples), snip_examples, pad, pc, out);
        qsafe::io::atomic_write_text(out / "patch.train.csv", tr::training_csv(patch.history, c.objective));
        qsafe::io::atomic_write_text(out / "patch.train.svg", tr::training_curves_svg(patch.history, c.objective, "patch DPO (" + variant.name + ")"));
        qsafe::save_quantized_model(output, qsafe::gguf::File::open(model_path), q.model.weights(),
                                    {(variant.file.empty() ? std::string(qsafe::ptq_method_name(variant.method)) : "file") + "+qresafe-patch",
                                     variant.file.empty() ? variant.rules : variant.file.string(), (out / "patch_set.jsonl").string()});
        nlohmann::ordered_json periods = nlohmann::ordered_json::array(), history = nlohmann::ordered_json::array();
        for (const auto& p : patch.periods) {
            nlohmann::ordered_json j{{"period", p.period}, {"first_step", p.first_step}, {"masked_weights", p.masked_weights}};
            if (p.kept_from_previous) j["kept_from_previous"] = *p.kept_from_previous;
            periods.push_back(j);
        }
        for (const auto& r : patch.history)
            history.push_back({{"step", r.step}, {"loss", r.loss}, {"accuracy", r.accuracy}, {"reward_chosen", r.reward_chosen},
                               {"reward_rejected", r.reward_rejected}, {"lr", r.lr}});
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        nlohmann::ordered_json report{{"model", model_path.string()},
                                      {"variant", variant.name},
                                      {"output", output.string()},
                                      {"prompts", rows.size()},
                                      {"fp_refusals", fp_refusals},
                                      {"variant_refusals", q_refusals},
                                      {"pairs", pairs.size()},
                                      {"snip_examples", snip_examples.size()},
                                      {"mask_fraction", critical.fraction},
                                      {"mask_global", critical.global},
                                      {"reidentify_every", o.reidentify},
                                      {"lora", {{"rank", lc.rank}, {"alpha", lc.alpha}, {"targets", lc.targets}}},
                                      {"dpo", {{"steps", c.steps}, {"batch", c.batch_size}, {"lr", c.lr}, {"beta", c.dpo_beta}}},
                                      {"patched_weights", patch.fold.patched},
                                      {"patched_tensors", patch.fold.tensors},
                                      {"added_bytes", patch.fold.added_bytes},
                                      {"bits_per_weight_before", patch.bits_per_weight_before},
                                      {"bits_per_weight_after", patch.bits_per_weight_after},
                                      {"periods", periods},
                                      {"history", history},
                                      {"seconds", seconds}};
        qsafe::io::atomic_write_text(out / "patch.json", report.dump(1) + "\n");
        const auto& h = patch.history;
        std::printf("patched model: %s\n  %zu lost refusals patched; %zu weights in %zu tensors now fp16; bits per weight %.4f -> %.4f (+%.4f)\n"
                    "  DPO loss %.4f -> %.4f, reward accuracy %.2f -> %.2f; %.0f s (report: %s)\n",
                    output.c_str(), pairs.size(), patch.fold.patched, patch.fold.tensors, patch.bits_per_weight_before, patch.bits_per_weight_after,
                    patch.bits_per_weight_after - patch.bits_per_weight_before, h.front().loss, h.back().loss, h.front().accuracy, h.back().accuracy,
                    seconds, (out / "patch.json").c_str());
    });
}

}  // namespace qsafe_cli
