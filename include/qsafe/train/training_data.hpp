#pragma once
// Training data from JSON Lines: supervised pairs {"prompt", "response"} and preference triples
// {"prompt", "chosen", "rejected"}, rendered with the model's chat template and tokenized. Errors name the
// file and line: a row without a field, a field that is not a string, a sequence longer than the limit.
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "qsafe/core/error.hpp"
#include "qsafe/eval/jsonl.hpp"
#include "qsafe/tokenizer/chat_template.hpp"
#include "qsafe/tokenizer/tokenizer.hpp"
#include "qsafe/train/objectives.hpp"

namespace qsafe::train {

struct SftPair {
    std::string prompt, response;
    std::size_t line = 0;  // 1-based line in its file (0 when made in code)
};

struct PreferenceText {
    std::string prompt, chosen, rejected;
    std::size_t line = 0;
};

namespace detail {
inline std::string string_field(const eval::JsonRecord& r, const char* field, const std::string& source) {
    const auto it = r.value.find(field);
    if (it == r.value.end())
        throw format_error(source + ":" + std::to_string(r.line) + ": the row has no \"" + field + "\" field");
    if (!it->is_string()) throw format_error(source + ":" + std::to_string(r.line) + ": \"" + field + "\" is not a string");
    if (it->get_ref<const std::string&>().empty())
        throw format_error(source + ":" + std::to_string(r.line) + ": \"" + field + "\" is empty");
    return it->get<std::string>();
}
}  // namespace detail

/// Rows {"prompt": ..., "response": ...} (other fields are ignored).
inline std::vector<SftPair> read_sft_jsonl(const std::filesystem::path& path) {
    std::vector<SftPair> out;
    for (const auto& r : eval::read_jsonl(path))
        out.push_back({detail::string_field(r, "prompt", path.string()), detail::string_field(r, "response", path.string()), r.line});
    if (out.empty()) throw format_error(path.string() + ": no training rows");
    return out;
}

/// Rows {"prompt": ..., "chosen": ..., "rejected": ...}.
inline std::vector<PreferenceText> read_preference_jsonl(const std::filesystem::path& path) {
    std::vector<PreferenceText> out;
    for (const auto& r : eval::read_jsonl(path))
        out.push_back({detail::string_field(r, "prompt", path.string()), detail::string_field(r, "chosen", path.string()),
                       detail::string_field(r, "rejected", path.string()), r.line});
    if (out.empty()) throw format_error(path.string() + ": no preference rows");
    return out;
}

/// How rows become token sequences.
struct RenderOptions {
    std::size_t max_tokens = 0;       // longest sequence allowed (the model's context, or less)
    bool with_system_prompt = true;   // the template's default system turn, as generation and evaluation use
};

inline void check_length(std::size_t tokens, const RenderOptions& o, const std::string& source, std::size_t line, const char* what) {
    if (o.max_tokens != 0 && tokens > o.max_tokens)
        throw config_error(source + ":" + std::to_string(line) + ": " + what + " is " + std::to_string(tokens) +
                           " tokens, longer than the limit of " + std::to_string(o.max_tokens) + " (the context, or --max-length)");
}

inline std::vector<MaskedSequence> render_sft(const tokenizer::Tokenizer& tok, const tokenizer::ChatTemplate& chat, const std::vector<SftPair>& pairs,
                                              const RenderOptions& options, const std::string& source) {
    std::vector<MaskedSequence> out;
    for (const SftPair& p : pairs) {
        out.push_back(render_example(tok, chat, p.prompt, p.response, options.with_system_prompt));
        check_length(out.back().tokens.size(), options, source, p.line, "prompt + response");
    }
    return out;
}

inline std::vector<PreferenceTriple> render_preferences(const tokenizer::Tokenizer& tok, const tokenizer::ChatTemplate& chat,
                                                        const std::vector<PreferenceText>& rows, const RenderOptions& options,
                                                        const std::string& source) {
    std::vector<PreferenceTriple> out;
    for (const PreferenceText& r : rows) {
        const MaskedSequence c = render_example(tok, chat, r.prompt, r.chosen, options.with_system_prompt);
        const MaskedSequence x = render_example(tok, chat, r.prompt, r.rejected, options.with_system_prompt);
        check_length(c.tokens.size(), options, source, r.line, "prompt + chosen");
        check_length(x.tokens.size(), options, source, r.line, "prompt + rejected");
        PreferenceTriple t;
        const std::size_t prompt_len = static_cast<std::size_t>(std::find(c.loss_mask.begin(), c.loss_mask.end(), 1) - c.loss_mask.begin());
        t.prompt.assign(c.tokens.begin(), c.tokens.begin() + static_cast<std::ptrdiff_t>(prompt_len));
        t.chosen.assign(c.tokens.begin() + static_cast<std::ptrdiff_t>(prompt_len), c.tokens.end());
        t.rejected.assign(x.tokens.begin() + static_cast<std::ptrdiff_t>(prompt_len), x.tokens.end());
        out.push_back(std::move(t));
    }
    return out;
}

}  // namespace qsafe::train
