#pragma once
// TokenizerSpec from a Hugging Face tokenizer.json (+ tokenizer_config.json for BOS/EOS flags and the chat
// template). Supported: "BPE" models, either byte-level (pre-tokenizer ByteLevel, alone or after Digits or a
// Llama 3 / Qwen2 Split regex) or SentencePiece-style (byte_fallback, "▁" via Prepend/Replace normalizers or
// Metaspace). Anything else is rejected with an error naming the JSON key.
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <qsafe/core/error.hpp>
#include <qsafe/core/json_depth.hpp>
#include <qsafe/tokenizer/sentencepiece_bpe.hpp>
#include <qsafe/tokenizer/vocabulary.hpp>

namespace qsafe::tokenizer {

namespace detail {

using Json = nlohmann::json;

// The Split regexes Llama 3 and Qwen2 ship in tokenizer.json, recognised verbatim.
inline constexpr std::string_view llama3_split_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view qwen2_split_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

/// The steps of a (possibly Sequence) normalizer / pre-tokenizer / decoder, flattened.
inline std::vector<Json> steps(const Json& node, const char* list_key) {
    std::vector<Json> out;
    if (node.is_null()) return out;
    if (node.value("type", "") == "Sequence" && node.contains(list_key)) {
        for (const Json& child : node.at(list_key)) out.push_back(child);
    } else {
        out.push_back(node);
    }
    return out;
}

inline bool has_step(const std::vector<Json>& list, std::string_view type) {
    for (const Json& s : list)
        if (s.value("type", "") == type) return true;
    return false;
}

/// A special-token entry of tokenizer_config.json: "text" or {"content": "text", ...}.
inline std::optional<std::string> config_token_text(const Json& config, const char* key) {
    if (!config.contains(key) || config.at(key).is_null()) return std::nullopt;
    const Json& v = config.at(key);
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content")) return v.at("content").get<std::string>();
    return std::nullopt;
}

inline std::string pre_tokenizer_name(const Json& tok, const std::string& origin) {
    const std::vector<Json> pre = steps(tok.value("pre_tokenizer", Json()), "pretokenizers");
    const auto fail = [&](const std::string& why) -> std::string {
        throw config_error(origin + ": pre_tokenizer: " + why);
    };
    for (const Json& s : pre)
        if (s.value("type", "") == "ByteLevel" && s.value("add_prefix_space", false))
            fail("ByteLevel with add_prefix_space=true is not supported");
    if (pre.size() == 1 && pre[0].value("type", "") == "ByteLevel" && pre[0].value("use_regex", true)) return "gpt2";
    if (pre.size() == 2 && pre[0].value("type", "") == "Digits" && pre[0].value("individual_digits", false) &&
        pre[1].value("type", "") == "ByteLevel" && pre[1].value("use_regex", true))
        return "smollm";
    if (pre.size() == 2 && pre[0].value("type", "") == "Split" && pre[1].value("type", "") == "ByteLevel" &&
        !pre[1].value("use_regex", true)) {
        const Json& pattern = pre[0].value("pattern", Json::object());
        const std::string regex = pattern.value("Regex", "");
        if (regex == llama3_split_regex) return "llama3";
        if (regex == qwen2_split_regex) return "qwen2";
        fail("unsupported Split regex '" + regex + "'");
    }
    return fail("unsupported byte-level pre-tokenizer " + tok.value("pre_tokenizer", Json()).dump());
}

}  // namespace detail

/// Builds a spec from parsed tokenizer.json and (optionally null) tokenizer_config.json documents.
inline TokenizerSpec spec_from_tokenizer_json(const nlohmann::json& tok, const nlohmann::json& config,
                                              const std::string& origin = "tokenizer.json") {
    using detail::Json;
    TokenizerSpec spec;
    spec.origin = origin;
    try {
        const Json& model = tok.at("model");
        const std::string type = model.value("type", "BPE");
        if (type != "BPE")
            throw config_error(origin + ": model.type: unsupported tokenizer model '" + type + "' (only BPE)");
        if (model.value("continuing_subword_prefix", Json()).is_string() ||
            model.value("end_of_word_suffix", Json()).is_string())
            throw config_error(origin + ": model: continuing_subword_prefix / end_of_word_suffix are not supported");

        // Token table: model.vocab plus added_tokens, indexed by id without gaps. n entries without gaps
        // have ids below n, so a larger id is refused before the table is sized by it.
        std::vector<std::optional<std::string>> texts;
        const Json no_added = Json::array();
        const Json& added_tokens = tok.contains("added_tokens") ? tok.at("added_tokens") : no_added;
        const std::size_t entries = model.at("vocab").size() + (added_tokens.is_array() ? added_tokens.size() : 0);
        const auto place = [&](std::int64_t id, const std::string& text, const char* key) {
            if (id < 0 || id > 0x7FFFFFFF)
                throw format_error(origin + ": " + key + ": bad token id " + std::to_string(id));
            if (static_cast<std::size_t>(id) >= entries)
                throw format_error(origin + ": " + key + ": token '" + text + "' has id " + std::to_string(id) + ", but only " +
                                   std::to_string(entries) + " tokens are listed (ids must run from 0 without gaps)");
            if (texts.size() <= static_cast<std::size_t>(id)) texts.resize(static_cast<std::size_t>(id) + 1);
            texts[static_cast<std::size_t>(id)] = text;
        };
        // Ids are integers (nlohmann would cast a float such as 1e30 to an integer: undefined behaviour).
        const auto token_id = [&](const Json& id, const std::string& text, const char* key) -> std::int64_t {
            if (!id.is_number_integer())
                throw format_error(origin + ": " + key + ": token '" + text + "' has id " + id.dump() + ", not an integer");
            return id.get<std::int64_t>();
        };
        for (const auto& [text, id] : model.at("vocab").items()) place(token_id(id, text, "model.vocab"), text, "model.vocab");
        std::vector<std::pair<std::size_t, bool>> added;  // id, special
        for (const Json& a : added_tokens) {
            const std::string content = a.at("content").get<std::string>();
            const std::int64_t id = token_id(a.at("id"), content, "added_tokens");
            place(id, content, "added_tokens");
            added.emplace_back(static_cast<std::size_t>(id), a.value("special", false));
        }
        spec.tokens.reserve(texts.size());
        for (std::size_t i = 0; i < texts.size(); ++i) {
            if (!texts[i]) throw format_error(origin + ": model.vocab: no token has id " + std::to_string(i));
            spec.tokens.push_back(*texts[i]);
        }
        spec.types.assign(spec.tokens.size(), TokenType::normal);
        for (const auto& [id, special] : added) spec.types[id] = special ? TokenType::control : TokenType::user_defined;

        for (const Json& m : model.value("merges", Json::array())) {
            if (m.is_string()) {
                spec.merges.push_back(m.get<std::string>());
            } else if (m.is_array() && m.size() == 2) {
                spec.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
            } else {
                throw format_error(origin + ": model.merges: entry " + m.dump() + " is not \"a b\" or [\"a\", \"b\"]");
            }
        }

        const auto normalizers = detail::steps(tok.value("normalizer", Json()), "normalizers");
        const auto pre = detail::steps(tok.value("pre_tokenizer", Json()), "pretokenizers");
        const auto decoders = detail::steps(tok.value("decoder", Json()), "decoders");
        const bool byte_level = detail::has_step(pre, "ByteLevel") || detail::has_step(decoders, "ByteLevel");
        const bool metaspace = detail::has_step(pre, "Metaspace");
        const bool sentencepiece = model.value("byte_fallback", false) || metaspace ||
                                   detail::has_step(normalizers, "Prepend") ||
                                   detail::has_step(decoders, "ByteFallback");
        if (byte_level) {
            spec.model = ModelKind::byte_level_bpe;
            spec.pre = detail::pre_tokenizer_name(tok, origin);
            spec.ignore_merges = model.value("ignore_merges", false);
        } else if (sentencepiece) {
            spec.model = ModelKind::sentencepiece_bpe;
            for (const Json& n : normalizers) {
                const std::string t = n.value("type", "");
                if (t == "Prepend")
                    spec.add_space_prefix = true;
                else if (t != "Replace")
                    throw config_error(origin + ": normalizer: unsupported step '" + t + "'");
            }
            for (const Json& p : pre) {
                if (p.value("type", "") != "Metaspace")
                    throw config_error(origin + ": pre_tokenizer: unsupported step '" + p.value("type", "") + "'");
                if (p.value("split", false))
                    throw config_error(origin + ": pre_tokenizer: Metaspace split=true is not supported");
                const std::string scheme =
                    p.value("prepend_scheme", p.value("add_prefix_space", true) ? "always" : "never");
                spec.add_space_prefix = scheme != "never";
            }
            for (std::size_t i = 0; i < spec.tokens.size(); ++i)
                if (spec.types[i] == TokenType::normal && SentencePieceBpe::parse_byte_token(spec.tokens[i]))
                    spec.types[i] = TokenType::byte;
        } else {
            throw config_error(origin +
                               ": pre_tokenizer: neither byte-level (ByteLevel) nor SentencePiece-style "
                               "(byte_fallback / Metaspace / Prepend) BPE");
        }

        const auto id_of = [&](const std::optional<std::string>& text, const char* key) -> std::optional<TokenId> {
            if (!text) return std::nullopt;
            for (std::size_t i = 0; i < spec.tokens.size(); ++i)
                if (spec.tokens[i] == *text) return static_cast<TokenId>(i);
            throw format_error(origin + ": " + key + ": '" + *text + "' is not in the vocabulary");
        };
        if (model.contains("unk_token") && model.at("unk_token").is_string())
            spec.unk_id = id_of(model.at("unk_token").get<std::string>(), "model.unk_token");
        if (spec.unk_id && spec.types[*spec.unk_id] == TokenType::normal) spec.types[*spec.unk_id] = TokenType::unknown;
        if (!config.is_null()) {
            spec.bos_id = id_of(detail::config_token_text(config, "bos_token"), "tokenizer_config.json bos_token");
            spec.eos_id = id_of(detail::config_token_text(config, "eos_token"), "tokenizer_config.json eos_token");
            spec.pad_id = id_of(detail::config_token_text(config, "pad_token"), "tokenizer_config.json pad_token");
            if (!spec.unk_id)
                spec.unk_id = id_of(detail::config_token_text(config, "unk_token"), "tokenizer_config.json unk_token");
        }
        // add_bos: tokenizer_config.json says so, or the post-processor template starts with the BOS token.
        bool post_adds_bos = false;
        for (const Json& p : detail::steps(tok.value("post_processor", Json()), "processors")) {
            if (p.value("type", "") == "TemplateProcessing" && p.contains("single") && !p.at("single").empty()) {
                const Json& first = p.at("single")[0];
                if (!first.contains("SpecialToken")) continue;
                const auto id = id_of(first.at("SpecialToken").value("id", ""), "post_processor.single[0]");
                if (!spec.bos_id) spec.bos_id = id;
                post_adds_bos = id == spec.bos_id;
            }
        }
        spec.add_bos = config.is_null() ? post_adds_bos : config.value("add_bos_token", post_adds_bos);
        spec.add_eos = config.is_null() ? false : config.value("add_eos_token", false);
        if (!config.is_null() && config.contains("chat_template")) {
            const Json& t = config.at("chat_template");
            if (t.is_string()) {
                spec.chat_template = t.get<std::string>();
            } else if (t.is_array()) {  // named templates: take "default", else the first
                for (const Json& named : t)
                    if (spec.chat_template.empty() || named.value("name", "") == "default")
                        spec.chat_template = named.value("template", "");
            }
        }
    } catch (const nlohmann::json::exception& e) {
        throw format_error(origin + ": malformed tokenizer JSON: " + e.what());
    }
    return spec;
}

namespace detail {
inline nlohmann::json parse_json_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error(path.string() + ": cannot open");
    std::ostringstream text;
    text << in.rdbuf();
    const std::string content = text.str();
    require_json_depth(content, path.string());
    try {
        return nlohmann::json::parse(content);
    } catch (const nlohmann::json::exception& e) {
        throw format_error(path.string() + ": invalid JSON: " + e.what());
    }
}
}  // namespace detail

/// Reads tokenizer.json and, if present, the tokenizer_config.json next to it.
inline TokenizerSpec spec_from_tokenizer_json(const std::filesystem::path& tokenizer_json) {
    const nlohmann::json tok = detail::parse_json_file(tokenizer_json);
    const auto config_path = tokenizer_json.parent_path() / "tokenizer_config.json";
    const nlohmann::json config =
        std::filesystem::exists(config_path) ? detail::parse_json_file(config_path) : nlohmann::json();
    return spec_from_tokenizer_json(tok, config, tokenizer_json.string());
}

}  // namespace qsafe::tokenizer
