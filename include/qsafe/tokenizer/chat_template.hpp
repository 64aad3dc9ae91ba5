#pragma once
// Chat prompt formats of the Llama family, written out in C++ instead of running Jinja: ChatML (SmolLM2,
// Qwen), Llama 2 ([INST] <<SYS>>), Mistral v1 (" [INST] ", v0.1/v0.2) and v3 ("[INST] ", v0.3), Llama 3
// (<|start_header_id|>). The family of a model's `tokenizer.chat_template` is recognised by distinctive
// markers, and can be overridden by name. Each format reproduces the Hugging Face template's output except
// for the leading BOS token, which is left to the tokenizer (encode with the model's add_bos flag);
// special tokens in the result ("<|im_start|>", "</s>", ...) need encode with parse_special = true.
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <qsafe/core/error.hpp>

namespace qsafe::tokenizer {

struct Message {
    std::string role;  ///< "system", "user" or "assistant"
    std::string content;
};

enum class ChatFamily { chatml, llama2, mistral_v1, mistral_v3, llama3 };

inline std::string_view chat_family_name(ChatFamily family) noexcept {
    switch (family) {
        case ChatFamily::chatml:
            return "chatml";
        case ChatFamily::llama2:
            return "llama2";
        case ChatFamily::mistral_v1:
            return "mistral-v1";
        case ChatFamily::mistral_v3:
            return "mistral-v3";
        case ChatFamily::llama3:
            return "llama3";
    }
    return "unknown";
}

/// "chatml", "llama2", "mistral-v1" (or "mistral"), "mistral-v3", "llama3"; throws config_error otherwise.
inline ChatFamily chat_family_from_name(std::string_view name) {
    for (const ChatFamily f :
         {ChatFamily::chatml, ChatFamily::llama2, ChatFamily::mistral_v1, ChatFamily::mistral_v3, ChatFamily::llama3})
        if (name == chat_family_name(f)) return f;
    if (name == "mistral") return ChatFamily::mistral_v1;
    throw config_error("chat template: unknown family '" + std::string(name) +
                       "' (known: chatml, llama2, mistral-v1, mistral-v3, llama3)");
}

/// The family a Jinja chat template belongs to, from markers only it contains; nullopt if none matches.
inline std::optional<ChatFamily> detect_chat_family(std::string_view jinja) {
    const auto has = [&](std::string_view marker) { return jinja.find(marker) != std::string_view::npos; };
    if (has("<|im_start|>")) return ChatFamily::chatml;
    if (has("<|start_header_id|>")) return ChatFamily::llama3;
    if (has("[INST]")) {
        if (has("<<SYS>>")) return ChatFamily::llama2;
        if (has(" [INST]")) return ChatFamily::mistral_v1;  // ' [INST] ' with its leading space
        return ChatFamily::mistral_v3;
    }
    return std::nullopt;
}

/// The system prompt a ChatML template writes when the conversation has none (SmolLM2: "You are a helpful AI
/// assistant named SmolLM, trained by Hugging Face"): a string literal "<|im_start|>system\n...<|im_end|>"
/// whose text is fixed (no quotes, braces or '+', i.e. not built from message content).
inline std::optional<std::string> default_system_prompt_of(std::string_view jinja) {
    constexpr std::string_view start = "<|im_start|>system";
    for (std::size_t pos = jinja.find(start); pos != std::string_view::npos; pos = jinja.find(start, pos + 1)) {
        std::size_t body = pos + start.size();
        bool escaped = false;
        if (jinja.substr(body, 1) == "\n") {
            body += 1;
        } else if (jinja.substr(body, 2) == "\\n") {
            body += 2, escaped = true;
        } else {
            continue;
        }
        const std::size_t end = jinja.find("<|im_end|>", body);
        if (end == std::string_view::npos) continue;
        const std::string_view text = jinja.substr(body, end - body);
        if (text.empty() || text.find_first_of("'\"{}+") != std::string_view::npos) continue;
        std::string out;
        for (std::size_t i = 0; i < text.size(); ++i) {
            if (escaped && text[i] == '\\' && i + 1 < text.size() && text[i + 1] == 'n') {
                out += '\n';
                ++i;
            } else {
                out += text[i];
            }
        }
        return out;
    }
    return std::nullopt;
}

class ChatTemplate {
public:
    explicit ChatTemplate(ChatFamily family, std::optional<std::string> default_system_prompt = std::nullopt)
        : family_(family), default_system_prompt_(std::move(default_system_prompt)) {}

