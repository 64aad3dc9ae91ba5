#pragma once
// Small hand-made vocabularies for the tokenizer unit tests, and a check that an error names its key.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <qsafe/tokenizer/byte_level_bpe.hpp>
#include <qsafe/tokenizer/sentencepiece_bpe.hpp>
#include <qsafe/tokenizer/vocabulary.hpp>

namespace qsafe::test {

using namespace qsafe::tokenizer;

/// Byte-level vocabulary: ids 0..255 are the byte alphabet in byte order, then each merge's result in merge
/// order (so merge i produces id 256 + i), then `specials` with their types.
inline TokenizerSpec byte_level_spec(const std::vector<std::pair<std::string, std::string>>& merges,
                                     const std::vector<std::pair<std::string, TokenType>>& specials = {},
                                     std::string pre = "gpt2") {
    TokenizerSpec spec;
    spec.origin = "test-byte-level";
    spec.model = ModelKind::byte_level_bpe;
    spec.pre = std::move(pre);
    for (int b = 0; b < 256; ++b) spec.tokens.push_back(byte_alphabet().text(static_cast<std::uint8_t>(b)));
    for (const auto& [l, r] : merges) {
        spec.merges.push_back(l + " " + r);
        spec.tokens.push_back(l + r);
    }
    spec.types.assign(spec.tokens.size(), TokenType::normal);
    for (const auto& [text, type] : specials) {
        spec.tokens.push_back(text);
        spec.types.push_back(type);
    }
    return spec;
}

/// SentencePiece vocabulary: <unk> <s> </s>, optionally the 256 <0xAB> byte tokens, then scored pieces.
inline TokenizerSpec sentencepiece_spec(const std::vector<std::pair<std::string, float>>& pieces,
                                        bool byte_tokens = true) {
    TokenizerSpec spec;
    spec.origin = "test-sentencepiece";
    spec.model = ModelKind::sentencepiece_bpe;
    const auto add = [&](std::string text, float score, TokenType type) {
        spec.tokens.push_back(std::move(text));
        spec.scores.push_back(score);
        spec.types.push_back(type);
    };
    add("<unk>", 0, TokenType::unknown);
    add("<s>", 0, TokenType::control);
    add("</s>", 0, TokenType::control);
    if (byte_tokens)
        for (int b = 0; b < 256; ++b)
            add(SentencePieceBpe::byte_token_text(static_cast<std::uint8_t>(b)), 0, TokenType::byte);
    for (const auto& [text, score] : pieces) add(text, score, TokenType::normal);
    spec.unk_id = 0;
    spec.bos_id = 1;
    spec.eos_id = 2;
    spec.add_bos = true;
    spec.add_space_prefix = true;
    return spec;
}

/// Runs `f`, requires it to throw E, and checks the message contains every fragment (file, key, value...).
template <class E, class F>
void check_throws_naming(F&& f, std::initializer_list<std::string_view> fragments) {
    bool thrown = false;
    try {
        f();
    } catch (const E& e) {
        thrown = true;
        const std::string message = e.what();
        INFO("message: " << message);
        for (const std::string_view fragment : fragments) CHECK(message.find(fragment) != std::string::npos);
    }
    CHECK_MESSAGE(thrown, "expected an exception");
}

}  // namespace qsafe::test
