// qsafe generate: answer one or more prompts with a model under a scheme rule (batched decoding).
#include <chrono>
#include <cstdio>
#include <fstream>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/model/generation.hpp"

#include <nlohmann/json.hpp>

namespace qsafe_cli {

namespace {
struct GenerateArgs {
    ModelOptions model;
    std::vector<std::string> prompts;
    std::string prompts_file, system, json;
    bool raw = false;
    qsafe::GenerationOptions gen;
};
}  // namespace

void add_generate_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("generate", "Answer prompts (chat-formatted unless --raw) with greedy or sampled decoding");
    static GenerateArgs a;
    a.model.add_to(*cmd);
    cmd->add_option("-p,--prompt", a.prompts, "a prompt (repeatable; all are decoded as one batch)");
    cmd->add_option("--prompts-file", a.prompts_file, "a file with one prompt per line")->check(CLI::ExistingFile);
    cmd->add_option("-s,--system", a.system, "system prompt (default: the template's own, if any)");
    cmd->add_flag("--raw", a.raw, "feed the prompt text as is, without the chat template");
    cmd->add_option("-n,--max-tokens", a.gen.max_new_tokens, "maximum new tokens")->capture_default_str();
    cmd->add_option("--temperature", a.gen.sampling.temperature, "0 = greedy")->capture_default_str();
    cmd->add_option("--top-k", a.gen.sampling.top_k, "0 = no limit")->capture_default_str();
    cmd->add_option("--top-p", a.gen.sampling.top_p, "nucleus mass")->capture_default_str();
    cmd->add_option("--seed", a.gen.sampling.seed, "sampling seed")->capture_default_str();
    cmd->add_option("--batch", a.gen.max_batch, "sequences decoded together")->capture_default_str();
    cmd->add_option("--json", a.json, "also write prompts, prompt token ids, generated token ids and texts to this JSON file");
    cmd->callback([] {
        std::vector<std::string> prompts = a.prompts;
        if (!a.prompts_file.empty()) {
            std::ifstream in(a.prompts_file);
            for (std::string line; std::getline(in, line);)
                if (!line.empty()) prompts.push_back(line);
        }
        if (prompts.empty()) throw qsafe::config_error("generate: give --prompt or --prompts-file");
        const auto t0 = std::chrono::steady_clock::now();
        auto m = load_with_rules(a.model);
        const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::vector<std::vector<std::int32_t>> ids;
        for (const auto& p : prompts) {
            if (a.raw) {
                ids.push_back(m.tokenizer.encode(p, {.add_bos = std::nullopt, .parse_special = true}));
            } else {
                std::vector<qsafe::tokenizer::Message> msgs;
                if (!a.system.empty()) msgs.push_back({"system", a.system});
                msgs.push_back({"user", p});
                ids.push_back(m.tokenizer.encode(m.chat_template.format(msgs), {.add_bos = std::nullopt, .parse_special = true}));
            }
        }
        for (std::size_t i = 0; i < ids.size(); ++i)
            if (ids[i].size() >= m.model.config().context_length)
                throw qsafe::config_error("prompt " + std::to_string(i + 1) + " is " + std::to_string(ids[i].size()) +
                                          " tokens, which leaves no room for an answer in the context of " + m.source + " (" +
                                          std::to_string(m.model.config().context_length) + " tokens)");
        qsafe::GenerationStats stats;
        const auto results = qsafe::generate(m.model, m.tokenizer, ids, a.gen, &stats);
        for (std::size_t i = 0; i < results.size(); ++i) {
            if (results.size() > 1) std::printf("### %zu: %s\n", i + 1, prompts[i].c_str());
            std::printf("%s\n", results[i].text.c_str());
            if (results.size() > 1) std::printf("\n");
        }
        // An answer cut by the context, not by --max-tokens, is shorter than asked: say so.
        for (std::size_t i = 0; i < results.size(); ++i)
            if (results[i].stop == qsafe::StopReason::context_full)
                std::fprintf(stderr, "generate: answer %zu stopped at the model's context length %zu (prompt %zu + %zu generated tokens), "
                             "before --max-tokens %zu\n", i + 1, m.model.config().context_length, ids[i].size(),
                             results[i].tokens.size(), a.gen.max_new_tokens);
        if (!a.json.empty()) {
            nlohmann::ordered_json out = nlohmann::ordered_json::array();
            for (std::size_t i = 0; i < results.size(); ++i)
                out.push_back({{"prompt", prompts[i]}, {"prompt_ids", ids[i]}, {"generated_ids", results[i].tokens}, {"text", results[i].text},
                               {"stop", qsafe::stop_reason_name(results[i].stop)}});
            const std::string text = out.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
            qsafe::io::atomic_write_text(a.json, text);
        }
        std::fprintf(stderr,
                     "[%s, rules %s, %.3f bits/weight in linear layers; load %.1fs; prefill %zu tokens %.1f tok/s; "
                     "decode %zu tokens %.1f tok/s]\n",
                     m.name.c_str(), a.model.rules.c_str(), m.model.weights().linear_bits_per_weight(), load_s, stats.prompt_tokens,
                     stats.prompt_tokens / std::max(stats.prefill_seconds, 1e-9), stats.generated_tokens,
                     stats.generated_tokens / std::max(stats.decode_seconds, 1e-9));
    });
}

}  // namespace qsafe_cli
