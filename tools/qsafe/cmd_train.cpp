// qsafe train sft|dpo: LoRA training of a model (fp32 or quantized base) on JSONL data, with checkpoints
// every N steps, --resume, a CSV and SVG of the curves beside the adapter, and optionally the merged model.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/eval/progress.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/ptq/model_file.hpp"
#include "qsafe/ptq/quantize_model.hpp"
#include "qsafe/safety/response_kl.hpp"
#include "qsafe/safety/response_set.hpp"
#include "qsafe/train/alignment_data.hpp"
#include "qsafe/train/trainer.hpp"
#include "qsafe/train/training_data.hpp"
#include "qsafe/train/training_report.hpp"

namespace qsafe_cli {

namespace {

struct TrainOptions {
    std::string objective;
    std::string data, output, merge_into, merge_requantize, save_base, qat, lora = "*";
    std::size_t rank = 16, max_length = 0, checkpoint_every = 25;
    float alpha = 0.0f;  // 0: 2 × rank
    bool resume = false, no_system_prompt = false;
    qsafe::train::TrainerConfig config;
};

std::filesystem::path train_file_beside(const std::filesystem::path& adapter, const std::string& suffix) {
    std::filesystem::path p = adapter;
    p.replace_extension();
    p += suffix;
    return p;
}

}  // namespace

void add_train_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("train", "LoRA training: supervised fine-tuning (sft) or DPO (dpo) on JSONL data");
    static ModelOptions model;
    static TrainOptions o;
    model.add_to(*cmd);
    auto& c = o.config;
    cmd->add_option("objective", o.objective, "sft: rows {\"prompt\", \"response\"}; dpo: rows {\"prompt\", \"chosen\", \"rejected\"}")
        ->required()
        ->check(CLI::IsMember({"sft", "dpo"}));
    cmd->add_option("--data", o.data, "training data (JSON Lines)")->required();
    cmd->add_option("-o,--output", o.output, "adapter file to write (GGUF LoRA adapter, llama.cpp's layout); with --qat, the trained quantized model")
        ->required();
    cmd->add_option("--qat", o.qat, "quantization-aware training (STE) instead of LoRA: the layers these rules quantize (e.g. "
                                    "'blk.*=int3-g128-asym') train as fp32 masters computing with their fake-quantized values; the packed "
                                    "model is written to --output");
    cmd->add_option("--lora", o.lora, "tensors to adapt, as --rules globs: e.g. 'attn_*,ffn_*', 'blk.1?.attn_v', '*'")->capture_default_str();
    cmd->add_option("--rank", o.rank, "LoRA rank")->capture_default_str();
    cmd->add_option("--alpha", o.alpha, "LoRA alpha (default 2 x rank)");
    cmd->add_option("--dropout", c.lora_dropout, "LoRA dropout on the adapter's input")->capture_default_str();
    cmd->add_option("--lr", c.lr, "peak learning rate")->capture_default_str();
    cmd->add_option("--steps", c.steps, "optimizer steps")->capture_default_str();
    cmd->add_option("--batch", c.batch_size, "examples per optimizer step (DPO: triples)")->capture_default_str();
    cmd->add_option("--micro-batch", c.micro_batch, "examples per forward/backward pass (gradients are accumulated)")->capture_default_str();
    cmd->add_option("--warmup", c.warmup_steps, "linear warm-up steps")->capture_default_str();
    cmd->add_option("--min-lr-ratio", c.min_lr_ratio, "the cosine schedule ends at lr x this")->capture_default_str();
    cmd->add_option("--weight-decay", c.adamw.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
    cmd->add_option("--clip", c.max_grad_norm, "clip gradients to this global norm (0 = off)")->capture_default_str();
    cmd->add_option("--beta", c.dpo_beta, "DPO beta")->capture_default_str();
    cmd->add_option("--seed", c.seed, "seed of the data order, dropout and LoRA init")->capture_default_str();
    cmd->add_option("--max-length", o.max_length, "longest sequence allowed (default: the model's context)");
    cmd->add_option("--pack", c.pack_length, "pack each micro-batch's sequences into rows of this many tokens (0 = pad each sequence)")
        ->capture_default_str();
    cmd->add_option("--checkpoint-every", o.checkpoint_every, "write the training state every N steps (0 = only at the end)")->capture_default_str();
    cmd->add_flag("--resume", o.resume, "continue from the checkpoint beside --output if there is one");
    cmd->add_flag("--no-system-prompt", o.no_system_prompt, "render prompts without the chat template's default system turn");
    cmd->add_option("--merge-into", o.merge_into, "also write the model with the adapter merged in (fp32 layers) to this GGUF file");
    cmd->add_option("--save-base", o.save_base, "also write the quantized base the adapter was trained over (--rules) as a quantized model "
                                                "file: base + adapter, as llama.cpp's --lora runs them");
    cmd->add_option("--merge-requantize", o.merge_requantize,
                    "also merge the adapter and quantize the merged layers again under --rules (RTN), write that model to this file, and "
                    "report what the re-quantization costs: KL from base + adapter on the training responses, before and after");
    cmd->callback([] {
        namespace tr = qsafe::train;
        const auto start = std::chrono::steady_clock::now();
        auto& c = o.config;
        c.objective = o.objective == "sft" ? tr::Objective::sft : tr::Objective::dpo;
        c.validate();
        if (!std::filesystem::exists(o.data)) throw qsafe::io_error(o.data + ": no such training data file");
        if (!o.qat.empty() && !(o.merge_into.empty() && o.merge_requantize.empty() && o.save_base.empty()))
            throw qsafe::config_error("--qat trains the model itself: --merge-into, --merge-requantize and --save-base are for LoRA adapters");
        if (!o.qat.empty() && std::filesystem::is_directory(resolve_model_path(model.model)))
            throw qsafe::config_error("--qat writes a quantized model file and needs a GGUF base model (got a folder)");
        const auto rule_list = qsafe::SchemeRules::parse(model.rules).rules();
        if (!o.merge_requantize.empty() && std::none_of(rule_list.begin(), rule_list.end(), [](const auto& r) { return r.scheme != "fp32"; }))
            throw qsafe::config_error("--merge-requantize needs a quantized base: give its schemes with --rules (QLoRA)");
        if ((!o.merge_requantize.empty() || !o.save_base.empty() || !o.merge_into.empty()) && std::filesystem::is_directory(resolve_model_path(model.model)))
            throw qsafe::config_error("--merge-into, --merge-requantize and --save-base need a GGUF base model (got a folder)");
        // The rows are checked before the model is loaded: a bad file fails at once.
        std::vector<tr::SftPair> pairs;
        std::vector<tr::PreferenceText> preference_rows;
        if (c.objective == tr::Objective::sft) pairs = tr::read_sft_jsonl(o.data);
        else preference_rows = tr::read_preference_jsonl(o.data);
        auto m = load_with_rules(model);
        const qsafe::LlamaConfig& mc = m.model.config();
        tr::RenderOptions render;
        render.max_tokens = o.max_length ? std::min(o.max_length, mc.context_length) : mc.context_length;
        render.with_system_prompt = !o.no_system_prompt;
        tr::LoraConfig lc;
        lc.rank = o.rank;
        lc.alpha = o.alpha > 0 ? o.alpha : 2.0f * static_cast<float>(o.rank);
        lc.dropout = c.lora_dropout;
        lc.targets = o.lora;
        lc.seed = c.seed;
        std::optional<tr::FakeQuantizedLlama> qat;
        tr::LoraAdapter adapter;
        std::optional<tr::Trainer> trainer_slot;
        if (!o.qat.empty()) {
            qat.emplace(m.model.mutable_weights(), qsafe::SchemeRules::parse(o.qat));
            trainer_slot.emplace(m.model.mutable_weights(), *qat, c);
        } else {
            adapter = tr::LoraAdapter::create(m.model.weights(), lc);
            trainer_slot.emplace(m.model.mutable_weights(), adapter, c);
        }
        tr::Trainer& trainer = *trainer_slot;
        const std::int32_t pad = m.tokenizer.pad_id().value_or(tr::end_of_turn_token(m.tokenizer, m.chat_template));
        if (c.objective == tr::Objective::sft)
            trainer.set_examples(tr::render_sft(m.tokenizer, m.chat_template, pairs, render, o.data), pad);
        else
            trainer.set_preferences(tr::render_preferences(m.tokenizer, m.chat_template, preference_rows, render, o.data), pad);
        const std::size_t rows = pairs.size() + preference_rows.size();
        const std::filesystem::path output = o.output, checkpoint = train_file_beside(output, ".ckpt.gguf"), csv = train_file_beside(output, ".train.csv"),
                                    svg = train_file_beside(output, ".train.svg");
        if (o.resume && std::filesystem::exists(checkpoint)) {
            trainer.resume(checkpoint);
            std::fprintf(stderr, "[resumed from %s at step %zu of %zu]\n", checkpoint.c_str(), trainer.steps_done(), c.steps);
        }
        if (qat)
            std::fprintf(stderr, "[%s %s: %zu rows from %s; STE quantization-aware training of %zu layers (%s); %zu steps of %zu, micro-batch %zu]\n",
                         m.name.c_str(), o.objective.c_str(), rows, o.data.c_str(), qat->covered_layers(), o.qat.c_str(), c.steps, c.batch_size,
                         c.micro_batch);
        else
            std::fprintf(stderr, "[%s %s: %zu rows from %s; LoRA rank %zu alpha %g on %zu tensors (%zu parameters); %zu steps of %zu, micro-batch %zu]\n",
                         m.name.c_str(), o.objective.c_str(), rows, o.data.c_str(), o.rank, static_cast<double>(lc.alpha), adapter.pairs().size(),
                         adapter.parameter_count(), c.steps, c.batch_size, c.micro_batch);
        const std::string title = m.name + " — " + o.objective + " LoRA r" + std::to_string(o.rank) + " (" + o.data + ")";
        auto write_curves = [&] {
            qsafe::io::atomic_write_text(csv, tr::training_csv(trainer.history(), c.objective));
            qsafe::io::atomic_write_text(svg, tr::training_curves_svg(trainer.history(), c.objective, title));
        };
        std::size_t last_checkpoint = trainer.steps_done(), tokens = 0;
        const std::size_t first_step = trainer.steps_done();
        const auto loop_start = std::chrono::steady_clock::now();
        while (trainer.steps_done() < c.steps) {
            tr::StepRecord r;
            try {
                r = trainer.step();
            } catch (const qsafe::numeric_error& e) {
                write_curves();
                throw qsafe::numeric_error(std::string(e.what()) + "; the last good checkpoint is " +
                                           (last_checkpoint > 0 ? checkpoint.string() + " (step " + std::to_string(last_checkpoint) + ")" : "none (no step finished)"));
            }
            tokens += r.tokens;
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_start).count();
            const double per_step = elapsed / static_cast<double>(trainer.steps_done() - first_step);
            const std::string eta = qsafe::eval::ProgressBar::duration(per_step * static_cast<double>(c.steps - trainer.steps_done()));
            if (c.objective == tr::Objective::sft)
                std::fprintf(stderr, "step %zu/%zu  loss %.4f  lr %.3g  |g| %.3f  %.0f tok/s  ETA %s\n", r.step, c.steps, r.loss, r.lr, r.grad_norm,
                             static_cast<double>(tokens) / elapsed, eta.c_str());
            else
                std::fprintf(stderr, "step %zu/%zu  loss %.4f  margin %+.4f  acc %.2f  lr %.3g  |g| %.3f  %.0f tok/s  ETA %s\n", r.step, c.steps, r.loss,
                             r.reward_chosen - r.reward_rejected, r.accuracy, r.lr, r.grad_norm, static_cast<double>(tokens) / elapsed, eta.c_str());
            if (o.checkpoint_every > 0 && trainer.steps_done() % o.checkpoint_every == 0 && trainer.steps_done() < c.steps) {
                trainer.save_checkpoint(checkpoint);
                write_curves();
                last_checkpoint = trainer.steps_done();
            }
        }
        trainer.save_checkpoint(checkpoint);  // the finished state: --resume on a finished run writes the same output
        write_curves();
        const std::vector<tr::StepRecord> final_history = trainer.history();
        if (qat) {
            trainer_slot.reset();  // the packed export replaces the layers the trainer computes with
            qat->export_packed();
            qsafe::save_quantized_model(output, qsafe::gguf::File::open(resolve_model_path(model.model)), m.model.weights(),
                                        {"ste-qat-" + o.objective, o.qat, o.data});
            std::fprintf(stderr, "[quantized model %s (%.3f bits per weight); curves %s, %s; checkpoint %s]\n", output.c_str(),
                         m.model.weights().linear_bits_per_weight(), csv.c_str(), svg.c_str(), checkpoint.c_str());
        } else {
            adapter.save(output, mc.architecture);
            std::fprintf(stderr, "[adapter %s; curves %s, %s; checkpoint %s]\n", output.c_str(), csv.c_str(), svg.c_str(), checkpoint.c_str());
        }
        const std::filesystem::path source = resolve_model_path(model.model);
        if (!o.save_base.empty()) {
            qsafe::save_quantized_model(o.save_base, qsafe::gguf::File::open(source), m.model.weights(), {"rtn", model.rules, ""});
            std::fprintf(stderr, "[quantized base %s (%.3f bits per weight)]\n", o.save_base.c_str(), m.model.weights().linear_bits_per_weight());
        }
        if (!o.merge_requantize.empty()) {
            // The training responses as teacher-forced conversations (at most 32, spread over the data).
            std::vector<tr::MaskedSequence> seqs;
            if (c.objective == tr::Objective::sft) {
                seqs = tr::render_sft(m.tokenizer, m.chat_template, pairs, render, o.data);
            } else {
                for (const auto& t : tr::render_preferences(m.tokenizer, m.chat_template, preference_rows, render, o.data)) seqs.push_back(t.sequence(true));
            }
            qsafe::ResponseSet set;
            set.source = o.data + ":training-responses";
            for (const std::size_t i : tr::spread_indices(seqs.size(), 32)) {
                qsafe::ResponseSequence r;
                r.id = std::to_string(i);
                r.tokens = seqs[i].tokens;
                r.response_begin = static_cast<std::size_t>(std::find(seqs[i].loss_mask.begin(), seqs[i].loss_mask.end(), 1) - seqs[i].loss_mask.begin());
                set.sequences.push_back(std::move(r));
            }
            auto adapted = load_with_rules(model), requantized = load_with_rules(model);
            adapter.merge_into(adapted.model.mutable_weights());
            adapter.merge_into(requantized.model.mutable_weights());
            std::vector<std::string> merged;
            for (const auto& p : adapter.pairs()) merged.push_back(p.tensor);
            qsafe::PtqOptions po;
            po.rules = qsafe::SchemeRules::parse(model.rules);
            qsafe::quantize_tensors(requantized.model.mutable_weights(), merged, po);
            const qsafe::ResponseReference ref = qsafe::record_response_reference(adapted.model, set);
            const qsafe::ResponseKlStats base_kl = qsafe::compare_on_responses(m.model, set, ref);
            const qsafe::ResponseKlStats requant_kl = qsafe::compare_on_responses(requantized.model, set, ref);
            qsafe::save_quantized_model(o.merge_requantize, qsafe::gguf::File::open(source), requantized.model.weights(),
                                        {"lora-" + o.objective + "+requantized", model.rules, o.data});
            const nlohmann::ordered_json j{{"responses", set.sequences.size()},
                                           {"positions", requant_kl.kl.positions},
                                           {"kl_base", base_kl.kl.mean_kl},
                                           {"kl_requantized", requant_kl.kl.mean_kl},
                                           {"same_top_base", base_kl.kl.same_top_fraction},
                                           {"same_top_requantized", requant_kl.kl.same_top_fraction},
                                           {"logprob_adapted", requant_kl.mean_logprob_reference},
                                           {"logprob_base", base_kl.mean_logprob_variant},
                                           {"logprob_requantized", requant_kl.mean_logprob_variant},
                                           {"bits_per_weight", requantized.model.weights().linear_bits_per_weight()}};
            qsafe::io::atomic_write_text(train_file_beside(o.merge_requantize, ".merge.json"), j.dump(1) + "\n");
            std::fprintf(stderr,
                         "[merged and re-quantized %s: on %zu training responses (%zu positions), KL from base + adapter is %.4f nats/token "
                         "(same top-1 %.1f %%; the base without the adapter: %.4f, %.1f %%); response log-likelihood %.3f adapted, %.3f re-quantized, "
                         "%.3f base]\n",
                         o.merge_requantize.c_str(), set.sequences.size(), requant_kl.kl.positions, requant_kl.kl.mean_kl,
                         100 * requant_kl.kl.same_top_fraction, base_kl.kl.mean_kl, 100 * base_kl.kl.same_top_fraction,
                         requant_kl.mean_logprob_reference, requant_kl.mean_logprob_variant, base_kl.mean_logprob_variant);
        }
        if (!o.merge_into.empty()) {
            adapter.merge_into(m.model.mutable_weights());
            const auto file = qsafe::gguf::File::open(source);
            qsafe::save_quantized_model(o.merge_into, file, m.model.weights(),
                                        {"lora-" + o.objective, model.rules, o.data}, qsafe::QuantizedFileOptions{});
            std::fprintf(stderr, "[merged model %s]\n", o.merge_into.c_str());
        }
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const auto& h = final_history;
        std::printf("%s %s: %zu steps, loss %.4f -> %.4f, %.1f s\n", m.name.c_str(), o.objective.c_str(), h.size(), h.empty() ? 0.0 : h.front().loss,
                    h.empty() ? 0.0 : h.back().loss, el);
    });
}

}  // namespace qsafe_cli
