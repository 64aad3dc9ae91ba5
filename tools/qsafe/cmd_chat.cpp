// qsafe chat: an interactive conversation; the KV cache is kept between turns and only new tokens are fed.
#include <cstdio>
#include <iostream>

#include "qsafe/commands.hpp"
#include "qsafe/common.hpp"
#include "qsafe/model/sampler.hpp"

namespace qsafe_cli {

void add_chat_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("chat", "Chat with a model on the terminal (empty line or EOF ends)");
    static ModelOptions model;
    static std::string system;
    static std::size_t max_tokens = 256;
    static qsafe::SamplingOptions sampling;
    model.add_to(*cmd);
    cmd->add_option("-s,--system", system, "system prompt");
    cmd->add_option("-n,--max-tokens", max_tokens, "maximum tokens per answer")->capture_default_str();
    cmd->add_option("--temperature", sampling.temperature, "0 = greedy")->capture_default_str();
    cmd->add_option("--top-k", sampling.top_k, "0 = no limit")->capture_default_str();
    cmd->add_option("--top-p", sampling.top_p, "nucleus mass")->capture_default_str();
    cmd->add_option("--seed", sampling.seed, "sampling seed")->capture_default_str();
    cmd->callback([] {
        auto m = load_with_rules(model);
        std::vector<qsafe::tokenizer::Message> messages;
        if (!system.empty()) messages.push_back({"system", system});
        qsafe::KvCache cache = m.model.new_cache();
        std::vector<std::int32_t> in_cache;  // tokens whose keys and values are in the cache
        qsafe::Sampler sampler(sampling);
        std::fprintf(stderr, "[%s, rules %s] type a message; an empty line ends the chat\n", m.name.c_str(), model.rules.c_str());
        for (std::string line; std::printf("> "), std::fflush(stdout), std::getline(std::cin, line) && !line.empty();) {
            messages.push_back({"user", line});
            const auto ids = m.tokenizer.encode(m.chat_template.format(messages), {.add_bos = std::nullopt, .parse_special = true});
            // Reuse the cached prefix when the new prompt extends it (true for every supported template).
            std::size_t common = 0;
            while (common < in_cache.size() && common < ids.size() && in_cache[common] == ids[common]) ++common;
            if (common == ids.size()) --common;  // always feed at least one token to get logits
            cache.truncate(common);
            in_cache.assign(ids.begin(), ids.end());
            qsafe::RowMatrixF logits = m.model.forward_sequence(cache, std::span(ids).subspan(common));
            std::vector<std::int32_t> answer;
            for (std::size_t i = 0; i < max_tokens && cache.length() + 1 < cache.max_length(); ++i) {
                const std::int32_t t = sampler.sample({logits.data(), static_cast<std::size_t>(logits.cols())});
                if (m.tokenizer.is_end_of_generation(t)) break;
                answer.push_back(t);
                std::printf("%s", m.tokenizer.token_to_piece(t).c_str());
                std::fflush(stdout);
                const std::int32_t one[] = {t};
                logits = m.model.forward_sequence(cache, one);
                in_cache.push_back(t);
            }
            std::printf("\n");
            messages.push_back({"assistant", m.tokenizer.decode(answer)});
        }
    });
}

}  // namespace qsafe_cli