    /// Recognises a model's Jinja template. `family_override` (a family name) wins over detection; the
    /// default system prompt is still read from the template. Throws config_error if nothing matches.
    static ChatTemplate from_jinja(std::string_view jinja, std::string_view family_override = {}) {
        std::optional<ChatFamily> family;
        if (!family_override.empty()) {
            family = chat_family_from_name(family_override);
        } else {
            family = detect_chat_family(jinja);
        }
        if (!family)
            throw config_error(
                "tokenizer.chat_template: unrecognised chat template (no ChatML, Llama 2/3 or Mistral "
                "markers); choose a family by name");
        std::optional<std::string> system;
        if (*family == ChatFamily::chatml) system = default_system_prompt_of(jinja);
        return ChatTemplate(*family, std::move(system));
    }

    ChatFamily family() const noexcept { return family_; }
    const std::optional<std::string>& default_system_prompt() const noexcept { return default_system_prompt_; }

    /// The prompt text for a conversation; add_generation_prompt opens the assistant's turn where the format
    /// has such a header (ChatML, Llama 3; the [INST] formats end a user turn ready for the answer anyway).
    std::string format(std::span<const Message> messages, bool add_generation_prompt = true) const {
        switch (family_) {
            case ChatFamily::chatml:
                return chatml(messages, add_generation_prompt);
            case ChatFamily::llama3:
                return llama3(messages, add_generation_prompt);
            default:
                return inst(messages);
        }
    }

private:
    static std::string trim(std::string_view s) {
        constexpr std::string_view ws = " \t\n\r\f\v";
        const std::size_t b = s.find_first_not_of(ws);
        if (b == std::string_view::npos) return {};
        return std::string(s.substr(b, s.find_last_not_of(ws) - b + 1));
    }

    std::string chatml(std::span<const Message> messages, bool add_generation_prompt) const {
        std::string out;
        // As SmolLM2's template: the default system turn is written inside the message loop, so only when
        // there is at least one message and the first is not a system message.
        if (default_system_prompt_ && !messages.empty() && messages.front().role != "system")
            out += "<|im_start|>system\n" + *default_system_prompt_ + "<|im_end|>\n";
        for (const Message& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
        if (add_generation_prompt) out += "<|im_start|>assistant\n";
        return out;
    }

    static std::string llama3(std::span<const Message> messages, bool add_generation_prompt) {
        std::string out;
        for (const Message& m : messages)
            out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
        if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
        return out;
    }

    /// Llama 2 and Mistral: an optional leading system message, then strictly alternating user / assistant.
    std::string inst(std::span<const Message> messages) const {
        std::optional<std::string> system;
        if (!messages.empty() && messages.front().role == "system") {
            system = messages.front().content;
            messages = messages.subspan(1);
        }
        std::size_t last_user = messages.size();
        for (std::size_t i = 0; i < messages.size(); ++i) {
            const bool should_be_user = i % 2 == 0;
            if ((messages[i].role == "user") != should_be_user || (!should_be_user && messages[i].role != "assistant"))
                throw config_error(
                    std::string("chat template ") + std::string(chat_family_name(family_)) +
                    ": after the optional system message, roles must alternate user/assistant (message " +
                    std::to_string(i) + " is '" + messages[i].role + "')");
            if (should_be_user) last_user = i;
        }
        std::string out;
        for (std::size_t i = 0; i < messages.size(); ++i) {
            const std::string& content = messages[i].content;
            const bool user = i % 2 == 0;
            switch (family_) {
                case ChatFamily::llama2:
                    if (user) {
                        const std::string text =
                            i == 0 && system ? "<<SYS>>\n" + *system + "\n<</SYS>>\n\n" + content : content;
                        out += (i == 0 ? "" : "<s>") + std::string("[INST] ") + trim(text) + " [/INST]";
                    } else {
                        out += " " + trim(content) + " </s>";
                    }
                    break;
                case ChatFamily::mistral_v1:
                    if (user) {
                        out +=
                            " [INST] " + (i == 0 && system ? *system + "\n\n" : std::string()) + content + " [/INST]";
                    } else {
                        out += " " + content + "</s>";
                    }
                    break;
                default:  // mistral_v3: the system prompt goes with the last user message
                    if (user) {
                        out += "[INST] " + (i == last_user && system ? *system + "\n\n" : std::string()) + content +
                               "[/INST]";
                    } else {
                        out += " " + trim(content) + "</s>";
                    }
                    break;
            }
        }
        return out;
    }

    ChatFamily family_;
    std::optional<std::string> default_system_prompt_;
};

}  // namespace qsafe::tokenizer
