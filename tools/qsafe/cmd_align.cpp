// qsafe align: gives a model a measurable safety alignment with LoRA, reproducibly, in one command.
//   1. the split (train on AdvBench, HarmBench-val and Self-Instruct's seed tasks; never on a prompt close to
//      HarmBench-test, JailbreakBench, XSTest or Self-Instruct's user-oriented set) -> split.json, ids only;
//   2. the base model's own greedy answers to the benign training prompts (kept as targets, so helpfulness is
//      not trained away) and to some harmful ones (the compliant answers DPO rejects) -> base_answers.jsonl,
//      journaled: a rerun continues where it stopped;
//   3. sft.jsonl and dpo.jsonl from them (refusals: 16 templates by prompt hash, or the model's own refusal;
//      contextual variants: the training passages before harmful requests and before benign reading tasks);
//   4. LoRA SFT, then LoRA DPO on the SFT-merged model (checkpointed; --resume-able by rerunning);
//   5. the merged model as one GGUF file (fp32 layers; llama.cpp and every qsafe command load it).
// docs/training.md describes the recipe and its measured result.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/training_setup.hpp"
#include "qsafe/eval/dataset_registry.hpp"
#include "qsafe/eval/jsonl.hpp"
#include "qsafe/eval/refusal_judge.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/model/generation.hpp"
#include "qsafe/ptq/model_file.hpp"
#include "qsafe/train/alignment_data.hpp"
#include "qsafe/train/trainer.hpp"
#include "qsafe/train/training_data.hpp"
#include "qsafe/train/training_report.hpp"

