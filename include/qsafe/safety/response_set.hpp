#pragma once
// Teacher-forced conversations: a chat-formatted prompt followed by a response, as one token sequence with
// the index where the response starts. Safety work measures the model on *responses*: the full-precision
// model's own answers to harmful prompts (mostly refusals when it is aligned) are the behaviour that
// quantization must keep, so statistics, KL divergence and per-layer sensitivity are taken over them.
//
//   build_response_set   runs the fp model greedily over prompts and keeps its exact generated tokens
//   text_response_set    plain text windows (WikiText-2) as "responses" scored from their second token
//   save / load          JSON Lines, one conversation per line, so a set is made once and reused
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qsafe/core/error.hpp"
#include "qsafe/core/json_depth.hpp"
#include "qsafe/io/atomic_write.hpp"
#include "qsafe/model/generation.hpp"
#include "qsafe/model/model_loader.hpp"

namespace qsafe {

struct ResponseSequence {
    std::string id;
    std::string prompt;                // the user turn (empty for plain text)
    std::vector<std::int32_t> tokens;  // formatted prompt, then the response
    std::size_t response_begin = 0;   // tokens[response_begin..] are the response

    std::size_t response_tokens() const noexcept { return tokens.size() - response_begin; }
    /// Positions whose next-token prediction is scored: those that predict a response token.
    std::size_t first_scored_position() const noexcept { return response_begin == 0 ? 0 : response_begin - 1; }
    std::size_t scored_positions() const noexcept {
        return tokens.size() < 2 ? 0 : tokens.size() - 1 - first_scored_position();
    }
};

struct ResponseSet {
    std::string source;  // e.g. "advbench:fp-responses", for reports and file checks
    std::vector<ResponseSequence> sequences;

    std::size_t scored_positions() const {
        std::size_t n = 0;
        for (const auto& s : sequences) n += s.scored_positions();
        return n;
    }
    std::size_t total_tokens() const {
        std::size_t n = 0;
        for (const auto& s : sequences) n += s.tokens.size();
        return n;
    }

    void save(const std::filesystem::path& path) const {
        std::string text;
        for (const auto& s : sequences) {
            nlohmann::ordered_json j;
            j["id"] = s.id;
            j["source"] = source;
            j["prompt"] = s.prompt;
            j["response_begin"] = s.response_begin;
            j["tokens"] = s.tokens;
            text += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        }
        io::atomic_write_text(path, text);
    }

    /// Reads a set written by save(); every line is checked against `vocab_size` (0 = unchecked).
    static ResponseSet load(const std::filesystem::path& path, std::size_t vocab_size = 0) {
        std::ifstream in(path, std::ios::binary);
        if (!in) throw io_error("cannot open response set '" + path.string() + "'");
        ResponseSet set;
        std::string line;
        for (std::size_t line_no = 1; std::getline(in, line); ++line_no) {
            if (line.empty()) continue;
            const std::string where = path.string() + ":" + std::to_string(line_no);
            try {
                require_json_depth(line, where);
                const auto j = nlohmann::json::parse(line);
                ResponseSequence s;
                s.id = j.at("id").get<std::string>();
                set.source = j.at("source").get<std::string>();
                s.prompt = j.at("prompt").get<std::string>();
                s.response_begin = j.at("response_begin").get<std::size_t>();
                s.tokens = j.at("tokens").get<std::vector<std::int32_t>>();
                if (s.response_begin > s.tokens.size())
                    throw format_error(where + ": response_begin " + std::to_string(s.response_begin) + " is past the " +
                                       std::to_string(s.tokens.size()) + " tokens");
                for (const auto t : s.tokens)
                    if (t < 0 || (vocab_size && static_cast<std::size_t>(t) >= vocab_size))
                        throw format_error(where + ": token id " + std::to_string(t) + " is outside the vocabulary");
                set.sequences.push_back(std::move(s));
            } catch (const nlohmann::json::exception& e) {
                throw format_error(where + ": " + e.what());
            }
        }
        if (set.sequences.empty()) throw format_error("response set '" + path.string() + "' is empty");
        return set;
    }
};

struct ResponseSetOptions {
    std::size_t max_new_tokens = 64;
    std::size_t max_batch = 32;
    std::string system_prompt;  // empty = none
};

/// The chat-formatted token ids of one user turn with the assistant's turn opened.
inline std::vector<std::int32_t> format_user_turn(const LoadedModel& m, const std::string& prompt, const std::string& system_prompt = {}) {
    std::vector<tokenizer::Message> turns;
    if (!system_prompt.empty()) turns.push_back({"system", system_prompt});
    turns.push_back({"user", prompt});
    return m.tokenizer.encode(m.chat_template.format(turns), {.parse_special = true});
}

/// The model's own greedy answers to `prompts` (ids[i] names prompts[i]); responses keep the exact generated
/// tokens (no re-tokenization). Empty answers are kept out: they have no position to score.
inline ResponseSet build_response_set(LoadedModel& m, std::span<const std::string> ids, std::span<const std::string> prompts,
                                      const ResponseSetOptions& opt, std::string source) {
    if (ids.size() != prompts.size()) throw config_error("response set: one id per prompt expected");
    std::vector<std::vector<std::int32_t>> formatted;
    formatted.reserve(prompts.size());
    for (const auto& p : prompts) formatted.push_back(format_user_turn(m, p, opt.system_prompt));
    GenerationOptions g;
    g.max_new_tokens = opt.max_new_tokens;
    g.max_batch = opt.max_batch;
    const auto results = generate(m.model, m.tokenizer, formatted, g);
    ResponseSet set;
    set.source = std::move(source);
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        if (results[i].tokens.empty()) continue;
        ResponseSequence s;
        s.id = ids[i];
        s.prompt = prompts[i];
        s.tokens = formatted[i];
        s.response_begin = s.tokens.size();
        s.tokens.insert(s.tokens.end(), results[i].tokens.begin(), results[i].tokens.end());
        set.sequences.push_back(std::move(s));
    }
    return set;
}

/// A chat turn and a given response text (e.g. an answer from an evaluation journal) as one sequence.
inline ResponseSequence conversation_sequence(const LoadedModel& m, std::string id, const std::string& prompt, const std::string& response,
                                              const std::string& system_prompt = {}) {
    ResponseSequence s;
    s.id = std::move(id);
    s.prompt = prompt;
    s.tokens = format_user_turn(m, prompt, system_prompt);
    s.response_begin = s.tokens.size();
    const auto r = m.tokenizer.encode(response, {.add_bos = false, .parse_special = false, .add_eos = false});
    s.tokens.insert(s.tokens.end(), r.begin(), r.end());
    return s;
}

/// Windows of plain text, every next-token prediction scored (the "utility" side of safety calibration).
inline ResponseSet text_response_set(const std::vector<std::vector<std::int32_t>>& windows, std::string source) {
    ResponseSet set;
    set.source = std::move(source);
    for (std::size_t i = 0; i < windows.size(); ++i) {
        ResponseSequence s;
        s.id = "window-" + std::to_string(i);
        s.tokens = windows[i];
        s.response_begin = 0;
        if (s.tokens.size() >= 2) set.sequences.push_back(std::move(s));
    }
    return set;
}

}  // namespace qsafe
