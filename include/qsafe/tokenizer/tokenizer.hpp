#pragma once
// Tokenizer: the facade over both BPE kinds. Encoding first cuts the text at special tokens (control and
// unknown tokens only when parse_special is set; user-defined tokens always, as llama.cpp and Hugging Face do),
// longest token text first, then BPE-encodes the runs in between.
#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <qsafe/core/error.hpp>
#include <qsafe/tokenizer/byte_level_bpe.hpp>
#include <qsafe/tokenizer/sentencepiece_bpe.hpp>
#include <qsafe/tokenizer/vocabulary.hpp>

namespace qsafe::tokenizer {

struct EncodeOptions {
    std::optional<bool> add_bos = std::nullopt;  ///< prepend BOS; unset = the model's add_bos flag
    bool parse_special = false;                  ///< match control tokens such as "<|im_start|>" in the text
    std::optional<bool> add_eos = std::nullopt;  ///< append EOS; unset = the model's add_eos flag
};

struct DecodeOptions {
    bool render_special = false;  ///< write control/unknown tokens as their text instead of dropping them
};

class Tokenizer {
public:
    explicit Tokenizer(TokenizerSpec spec) : spec_(std::move(spec)), vocab_(spec_) {
        if (spec_.model == ModelKind::byte_level_bpe) {
            engine_.emplace<ByteLevelBpe>(vocab_, spec_);
        } else {
            engine_.emplace<SentencePieceBpe>(vocab_, spec_);
        }
        for (TokenId id = 0; id < static_cast<TokenId>(vocab_.size()); ++id)
            if (vocab_.is_special(id) && !vocab_.text(id).empty()) specials_.push_back(id);
        // Longest first, so "<|im_start|>" wins over any special token that is a prefix of it.
        std::stable_sort(specials_.begin(), specials_.end(),
                         [this](TokenId a, TokenId b) { return vocab_.text(a).size() > vocab_.text(b).size(); });
        // End-of-generation: EOS/EOT/EOM plus the usual turn-end texts (llama.cpp does the same by text).
        constexpr std::string_view eog_texts[] = {"<|eot_id|>",    "<|im_end|>", "<|end|>", "<end_of_turn>",
                                                  "<|endoftext|>", "<|eom_id|>", "<EOT>"};
        for (const std::string_view t : eog_texts) {
            if (const auto id = vocab_.find(t)) {
                eog_.insert(*id);
                if (!spec_.eot_id && t != "<|endoftext|>" && t != "<|eom_id|>") spec_.eot_id = *id;
            }
        }
        for (const auto& id : {spec_.eos_id, spec_.eot_id, spec_.eom_id})
            if (id) eog_.insert(*id);
    }

    const Vocabulary& vocabulary() const noexcept { return vocab_; }
    const TokenizerSpec& spec() const noexcept { return spec_; }
    ModelKind model_kind() const noexcept { return spec_.model; }
    std::size_t size() const noexcept { return vocab_.size(); }
    std::optional<TokenId> bos_id() const noexcept { return spec_.bos_id; }
    std::optional<TokenId> eos_id() const noexcept { return spec_.eos_id; }
    /// End-of-turn token; found by text ("<|im_end|>", "<|eot_id|>", ...) when the file does not name one.
    std::optional<TokenId> eot_id() const noexcept { return spec_.eot_id; }
    std::optional<TokenId> pad_id() const noexcept { return spec_.pad_id; }

    /// True for every token that ends a generated turn (EOS, EOT, "<|im_end|>", "<|endoftext|>", ...).
    bool is_end_of_generation(TokenId id) const noexcept { return eog_.contains(id); }

