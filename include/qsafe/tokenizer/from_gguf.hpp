#pragma once
// TokenizerSpec from GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`), with llama.cpp's defaults
// where a key is missing: SentencePiece ("llama") models add BOS, a dummy-prefix space and default to
// bos=1 / eos=2 / unk=0; Llama 3 pre-tokenizers add BOS and ignore merges for whole-word tokens.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <qsafe/core/error.hpp>
#include <qsafe/io/gguf.hpp>
#include <qsafe/tokenizer/pre_tokenizer.hpp>
#include <qsafe/tokenizer/vocabulary.hpp>

namespace qsafe::tokenizer {

inline TokenizerSpec spec_from_gguf(const gguf::File& file) {
    TokenizerSpec spec;
    spec.origin = file.path().string();
    spec.model = model_kind_from_name(file.get<std::string>("tokenizer.ggml.model"), spec.origin);
    spec.tokens = file.get_array<std::string>("tokenizer.ggml.tokens");
    if (file.has("tokenizer.ggml.scores")) spec.scores = file.get_array<float>("tokenizer.ggml.scores");
    if (file.has("tokenizer.ggml.token_type")) {
        for (const std::int32_t t : file.get_array<std::int32_t>("tokenizer.ggml.token_type"))
            spec.types.push_back(static_cast<TokenType>(t));
    }
    if (file.has("tokenizer.ggml.merges")) spec.merges = file.get_array<std::string>("tokenizer.ggml.merges");

    if (spec.model == ModelKind::byte_level_bpe) {
        if (spec.merges.empty())
            throw format_error(spec.origin +
                               ": tokenizer.ggml.merges: missing or empty, but a gpt2 tokenizer needs merges");
        // Files converted before `tokenizer.ggml.pre` existed used the GPT-2 split.
        spec.pre = file.get_optional<std::string>("tokenizer.ggml.pre").value_or("gpt2");
        pre_tokenizer_from_name(spec.pre, spec.origin);  // reject unknown names here, naming the key
        spec.ignore_merges = pre_tokenizer_ignores_merges(spec.pre);
        spec.add_bos = spec.ignore_merges;  // the Llama 3 family adds BOS by default
    } else {
        // Llama 2 / Mistral SentencePiece vocabularies: merges are implied by the scores.
        spec.merges.clear();
        spec.add_bos = true;
        spec.add_space_prefix = true;
        const auto fits = [&](TokenId id) { return static_cast<std::size_t>(id) < spec.tokens.size(); };
        if (fits(1)) spec.bos_id = 1;
        if (fits(2)) spec.eos_id = 2;
        if (fits(0)) spec.unk_id = 0;
    }

    const auto id = [&](const char* key, std::optional<TokenId>& out) {
        if (const auto v = file.get_optional<std::uint32_t>(key)) {
            if (*v >= spec.tokens.size())
                throw format_error(spec.origin + ": " + key + ": id " + std::to_string(*v) +
                                   " is outside the vocabulary of " + std::to_string(spec.tokens.size()) + " tokens");
            out = static_cast<TokenId>(*v);
        }
    };
    id("tokenizer.ggml.bos_token_id", spec.bos_id);
    id("tokenizer.ggml.eos_token_id", spec.eos_id);
    id("tokenizer.ggml.eot_token_id", spec.eot_id);
    id("tokenizer.ggml.eom_token_id", spec.eom_id);
    id("tokenizer.ggml.unknown_token_id", spec.unk_id);
    id("tokenizer.ggml.padding_token_id", spec.pad_id);
    spec.add_bos = file.get_optional<bool>("tokenizer.ggml.add_bos_token").value_or(spec.add_bos);
    spec.add_eos = file.get_optional<bool>("tokenizer.ggml.add_eos_token").value_or(spec.add_eos);
    if (spec.model == ModelKind::sentencepiece_bpe)
        spec.add_space_prefix = file.get_optional<bool>("tokenizer.ggml.add_space_prefix").value_or(true);
    spec.chat_template = file.get_optional<std::string>("tokenizer.chat_template").value_or("");
    return spec;
}

inline TokenizerSpec spec_from_gguf(const std::filesystem::path& path) {
    return spec_from_gguf(gguf::File::open(path));
}

}  // namespace qsafe::tokenizer
