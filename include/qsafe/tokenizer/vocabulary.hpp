#pragma once
// TokenizerSpec: everything a tokenizer file says (GGUF `tokenizer.ggml.*` or Hugging Face tokenizer.json), as
// plain data. Vocabulary: the checked token table built from it, with id <-> text lookup.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <qsafe/core/error.hpp>

namespace qsafe::tokenizer {

using TokenId = std::int32_t;

/// Which subword algorithm the vocabulary was trained for (GGUF `tokenizer.ggml.model`).
enum class ModelKind {
    byte_level_bpe,     ///< "gpt2": GPT-2 byte->unicode alphabet, merges applied by rank
    sentencepiece_bpe,  ///< "llama": SentencePiece BPE, "▁" for spaces, scores, <0xAB> byte fallback
};

/// Per-token type, numbered as in GGUF `tokenizer.ggml.token_type`.
enum class TokenType : std::int32_t {
    undefined = 0,
    normal = 1,
    unknown = 2,
    control = 3,
    user_defined = 4,
    unused = 5,
    byte = 6,
};

inline std::string_view model_kind_name(ModelKind kind) noexcept {
    return kind == ModelKind::byte_level_bpe ? "gpt2" : "llama";
}

/// Maps a GGUF `tokenizer.ggml.model` value to a ModelKind; `origin` and the key are named in the error.
inline ModelKind model_kind_from_name(std::string_view name, std::string_view origin = "tokenizer") {
    if (name == "gpt2") return ModelKind::byte_level_bpe;
    if (name == "llama") return ModelKind::sentencepiece_bpe;
    throw config_error(std::string(origin) + ": tokenizer.ggml.model: unsupported tokenizer model '" +
                       std::string(name) + "' (supported: gpt2, llama)");
}

struct TokenizerSpec {
    std::string origin = "tokenizer";  ///< file name used in error messages
    ModelKind model = ModelKind::byte_level_bpe;
    /// Pre-tokenizer name as in GGUF `tokenizer.ggml.pre` ("smollm", "gpt2", "llama3", "qwen2", ...);
    /// empty for SentencePiece models, which split only on special tokens.
    std::string pre;
    std::vector<std::string> tokens;
    std::vector<float> scores;        ///< empty, or one per token (SentencePiece merge priority)
    std::vector<TokenType> types;     ///< empty (all normal), or one per token
    std::vector<std::string> merges;  ///< "left right", in rank order (rank 0 first)
    std::optional<TokenId> bos_id, eos_id, eot_id, eom_id, unk_id, pad_id;
    bool add_bos = false;
    bool add_eos = false;
    bool add_space_prefix = false;  ///< SentencePiece: prepend "▁" to text at the start and after special tokens
    bool ignore_merges = false;     ///< byte-level: a word that is itself a token is not merged (Llama 3)
    std::string chat_template;      ///< Jinja source, empty when the file has none
};

/// The token table of a spec, validated: sizes agree, texts are unique, special ids are in range.
class Vocabulary {
public:
    Vocabulary() = default;

    explicit Vocabulary(const TokenizerSpec& spec) : origin_(spec.origin), texts_(spec.tokens) {
        const std::size_t n = texts_.size();
        if (n == 0) throw format_error(origin_ + ": tokenizer.ggml.tokens: the vocabulary is empty");
        if (!spec.scores.empty() && spec.scores.size() != n)
            throw format_error(origin_ + ": tokenizer.ggml.scores: " + std::to_string(spec.scores.size()) +
                               " scores for " + std::to_string(n) + " tokens");
        if (!spec.types.empty() && spec.types.size() != n)
            throw format_error(origin_ + ": tokenizer.ggml.token_type: " + std::to_string(spec.types.size()) +
                               " types for " + std::to_string(n) + " tokens");
        scores_ = spec.scores.empty() ? std::vector<float>(n, 0.0f) : spec.scores;
        types_ = spec.types.empty() ? std::vector<TokenType>(n, TokenType::normal) : spec.types;
        ids_.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            const auto t = static_cast<std::int32_t>(types_[i]);
            if (t < 0 || t > 6)
                throw format_error(origin_ + ": tokenizer.ggml.token_type[" + std::to_string(i) +
                                   "]: unknown token type " + std::to_string(t));
            if (!ids_.emplace(texts_[i], static_cast<TokenId>(i)).second)
                throw format_error(origin_ + ": tokenizer.ggml.tokens[" + std::to_string(i) + "]: token '" + texts_[i] +
                                   "' already has id " + std::to_string(ids_.at(texts_[i])));
        }
        check_id(spec.bos_id, "tokenizer.ggml.bos_token_id");
        check_id(spec.eos_id, "tokenizer.ggml.eos_token_id");
        check_id(spec.eot_id, "tokenizer.ggml.eot_token_id");
        check_id(spec.eom_id, "tokenizer.ggml.eom_token_id");
        check_id(spec.unk_id, "tokenizer.ggml.unknown_token_id");
        check_id(spec.pad_id, "tokenizer.ggml.padding_token_id");
    }

    std::size_t size() const noexcept { return texts_.size(); }
    const std::string& origin() const noexcept { return origin_; }
    bool contains(TokenId id) const noexcept { return id >= 0 && static_cast<std::size_t>(id) < texts_.size(); }

    const std::string& text(TokenId id) const { return texts_.at(checked(id)); }
    TokenType type(TokenId id) const { return types_.at(checked(id)); }
    float score(TokenId id) const { return scores_.at(checked(id)); }

    std::optional<TokenId> find(std::string_view text) const {
        const auto it = ids_.find(text);
        if (it == ids_.end()) return std::nullopt;
        return it->second;
    }

    /// Control, unknown and user-defined tokens: matched in raw text before BPE (see Tokenizer).
    bool is_special(TokenId id) const {
        const TokenType t = type(id);
        return t == TokenType::control || t == TokenType::unknown || t == TokenType::user_defined;
    }

private:
    struct StringHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };

    std::size_t checked(TokenId id) const {
        if (!contains(id))
            throw config_error(origin_ + ": token id " + std::to_string(id) + " is outside the vocabulary of " +
                               std::to_string(texts_.size()) + " tokens");
        return static_cast<std::size_t>(id);
    }

    void check_id(const std::optional<TokenId>& id, const char* key) const {
        if (id && !contains(*id))
            throw format_error(origin_ + ": " + key + ": id " + std::to_string(*id) + " is outside the vocabulary of " +
                               std::to_string(texts_.size()) + " tokens");
    }

    std::string origin_;
    std::vector<std::string> texts_;
    std::vector<float> scores_;
    std::vector<TokenType> types_;
    std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>> ids_;
};

}  // namespace qsafe::tokenizer