    std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {}) const {
        std::vector<TokenId> out;
        if (options.add_bos.value_or(spec_.add_bos)) out.push_back(require(spec_.bos_id, "bos_token_id"));
        bool after_special = true;  // SentencePiece's dummy prefix goes at the start and after special tokens
        for (const Fragment& f : split_special(text, options.parse_special)) {
            if (f.token >= 0) {
                out.push_back(f.token);
                after_special = true;
                continue;
            }
            const std::string_view run = text.substr(f.begin, f.end - f.begin);
            if (const auto* bpe = std::get_if<ByteLevelBpe>(&engine_)) {
                bpe->encode(vocab_, run, out);
            } else {
                std::get<SentencePieceBpe>(engine_).encode(vocab_, run, spec_.add_space_prefix && after_special, out);
            }
            after_special = false;
        }
        if (options.add_eos.value_or(spec_.add_eos)) out.push_back(require(spec_.eos_id, "eos_token_id"));
        return out;
    }

    /// The bytes one token stands for, for streaming output. Control and unknown tokens are empty unless
    /// render_special. A piece may end inside a UTF-8 sequence that the next piece completes. SentencePiece
    /// pieces keep the dummy-prefix space that decode() removes.
    std::string token_to_piece(TokenId id, bool render_special = false) const {
        const TokenType type = vocab_.type(id);
        const std::string& text = vocab_.text(id);
        switch (type) {
            case TokenType::control:
            case TokenType::unknown:
                return render_special ? text : std::string();
            case TokenType::user_defined:
                return text;
            case TokenType::byte:
                if (const auto b = SentencePieceBpe::parse_byte_token(text))
                    return std::string(1, static_cast<char>(*b));
                return text;
            default:
                return spec_.model == ModelKind::byte_level_bpe ? ByteLevelBpe::decode_token_text(text)
                                                                : SentencePieceBpe::decode_token_text(text);
        }
    }

    /// Inverse of encode: decode(encode(s, {.parse_special = p}), {.render_special = p}) == s for any
    /// byte string s (SentencePiece: if s has no "▁" and the model has byte tokens). Where encode added a
    /// dummy prefix "▁", one leading space is removed again.
    std::string decode(std::span<const TokenId> ids, const DecodeOptions& options = {}) const {
        std::string out;
        bool strip_space = spec_.model == ModelKind::sentencepiece_bpe && spec_.add_space_prefix;
        bool at_run_start = true;
        for (const TokenId id : ids) {
            if (vocab_.is_special(id)) {
                out += token_to_piece(id, options.render_special);
                at_run_start = true;
                continue;
            }
            std::string piece = token_to_piece(id, options.render_special);
            if (strip_space && at_run_start && !piece.empty() && piece.front() == ' ') piece.erase(0, 1);
            at_run_start = false;
            out += piece;
        }
        return out;
    }

private:
    struct Fragment {
        std::size_t begin = 0, end = 0;
        TokenId token = -1;  ///< >= 0: a special token; else the raw text [begin, end)
    };

    TokenId require(const std::optional<TokenId>& id, const char* key) const {
        if (!id) throw config_error(spec_.origin + ": tokenizer.ggml." + key + " is not set but the model needs it");
        return *id;
    }

    std::vector<Fragment> split_special(std::string_view text, bool parse_special) const {
        std::vector<Fragment> fragments;
        if (!text.empty()) fragments.push_back({0, text.size(), -1});
        for (const TokenId id : specials_) {
            if (!parse_special && vocab_.type(id) != TokenType::user_defined) continue;
            const std::string& needle = vocab_.text(id);
            std::vector<Fragment> next;
            next.reserve(fragments.size());
            for (const Fragment& f : fragments) {
                if (f.token >= 0) {
                    next.push_back(f);
                    continue;
                }
                std::size_t pos = f.begin;
                for (;;) {
                    const std::size_t hit = text.substr(0, f.end).find(needle, pos);
                    if (hit == std::string_view::npos) break;
                    if (hit > pos) next.push_back({pos, hit, -1});
                    next.push_back({hit, hit + needle.size(), id});
                    pos = hit + needle.size();
                }
                if (pos < f.end) next.push_back({pos, f.end, -1});
            }
            fragments = std::move(next);
        }
        return fragments;
    }

    TokenizerSpec spec_;
    Vocabulary vocab_;
    std::variant<std::monostate, ByteLevelBpe, SentencePieceBpe> engine_;
    std::vector<TokenId> specials_;
    std::unordered_set<TokenId> eog_;
};

}  // namespace qsafe::tokenizer