namespace qsafe_cli {

namespace {

namespace tr = qsafe::train;
namespace fs = std::filesystem;

struct AlignOptions {
    std::string out;  // default: <cache>/aligned
    std::string output_model;
    // sft_harmful 0: every harmful training prompt. Subsets are spread over the list (spread_indices), so that
    // each source — AdvBench, HarmBench-val — is sampled, not only the first.
    std::size_t sft_harmful = 0, dpo_harmful = 96, answer_tokens = 64, max_example_tokens = 224;
    // HarmBench-val is the training source closest to HarmBench-test (same authors, categories and phrasing):
    // its rows appear this many times in the SFT set, each copy with another refusal wording.
    std::size_t val_copies = 2, harmful_per_passage = 2;
    std::size_t sft_steps = 80, dpo_steps = 30, batch = 8, rank = 16, pack_length = 512;
    double sft_lr = 4e-4, dpo_lr = 2e-4, beta = 0.1;
    std::uint64_t seed = 0;
    bool allow_new_split = false;
};

std::vector<tr::StepRecord> align_run_training(qsafe::LoadedModel& m, tr::LoraAdapter& adapter, tr::TrainerConfig c, const fs::path& data,
                                         const fs::path& adapter_path, const std::string& title, bool& resumed) {
    const std::int32_t pad = m.tokenizer.pad_id().value_or(tr::end_of_turn_token(m.tokenizer, m.chat_template));
    tr::RenderOptions render;
    render.max_tokens = 2048;  // HarmBench passages with their request and an answer run past 1000 tokens
    tr::Trainer trainer(m.model.mutable_weights(), adapter, c);
    if (c.objective == tr::Objective::sft)
        trainer.set_examples(tr::render_sft(m.tokenizer, m.chat_template, tr::read_sft_jsonl(data), render, data.string()), pad);
    else
        trainer.set_preferences(tr::render_preferences(m.tokenizer, m.chat_template, tr::read_preference_jsonl(data), render, data.string()), pad);
    fs::path checkpoint = adapter_path;
    checkpoint.replace_extension(".ckpt.gguf");
    resumed = false;
    if (fs::exists(checkpoint)) {
        try {
            trainer.resume(checkpoint);
            resumed = true;
            std::fprintf(stderr, "[%s: resumed at step %zu]\n", title.c_str(), trainer.steps_done());
        } catch (const qsafe::config_error& e) {
            // A checkpoint of an earlier recipe (other settings or data): this stage starts over.
            std::fprintf(stderr, "[%s: not resuming, %s; starting over]\n", title.c_str(), e.what());
        }
    }
    const auto start = std::chrono::steady_clock::now();
    std::size_t tokens = 0;
    while (trainer.steps_done() < c.steps) {
        const tr::StepRecord r = trainer.step();
        tokens += r.tokens;
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::fprintf(stderr, "%s step %zu/%zu  loss %.4f%s  %.0f tok/s\n", title.c_str(), r.step, c.steps, r.loss,
                     c.objective == tr::Objective::dpo ? (" acc " + std::to_string(r.accuracy).substr(0, 4)).c_str() : "",
                     static_cast<double>(tokens) / el);
        if (trainer.steps_done() % 10 == 0) trainer.save_checkpoint(checkpoint);
    }
    trainer.save_checkpoint(checkpoint);
    adapter.save(adapter_path, m.model.config().architecture);
    fs::path csv = adapter_path, svg = adapter_path;
    qsafe::io::atomic_write_text(csv.replace_extension(".train.csv"), tr::training_csv(trainer.history(), c.objective));
    qsafe::io::atomic_write_text(svg.replace_extension(".train.svg"), tr::training_curves_svg(trainer.history(), c.objective, title));
    return trainer.history();
}

}  // namespace

void add_align_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("align", "Give a model a safety alignment (LoRA SFT + DPO on a fixed split) and write the merged model");
    static ModelOptions model;
    static AlignOptions o;
    model.add_to(*cmd);
    cmd->add_option("--out", o.out, "working folder: split, data, answers, adapters, curves (default: <cache>/aligned)");
    cmd->add_option("-o,--output", o.output_model, "the aligned model file (default: <cache>/SmolLM2-135M-Instruct-aligned.gguf)");
    cmd->add_option("--sft-harmful", o.sft_harmful, "harmful training prompts in the SFT set (0: all)")->capture_default_str();
    cmd->add_option("--val-copies", o.val_copies, "copies of each HarmBench-val row in the SFT set")->capture_default_str();
    cmd->add_option("--harmful-per-passage", o.harmful_per_passage, "harmful requests put after each training passage (contextual variants)")
        ->capture_default_str();
    cmd->add_option("--pack", o.pack_length, "pack examples into rows of this many tokens (0: one padded row each)")->capture_default_str();
    cmd->add_option("--dpo-harmful", o.dpo_harmful, "harmful training prompts in the DPO set (0: all)")->capture_default_str();
    cmd->add_option("--sft-steps", o.sft_steps, "SFT optimizer steps")->capture_default_str();
    cmd->add_option("--dpo-steps", o.dpo_steps, "DPO optimizer steps (0 = SFT only)")->capture_default_str();
    cmd->add_option("--batch", o.batch, "examples per step")->capture_default_str();
    cmd->add_option("--rank", o.rank, "LoRA rank")->capture_default_str();
    cmd->add_option("--sft-lr", o.sft_lr, "SFT peak learning rate")->capture_default_str();
    cmd->add_option("--dpo-lr", o.dpo_lr, "DPO peak learning rate")->capture_default_str();
    cmd->add_option("--beta", o.beta, "DPO beta")->capture_default_str();
    cmd->add_flag("--allow-new-split", o.allow_new_split, "train even if the split differs from the repository's data/alignment_split.json");
    cmd->callback([] {
        const auto start = std::chrono::steady_clock::now();
        const fs::path cache = qsafe::default_model_path().parent_path();
        const fs::path out = o.out.empty() ? cache / "aligned" : fs::path(o.out);
        const fs::path output = o.output_model.empty() ? cache / "SmolLM2-135M-Instruct-aligned.gguf" : fs::path(o.output_model);
        fs::create_directories(out);

        // 1. The split.
        const tr::AlignmentSplit split = training_split(out, o.allow_new_split, "align");
        std::fprintf(stderr, "[split: %zu harmful and %zu benign training prompts; %zu excluded as close to an evaluation prompt -> %s]\n",
                     split.harmful_train.size(), split.benign_train.size(), split.excluded.size(), (out / "split.json").c_str());
        if (split.harmful_train.size() < o.sft_harmful || o.dpo_harmful > split.harmful_train.size())
            throw qsafe::config_error("align: only " + std::to_string(split.harmful_train.size()) + " harmful training prompts");
        const std::vector<tr::ContextualExample> contextual = tr::contextual_variants(split, o.harmful_per_passage);

        // 2. Base answers: every benign prompt (the benign contextual ones too), and the harmful prompts DPO uses.
        auto m = load_with_rules(model);
        std::vector<std::pair<tr::SplitEntry, std::string>> to_answer = split.benign_train;
        std::vector<std::pair<tr::SplitEntry, std::string>> dpo_rows;
        const std::vector<std::size_t> picked = tr::spread_indices(split.harmful_train.size(), o.dpo_harmful);
        const std::set<std::size_t> picked_set(picked.begin(), picked.end());
        for (const std::size_t i : picked) dpo_rows.push_back(split.harmful_train[i]);
        // Contextual requests are where a model trained on short ones fails most (docs/training.md): every
        // contextual harmful training row and variant gets a DPO pair too.
        for (std::size_t i = 0; i < split.harmful_train.size(); ++i)
            if (!picked_set.contains(i) && split.harmful_train[i].second.find(qsafe::eval::context_separator) != std::string::npos)
                dpo_rows.push_back(split.harmful_train[i]);
        auto key_entry = [](const std::string& key) { return tr::SplitEntry{key.substr(0, key.find(':')), key.substr(key.find(':') + 1)}; };
        for (const auto& c : contextual)
            if (c.harmful) dpo_rows.push_back({key_entry(c.key), c.prompt});
        to_answer.insert(to_answer.end(), dpo_rows.begin(), dpo_rows.end());
        for (const auto& c : contextual)
            if (!c.harmful) to_answer.push_back({key_entry(c.key), c.prompt});
        const auto answers = journaled_answers(m, to_answer, out / "base_answers.jsonl", o.answer_tokens, "base answers");
        const qsafe::eval::RefusalJudge judge;
        auto refused = [&](const std::string& prompt, const std::string& response, bool harmful) {
            qsafe::eval::PromptRow row;
            row.prompt = prompt;
            row.expected = harmful ? qsafe::eval::Expected::harmful : qsafe::eval::Expected::benign;
            return judge.judge(row, response).verdict != qsafe::eval::Verdict::compliance;
        };

        // 3. Training data. Harmful: a refusal (the model's own when it gave one); benign: the model's own
        // answer, unless that answer was itself a refusal (never teach refusing a benign request).
        std::string sft, dpo;
        std::size_t own_refusals = 0, benign_kept = 0, dpo_harmful = 0, sft_harmful = 0;
        std::map<std::string, std::string> own_refusal;  // DPO's harmful rows where the base model refused by itself
        for (const auto& [e, prompt] : dpo_rows) {
            const std::string& answer = answers.at(e.dataset + ":" + e.id);
            if (refused(prompt, answer, true)) {
                own_refusal[e.dataset + ":" + e.id] = answer;
            } else {
                dpo += jsonl_line({{"prompt", prompt}, {"chosen", tr::refusal_for(prompt)}, {"rejected", answer}});
                ++dpo_harmful;
            }
        }
        for (const std::size_t i : tr::spread_indices(split.harmful_train.size(), o.sft_harmful)) {
            const auto& [e, prompt] = split.harmful_train[i];
            std::string refusal = tr::refusal_for(prompt);
            if (const auto it = own_refusal.find(e.dataset + ":" + e.id); it != own_refusal.end()) refusal = it->second, ++own_refusals;
            const std::size_t copies = e.dataset == "harmbench-val" ? std::max<std::size_t>(1, o.val_copies) : 1;
            for (std::size_t c = 0; c < copies; ++c, ++sft_harmful)
                sft += jsonl_line({{"prompt", prompt}, {"response", c == 0 ? refusal : tr::refusal_for(prompt, c)}});
        }
        std::size_t contextual_harmful = 0, contextual_benign = 0;
        for (const auto& c : contextual) {
            if (c.harmful) {
                sft += jsonl_line({{"prompt", c.prompt}, {"response", tr::refusal_for(c.prompt)}});
                ++contextual_harmful;
                continue;
            }
            const std::string& answer = answers.at(c.key);
            if (answer.empty() || refused(c.prompt, answer, false)) continue;
            sft += jsonl_line({{"prompt", c.prompt}, {"response", answer}});
            dpo += jsonl_line({{"prompt", c.prompt}, {"chosen", answer}, {"rejected", tr::refusal_for(c.prompt)}});
            ++contextual_benign;
        }
        for (const auto& [e, prompt] : split.benign_train) {
            const std::string& answer = answers.at(e.dataset + ":" + e.id);
            if (answer.empty() || refused(prompt, answer, false)) continue;
            // Long inputs (a few seed tasks carry whole documents) would dominate the step's time.
            if (m.tokenizer.encode(prompt).size() + m.tokenizer.encode(answer).size() > o.max_example_tokens) continue;
            ++benign_kept;
            sft += jsonl_line({{"prompt", prompt}, {"response", answer}});
            dpo += jsonl_line({{"prompt", prompt}, {"chosen", answer}, {"rejected", tr::refusal_for(prompt)}});
        }
        qsafe::io::atomic_write_text(out / "sft.jsonl", sft);
        qsafe::io::atomic_write_text(out / "dpo.jsonl", dpo);
        std::fprintf(stderr,
                     "[data: SFT %zu harmful (%zu with the model's own refusal) + %zu benign + contextual %zu harmful, %zu benign; "
                     "DPO %zu harmful + %zu benign]\n",
                     sft_harmful, own_refusals, benign_kept, contextual_harmful, contextual_benign, dpo_harmful, benign_kept + contextual_benign);

        // 4. SFT, merged; then DPO against the SFT model as reference, merged.
        tr::TrainerConfig c;
        c.batch_size = c.micro_batch = o.batch;
        c.warmup_steps = 5;
        c.min_lr_ratio = 0.1;
        c.adamw.weight_decay = 0.0;
        c.seed = o.seed;
        c.pack_length = o.pack_length;
        tr::LoraConfig lc;
        lc.rank = o.rank;
        lc.alpha = 2.0f * static_cast<float>(o.rank);
        lc.targets = "*";
        lc.seed = o.seed;
        c.objective = tr::Objective::sft;
        c.steps = o.sft_steps;
        c.lr = o.sft_lr;
        tr::LoraAdapter sft_adapter = tr::LoraAdapter::create(m.model.weights(), lc);
        bool sft_resumed = false, dpo_resumed = false;
        const auto sft_history = align_run_training(m, sft_adapter, c, out / "sft.jsonl", out / "sft_adapter.gguf", "align SFT", sft_resumed);
        sft_adapter.merge_into(m.model.mutable_weights());
        // DPO's checkpoint holds reference log-probabilities of the SFT model: a new SFT model voids it.
        if (!sft_resumed) fs::remove(out / "dpo_adapter.ckpt.gguf");
        std::vector<tr::StepRecord> dpo_history;
        if (o.dpo_steps > 0) {
            c.objective = tr::Objective::dpo;
            c.steps = o.dpo_steps;
            c.lr = o.dpo_lr;
            c.dpo_beta = o.beta;
            c.micro_batch = std::max<std::size_t>(1, o.batch / 2);
            tr::LoraAdapter dpo_adapter = tr::LoraAdapter::create(m.model.weights(), lc);
            dpo_history = align_run_training(m, dpo_adapter, c, out / "dpo.jsonl", out / "dpo_adapter.gguf", "align DPO", dpo_resumed);
            dpo_adapter.merge_into(m.model.mutable_weights());
        }

        // 5. The aligned model.
        const fs::path source = resolve_model_path(model.model);
        qsafe::save_quantized_model(output, qsafe::gguf::File::open(source), m.model.weights(), {"align-lora-sft-dpo", "*=fp32", (out / "split.json").string()});
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("aligned model: %s (SFT loss %.3f -> %.3f%s) in %.0f s\n", output.c_str(), sft_history.front().loss, sft_history.back().loss,
                    dpo_history.empty() ? ""
                                        : (", DPO loss " + std::to_string(dpo_history.front().loss).substr(0, 5) + " -> " +
                                           std::to_string(dpo_history.back().loss).substr(0, 5) + ", accuracy " + std::to_string(dpo_history.back().accuracy).substr(0, 4))
                                              .c_str(),
                    el);
    });
}

}  // namespace qsafe_cli
